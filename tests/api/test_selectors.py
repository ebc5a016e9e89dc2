"""The selectors' SQL against answers computed here, in plain Python, from the readings the ORM returns.

The data has readings that hold only some metrics, so unnesting, null handling and the (time,
metric) keyset are exercised; every expectation is built from `Reading` rows without the selectors.
"""
import random
from datetime import datetime, timedelta, timezone

import pytest
from django.http import Http404

from telemetry.api import selectors
from telemetry.models import Gpu, IngestCounter, Metric, Reading
from tests.api.conftest import GPU_HOST, GPU_UUID, store_samples
from tests.samples import stored_count

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 7, 18, 20, 42, 34, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
US = 1_000_000
METRICS = ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK"]


def us(moment: datetime) -> int:
    return int(moment.timestamp() * US)


def text(moment: datetime) -> str:
    """RFC 3339 in UTC with the fraction's trailing zeros dropped, as the window query writes times."""
    moment = moment.astimezone(timezone.utc)
    whole = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return whole + (f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else "") + "Z"


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


def samples(**filters) -> list[tuple[datetime, int, float]]:
    """(time, metric_id, value) of every non-null value of the matching readings, by (time, metric_id)."""
    readings = Reading.objects.filter(**filters).values_list("timestamp", "values")
    return sorted((ts, i + 1, value) for ts, values in readings for i, value in enumerate(values) if value is not None)


def expected_window(gpu_id, *, start=None, end=None, metric_ids=None, order="asc", after=None, before=None, limit=1000):
    rows = [
        (ts, m, v) for ts, m, v in samples(gpu_id=gpu_id)
        if (start is None or ts >= start) and (end is None or ts <= end) and (not metric_ids or m in metric_ids)
    ]
    if order == "desc":
        rows.reverse()
    beyond = (lambda key, bound: key > bound) if order == "asc" else (lambda key, bound: key < bound)
    if after is not None:
        rows = [r for r in rows if beyond(r[:2], (after.timestamp, after.metric_id))]
    if before is not None:
        rows = [r for r in rows if beyond((before.timestamp, before.metric_id), r[:2])][::-1]
    return [(text(ts), m, v) for ts, m, v in rows[:limit]]


def test_window_is_the_readings_samples_by_time_then_metric(gappy):
    everything = selectors.gpu_telemetry_window(gpu_id=gappy, limit=10**6)
    assert everything == expected_window(gappy, limit=10**6)
    assert len(everything) == stored_count(gpu_id=gappy) > 200
    keys = [(datetime.fromisoformat(ts), metric_id) for ts, metric_id, _ in everything]
    assert keys == sorted(set(keys))  # strictly by (time, metric): no sample twice
    assert selectors.gpu_telemetry_window(device_id=GPU_UUID, limit=10**6) == everything
    assert selectors.gpu_telemetry_window(gpu_id=gappy, order="desc", limit=10**6) == everything[::-1]


def test_window_filters_and_keyset_positions_match_a_brute_force_walk(gappy):
    keys = [(ts, m) for ts, m, _ in samples(gpu_id=gappy)]
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
        assert selectors.gpu_telemetry_window(gpu_id=gappy, **kwargs) == expected_window(gappy, **kwargs), kwargs


def test_window_of_an_unknown_gpu_is_a_404_and_of_an_empty_window_is_empty(gappy):
    with pytest.raises(Http404):
        selectors.gpu_telemetry_window(device_id="GPU-unknown")
    with pytest.raises(Http404):
        selectors.gpu_telemetry_window(device_id="GPU-\x00")
    assert selectors.gpu_telemetry_window(device_id=GPU_UUID, end=T0 - timedelta(days=1)) == []
    with pytest.raises(TypeError):
        selectors.gpu_telemetry_window(gpu_id=gappy, after=selectors.Position(T0, 1), before=selectors.Position(T0, 1))


