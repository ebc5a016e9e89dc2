"""Summaries from rollups equal the same computation over the raw samples, whatever was packed,
unpacked by a late sample, packed again or trimmed."""
import math
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection

from telemetry.api.buckets import WrittenDay
from telemetry.api.selectors import gpu_telemetry_summary, summary_partials
from telemetry.history.packing import hours_pack
from telemetry.ingest.collector.services import samples_persist
from telemetry.models import Gpu
from telemetry.times import EPOCH, to_rfc3339
from tests.history.history_data import history_batch, readings_between, table_rows

pytestmark = pytest.mark.django_db

AGGREGATES = ["avg", "min", "max", "first", "last", "count", "sum"]
# 2025-07-17 22:00 UTC: 27 hours at 20 s hold the whole of the 18th.
START_US = 1_752_789_600_000_000
MIDNIGHT = datetime(2025, 7, 19, tzinfo=timezone.utc)
BUCKETS = [60, 90, 300, 3600, 7200, 86400]


def expected_summary(gpu_id: int, start: datetime, end: datetime, bucket: int) -> dict[int, list[dict]]:
    """The summary computed here over every stored sample (raw and packed), by metric id."""
    cells: dict[tuple[int, datetime], list[tuple[datetime, float]]] = defaultdict(list)
    for ts, _, values in readings_between(gpu_id, start, end):
        bucket_start = EPOCH + timedelta(seconds=(ts - EPOCH).total_seconds() // bucket * bucket)
        for metric_id, value in values.items():
            cells[metric_id, bucket_start].append((ts, value))
    result: dict[int, list[dict]] = defaultdict(list)
    for (metric_id, bucket_start), samples in sorted(cells.items()):
        values = [v for _, v in samples]
        result[metric_id].append({
            "time": to_rfc3339(bucket_start).replace(".000000", ""), "avg": sum(values) / len(values),
            "min": min(values), "max": max(values), "first": min(samples)[1], "last": max(samples)[1],
            "count": len(values), "sum": sum(values),
        })
    return dict(result)


def summary(gpu_id: int, start: datetime, end: datetime, bucket: int) -> dict[int, list[dict]]:
    """The API's summary, which reads nothing after the device's last_seen."""
    series = gpu_telemetry_summary(gpu_id=gpu_id, start=start, end=end, bucket_seconds=bucket, aggregates=AGGREGATES,
                                   newest=Gpu.objects.get(id=gpu_id).last_seen)
    return {metric_id: one.points() for metric_id, one in series.items()}


def assert_equal(got: dict, want: dict, context: str) -> None:
    assert got.keys() == want.keys(), context
    for metric_id, points in want.items():
        assert [p["time"] for p in got[metric_id]] == [p["time"] for p in points], context
        for g, w in zip(got[metric_id], points):
            for name in AGGREGATES:
                assert math.isclose(g[name], w[name], rel_tol=1e-9, abs_tol=1e-6), f"{context} {metric_id} {g} {w}"


def pieces(bucket: int) -> tuple[int, int]:
    """The partials a summary of the 30 hours before midnight in `bucket`s merges: (rollup cells, samples' partials)."""
    parts = summary_partials(gpu_id=Gpu.objects.order_by("id").first().id, start=MIDNIGHT - timedelta(hours=30),
                             end=MIDNIGHT, bucket_seconds=bucket)
    return sum(len(p) for p in parts if p.from_rollup), sum(len(p) for p in parts if not p.from_rollup)


def written_days(start: datetime, end: datetime) -> list[datetime]:
    """The days a summary in hour buckets over [start, end] answers with points written before."""
    parts = summary_partials(gpu_id=Gpu.objects.order_by("id").first().id, start=start, end=end, bucket_seconds=3600,
                             aggregates=AGGREGATES, written=True)
    return [EPOCH + timedelta(seconds=part.day) for part in parts if isinstance(part, WrittenDay)]


def check_random_windows(rng: random.Random, count: int = 25) -> None:
    for gpu_id in Gpu.objects.values_list("id", flat=True):
        # The whole 18th in hour buckets, twice: a day held whole is written as JSON once, then read as written.
        start, end = MIDNIGHT - timedelta(days=1, minutes=30), MIDNIGHT + timedelta(minutes=30)
        for _ in range(2):
            assert_equal(summary(gpu_id, start, end, 3600), expected_summary(gpu_id, start, end, 3600), f"gpu {gpu_id}, the 18th")
        for _ in range(count):
            start = datetime.fromtimestamp(START_US / 1e6 + rng.uniform(-600, 27 * 3600), tz=timezone.utc)
            end = start + timedelta(seconds=rng.choice([59, 61, 3600, 5400, 4 * 3600, 30 * 3600]) + rng.uniform(0, 120))
            bucket = rng.choice(BUCKETS)
            assert_equal(summary(gpu_id, start, end, bucket), expected_summary(gpu_id, start, end, bucket),
                         f"gpu {gpu_id} [{start}, {end}] every {bucket}s")


def test_summaries_from_rollups_equal_the_raw_computation():
    rng = random.Random(7)
    # A per-device limit trims the oldest readings first; packing then keeps what is left.
    samples_persist(batch=history_batch(hours=27, start_us=START_US, step_us=20_000_000), max_per_gpu=0)
    samples_persist(batch=history_batch(hours=0.05, start_us=START_US + 27 * 3_600_000_000, step_us=20_000_000),
                    max_per_gpu=sum(Gpu.objects.values_list("sample_count", flat=True)) // 2 - 500)
    check_random_windows(rng)  # nothing packed: every piece a sample

    hours_pack(before=MIDNIGHT, chunk=10)
    whole_days = [(gpu, day.day) for gpu, day, *_ in table_rows("telemetry_rolluphour")]
    assert sorted({day for _, day in whole_days}) == [17, 18] and len(whole_days) == 4
    # The rollups answer, not the samples (3 a minute): an hour's cell, else a minute's.
    assert pieces(3600)[1] == pieces(60)[1] == 0 and pieces(3600)[0] * 50 < pieces(60)[0] < pieces(1)[1] / 2
    check_random_windows(rng)
    assert written_days(MIDNIGHT - timedelta(days=1), MIDNIGHT) == [MIDNIGHT - timedelta(days=1)]

    # Late samples in packed hours (new times and duplicates) unpack them and the day's hour rollup.
    samples_persist(batch=history_batch(hours=2, start_us=START_US + 5 * 3_600_000_000 + 7_000_000, seed=3,
                                        step_us=600_000_000), max_per_gpu=0)
    assert sorted(day.day for _, day, *_ in table_rows("telemetry_rolluphour")) == [17, 17]
    check_random_windows(rng)

    hours_pack(before=MIDNIGHT, chunk=10)
    assert len(table_rows("telemetry_rolluphour")) == 4
    check_random_windows(rng)

    # A per-device limit that cuts into the packed hours: whole ones go with their rollups, one is unpacked.
    samples_persist(batch=history_batch(hours=0.05, start_us=START_US + 28 * 3_600_000_000, step_us=20_000_000),
                    max_per_gpu=min(Gpu.objects.values_list("sample_count", flat=True)) - 3000)
    check_random_windows(rng)

    # The statements are prepared, and PostgreSQL may run plans made without the parameters: the same answers.
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    check_random_windows(rng)
    for statement in ("telemetry_rollup_sent(m.hour, 60", "telemetry_readings_between"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT sum(generic_plans) FROM pg_prepared_statements WHERE statement LIKE %s", [f"%{statement}%"])
            assert cursor.fetchone()[0] > 0, statement
