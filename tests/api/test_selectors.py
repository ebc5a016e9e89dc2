"""The selectors over readings: the PostgreSQL SQL and the portable path (the embedded SQLite mode) agree.

Both run here against the same PostgreSQL data: the portable path only uses the ORM and Python, so
this checks the SQLite mode's answers without a second database. The data has readings that hold
only some metrics, so unnesting, null handling and the (time, metric) keyset are exercised.
"""
import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from telemetry.api import selectors
from telemetry.models import Gpu, Metric
from tests.api.conftest import GPU_HOST, GPU_UUID, store_samples
from tests.samples import stored_count

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 7, 18, 20, 42, 34, tzinfo=timezone.utc)
US = 1_000_000
METRICS = ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK"]


def us(moment: datetime) -> int:
    return int(moment.timestamp() * US)


@pytest.fixture
def gappy(sample_data):
    """Two minutes of this GPU at 1.5 s steps, each reading holding a changing subset of four metrics."""
    rng = random.Random(7)
    rows = []
    for step in range(80):
        moment = T0 + timedelta(seconds=10 + 1.5 * step)
        for metric in rng.sample(METRICS, rng.randint(1, len(METRICS))):
            rows.append((metric, us(moment), float(rng.randrange(-5000, 5000)) / 8))
    store_samples(uuid=GPU_UUID, hostname=GPU_HOST, index=0, rows=rows)
    selectors.metric_names_refresh()
    return Gpu.objects.get(uuid=GPU_UUID).pk


def _window_both(gpu_id, *, start=None, end=None, metric_ids=None, order="asc", after=None, before=None, limit=1000):
    ascending = order == "asc"
    walk_ascending = ascending if before is None else not ascending
    args = (gpu_id, start, end, metric_ids, ascending, walk_ascending, after, before, limit)
    return selectors._window_postgresql(*args), selectors._window_portable(*args)


def test_window_agrees_with_the_portable_path_and_pages_by_time_then_metric(gappy):
    sql, portable = _window_both(gappy, limit=10**6)
    assert sql == portable
    assert len(sql) == stored_count(gpu_id=gappy) > 200
    keys = [(selectors.time_parse(ts), metric_id) for ts, metric_id, _ in sql]
    assert keys == sorted(set(keys))  # strictly by (time, metric): no sample twice
    ids = list(Metric.objects.values_list("id", flat=True))
    rng = random.Random(11)
    for _ in range(150):
        position = rng.choice(keys)
        if rng.random() < 0.3:  # also between samples: half a second after one
            position = (position[0] + timedelta(milliseconds=500), position[1])
        kwargs = {
            "order": rng.choice(["asc", "desc"]),
            "limit": rng.choice([1, 2, 7, 50, 10**6]),
            "metric_ids": rng.sample(ids, rng.randint(1, 3)) if rng.random() < 0.4 else None,
            "start": rng.choice(keys)[0] if rng.random() < 0.4 else None,
            "end": rng.choice(keys)[0] if rng.random() < 0.4 else None,
            rng.choice(["after", "before"]): selectors.Position(*position),
        }
        sql, portable = _window_both(gappy, **kwargs)
        assert sql == portable, kwargs
        # And both are the brute-force answer: filter the full list, walk it in the right direction.
        ascending = kwargs["order"] == "asc"
        expected = [
            row for row, key in zip(*_all_rows(gappy, ascending=ascending))
            if (kwargs["start"] is None or key[0] >= kwargs["start"]) and (kwargs["end"] is None or key[0] <= kwargs["end"])
            and (not kwargs["metric_ids"] or key[1] in kwargs["metric_ids"])
        ]
        keyed = [(row, (selectors.time_parse(row[0]), row[1])) for row in expected]
        if "after" in kwargs:
            bound = (kwargs["after"].timestamp, kwargs["after"].metric_id)
            expected = [row for row, key in keyed if (key > bound if ascending else key < bound)]
        else:
            bound = (kwargs["before"].timestamp, kwargs["before"].metric_id)
            expected = [row for row, key in keyed if (key < bound if ascending else key > bound)][::-1]
        assert sql == expected[: kwargs["limit"]], kwargs