def expected_summary(gpu_id, start, end, bucket_seconds, aggregates, metric_ids=None) -> dict[int, list[dict]]:
    """metric_id → points computed here: buckets aligned to the epoch, the aggregates in the order asked."""
    step = timedelta(seconds=bucket_seconds)
    groups: dict[int, dict[datetime, list[float]]] = {}
    for ts, metric_id, value in samples(gpu_id=gpu_id):  # time order: first and last are the ends of each list
        if start <= ts <= end and (not metric_ids or metric_id in metric_ids):
            bucket = EPOCH + step * ((ts - EPOCH) // step)
            groups.setdefault(metric_id, {}).setdefault(bucket, []).append(value)
    result = {}
    for metric_id, buckets in groups.items():
        points = []
        for bucket, values in sorted(buckets.items()):
            computed = {
                "avg": sum(values) / len(values), "min": min(values), "max": max(values), "sum": sum(values),
                "count": len(values), "first": values[0], "last": values[-1],
            }
            points.append({"time": bucket.strftime("%Y-%m-%dT%H:%M:%SZ"), **{name: computed[name] for name in aggregates}})
        result[metric_id] = points
    return result


@pytest.mark.parametrize("bucket_seconds", [1, 5, 60, 3600])
@pytest.mark.parametrize("aggregates", [list(selectors.AGGREGATES), ["last", "count", "avg"], ["sum"]])
def test_summary_matches_buckets_computed_from_the_readings(gappy, bucket_seconds, aggregates):
    start, end = T0, T0 + timedelta(minutes=5)
    for metric_ids in (None, list(Metric.objects.filter(name__in=METRICS[:2]).values_list("id", flat=True))):
        got = {metric_id: series.points() for metric_id, series in selectors.gpu_telemetry_summary(
            gpu_id=gappy, start=start, end=end, bucket_seconds=bucket_seconds, aggregates=aggregates, metric_ids=metric_ids,
        ).items()}
        expected = expected_summary(gappy, start, end, bucket_seconds, aggregates, metric_ids)
        assert got.keys() == expected.keys() and got
        for metric_id, points in got.items():
            # Each point's fields in the order asked for, its times those of the buckets with samples.
            assert [list(p) for p in points] == [["time", *aggregates]] * len(points)
            assert [p["time"] for p in points] == [p["time"] for p in expected[metric_id]]
            for ours, theirs in zip(points, expected[metric_id]):
                ours, theirs = dict(ours), dict(theirs)
                assert ours.pop("time") == theirs.pop("time")
                # Sums may differ in the last bit: floats added in another order.
                assert ours == pytest.approx(theirs, rel=1e-12), (metric_id, ours, theirs)


def test_summary_window_bounds_are_inclusive(gappy):
    everything = samples(gpu_id=gappy)
    start, end = everything[40][0], everything[-40][0]
    points = selectors.gpu_telemetry_summary(gpu_id=gappy, start=start, end=end, bucket_seconds=86400, aggregates=["count"])
    assert sum(series.points()[0]["count"] for series in points.values()) == len([s for s in everything if start <= s[0] <= end])


def test_latest_is_exact_for_metrics_missing_from_the_newest_readings(gappy):
    names = dict(Metric.objects.values_list("id", "name"))
    newest = {}
    for ts, metric_id, value in samples(gpu_id=gappy):
        newest[names[metric_id]] = (ts, value)
    expected = sorted((name, ts, value) for name, (ts, value) in newest.items())
    assert len(expected) == 10
    # Some metrics are held only by the sample's first readings, far behind the newest ones.
    assert selectors.gpu_latest_values(gpu_id=gappy) == expected
    # A metric this GPU never reported is not listed (another GPU reports it).
    store_samples(uuid="GPU-other", hostname="other-host", index=0, rows=[("DCGM_FI_ONLY_ELSEWHERE", us(T0), 1.0)])
    assert selectors.gpu_latest_values(gpu_id=gappy) == expected
    other = selectors.gpu_latest_values(gpu_id=Gpu.objects.get(uuid="GPU-other").pk)
    assert other == [("DCGM_FI_ONLY_ELSEWHERE", T0, 1.0)] and other[0].metric == "DCGM_FI_ONLY_ELSEWHERE"


def test_metric_totals_count_each_non_null_value(gappy):
    expected: dict[int, tuple[int, datetime, datetime]] = {}
    for ts, metric_id, _ in samples():
        count, first, last = expected.get(metric_id, (0, ts, ts))
        expected[metric_id] = (count + 1, min(first, ts), max(last, ts))
    assert selectors.metric_totals_by_id() == expected
    assert sum(count for count, _, _ in expected.values()) == stored_count()
    totals = {row["name"]: row for row in selectors.metric_totals(max_age=0)}
    assert totals["DCGM_FI_DEV_FB_FREE"]["sample_count"] == 247  # not in the added readings
    assert totals["DCGM_FI_DEV_GPU_UTIL"]["sample_count"] > 247
    assert totals["DCGM_FI_DEV_GPU_UTIL"]["last"] > T0 + timedelta(minutes=1)


def test_ingest_counters_name_every_counter(sample_data):
    counters = selectors.ingest_counters()
    assert counters[IngestCounter.SAMPLES_STORED] == 2470
    assert set(counters) == {
        IngestCounter.SAMPLES_STORED, IngestCounter.SAMPLES_DUPLICATE, IngestCounter.ROWS_REJECTED, IngestCounter.BATCHES_DEAD_LETTERED,
    }


@pytest.mark.parametrize("attribution", [
    {"namespace": "ns-a"}, {"pod": "p2"}, {"namespace": "ns-a", "pod": "p3"}, {"container": "c"},
    {"namespace": "ns-b", "pod": "p3", "container": "d"}, {"pod": "nowhere"},
])
def test_window_and_summary_of_an_attribution_are_those_of_the_readings_that_carry_it(sample_data, attribution):
    """Readings of a changing pod, some with none: the SQL filter against the ORM's join to the label sets."""
    rng = random.Random(3)
    owners = [("ns-a", "p1", "c"), ("ns-a", "p2", "c"), ("ns-b", "p3", "d"), None]
    rows = []
    for step in range(60):
        owner = rng.choice(owners)
        for metric in rng.sample(METRICS, rng.randint(1, len(METRICS))):
            rows.append((metric, us(T0 + timedelta(seconds=10 + step)), float(rng.randrange(100)), owner))
    store_samples(uuid=GPU_UUID, hostname=GPU_HOST, index=0, rows=rows)
    gpu_id = Gpu.objects.get(uuid=GPU_UUID).pk
    carrying = samples(gpu_id=gpu_id, **{f"label_set__{name}": value for name, value in attribution.items()})
    expected = [(text(ts), m, v) for ts, m, v in carrying]
    # No reading carries a pod that never ran, nor p3 in ns-a: each filter narrows the same reading.
    assert (len(expected) > 0) == (attribution not in ({"pod": "nowhere"}, {"namespace": "ns-a", "pod": "p3"}))
    chosen = selectors.Attribution(**attribution)
    assert selectors.gpu_telemetry_window(gpu_id=gpu_id, attribution=chosen, limit=10**6) == expected
    assert selectors.gpu_telemetry_window(device_id=GPU_UUID, attribution=chosen, order="desc", limit=10**6) == expected[::-1]
    for key in random.Random(4).sample([(ts, m) for ts, m, _ in carrying], min(10, len(carrying))):
        after = selectors.gpu_telemetry_window(gpu_id=gpu_id, attribution=chosen, after=selectors.Position(*key), limit=5)
        at = [(text(ts), m) for ts, m, _ in carrying].index((text(key[0]), key[1]))
        assert after == expected[at + 1:at + 6]
    summary = selectors.gpu_telemetry_summary(
        gpu_id=gpu_id, start=T0, end=T0 + timedelta(hours=1), bucket_seconds=3600, aggregates=["count", "sum"], attribution=chosen,
    )
    counts = {metric_id: series.points()[0]["count"] for metric_id, series in summary.items()}
    assert counts == {m: sum(1 for _, mm, _ in carrying if mm == m) for m in {m for _, m, _ in carrying}}


def test_device_lookup_reads_only_a_devices_own_id():
    assert selectors.device_lookup(GPU_UUID) == (GPU_UUID, None)
    assert selectors.device_lookup(f"{GPU_UUID}:mig0") == (GPU_UUID, 0)
    assert selectors.device_lookup(f"{GPU_UUID}:mig14") == (GPU_UUID, 14)
    for impossible in (f"{GPU_UUID}:mig014", f"{GPU_UUID}:mig32768", f"{GPU_UUID}:mig²", f"{GPU_UUID}:mig١", "GPU-\x00"):
        with pytest.raises(Http404):
            selectors.device_lookup(impossible)