def _all_rows(gpu_id, *, ascending):
    rows = selectors._window_portable(gpu_id, None, None, None, ascending, ascending, None, None, 10**6)
    return rows, [(selectors.time_parse(ts), metric_id) for ts, metric_id, _ in rows]


@pytest.mark.parametrize("bucket_seconds", [1, 5, 60, 3600])
def test_summary_agrees_with_the_portable_path(gappy, bucket_seconds):
    start, end = T0, T0 + timedelta(minutes=5)
    for metric_ids in (None, list(Metric.objects.filter(name__in=METRICS[:2]).values_list("id", flat=True))):
        sql = selectors._summary_postgresql(gappy, start, end, bucket_seconds, list(selectors.AGGREGATES), metric_ids)
        portable = selectors._summary_portable(gappy, start, end, bucket_seconds, list(selectors.AGGREGATES), metric_ids)
        as_dict = lambda rows: {metric_id: json.loads(points) for metric_id, points in rows}  # noqa: E731
        sql, portable = as_dict(sql), as_dict(portable)
        assert sql.keys() == portable.keys() and sql
        for metric_id, points in sql.items():
            assert [p["time"] for p in points] == [p["time"] for p in portable[metric_id]]
            assert [list(p) for p in points] == [["time", *selectors.AGGREGATES]] * len(points)
            for ours, theirs in zip(points, portable[metric_id]):
                ours, theirs = dict(ours), dict(theirs)
                assert ours.pop("time") == theirs.pop("time")
                # Sums may differ in the last bit: floats added in another order.
                assert ours == pytest.approx(theirs, rel=1e-12), (metric_id, ours, theirs)
        counted = sum(p["count"] for points in sql.values() for p in points)
        in_window = selectors._window_portable(gappy, start, end, metric_ids, True, True, None, None, 10**6)
        assert counted == len(in_window)


def test_latest_is_exact_for_metrics_missing_from_the_newest_readings(gappy):
    rows = selectors._window_portable(gappy, None, None, None, True, True, None, None, 10**6)
    newest = {}
    for ts, metric_id, value in rows:
        newest[metric_id] = (selectors.time_parse(ts), value)
    expected = sorted(((m, ts, v) for m, (ts, v) in newest.items()), key=lambda row: selectors.metric_name(row[0]))
    assert len(expected) == 10
    # Some metrics are held only by the sample's first readings, far behind the newest ones.
    assert selectors.gpu_latest_values(gpu_id=gappy) == expected
    assert selectors._latest_portable(gappy) == expected
    # A metric this GPU never reported is not listed (another GPU reports it).
    store_samples(uuid="GPU-other", hostname="other-host", index=0, rows=[("DCGM_FI_ONLY_ELSEWHERE", us(T0), 1.0)])
    assert selectors.gpu_latest_values(gpu_id=gappy) == expected == selectors._latest_portable(gappy)
    assert selectors.gpu_latest_values(gpu_id=Gpu.objects.get(uuid="GPU-other").pk)[0][2] == 1.0


def test_metric_totals_count_each_non_null_value(gappy):
    sql, portable = selectors._totals_postgresql(), selectors._totals_portable()
    assert sql == portable
    assert sum(count for count, _, _ in sql.values()) == stored_count()
    totals = {row["name"]: row for row in selectors.metric_totals(max_age=0)}
    assert totals["DCGM_FI_DEV_FB_FREE"]["sample_count"] == 247  # not in the added readings
    assert totals["DCGM_FI_DEV_GPU_UTIL"]["sample_count"] > 247
    assert totals["DCGM_FI_DEV_GPU_UTIL"]["last"] > T0 + timedelta(minutes=1)
