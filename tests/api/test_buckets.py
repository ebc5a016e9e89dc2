"""Partial aggregates, rollup grids and samples' partials alike, merged into a summary's buckets."""
import numpy as np
import orjson
import pytest


from telemetry.api.buckets import (
    Grids,
    Partials,
    Series,
    WrittenDay,
    partials_of_readings,
    series_merged,
    spans_uncovered,
    summary_points,
)
from tests.api.test_arrays import sent

pytestmark = pytest.mark.django_db


def grid_bytes(counts: list[list[int]], values: list[list[float]]) -> list[bytes]:
    """A rollup row's six grids as telemetry_rollup_sent sends them; sums, mins, maxs, firsts and lasts all `values`."""
    literal = "ARRAY[" + ",".join("ARRAY[" + ",".join(f"'{v}'" for v in row) + "]" for row in values) + "]::float8[]"
    count_literal = "ARRAY[" + ",".join("ARRAY[" + ",".join(map(str, row)) + "]" for row in counts) + "]::integer[]"
    return [sent(count_literal)] + [sent(literal)] * 5


def test_a_grid_is_cut_to_its_slots_and_its_cells_with_samples():
    grids = grid_bytes([[1, 0, 2, 1], [0, 3, 0, 0]], [[1.0, float("nan"), 2.0, 3.0], [float("nan"), 4.0, float("nan"), float("nan")]])
    cells = Grids.received(start=3600.0, slot_seconds=60, grids=grids).partials(1, 3)
    assert cells.from_rollup and cells.metric_ids.tolist() == [1, 2]
    assert cells.first_at.tolist() == [3600 + 120, 3600 + 60] and cells.counts.tolist() == [2, 3]
    assert cells.sums.tolist() == [2.0, 4.0] and cells.covered_us == (3_660_000_000, 3_780_000_000)


def test_the_spans_left_to_read_are_those_the_rollups_do_not_cover():
    assert spans_uncovered(0, 99, []) == [(0, 99)]
    assert spans_uncovered(0, 99, [(0, 100)]) == []
    assert spans_uncovered(0, 99, [(10, 20), (20, 30), (50, 60)]) == [(0, 9), (30, 49), (60, 99)]
    # A day whose hours the window holds none of covers nothing.
    assert spans_uncovered(0, 99, [(40, 40), (90, 100)]) == [(0, 89)]


def readings_bytes(times: list[str], values: list[list[float | None]]) -> tuple[bytes, bytes]:
    """Readings as summary_readings.sql sends them: timestamptz times and a [reading][metric] grid, NaN for none."""
    times_literal = "ARRAY[" + ",".join(f"'{t}'" for t in times) + "]::timestamptz[]"
    grid_literal = "ARRAY[" + ",".join("ARRAY[" + ",".join("'NaN'" if v is None else f"'{v}'" for v in row) + "]"
                                       for row in values) + "]::float8[]"
    return sent(times_literal), sent(grid_literal)


def partial_rows(partials: Partials) -> set[tuple]:
    return set(zip(*(getattr(partials, name).tolist() for name in (
        "metric_ids", "first_at", "last_at", "counts", "sums", "mins", "maxs", "firsts", "lasts"))))


def test_readings_are_grouped_per_metric_and_bucket_with_their_first_and_last():
    # Buckets of a minute: readings at 10 s, 50 s and 70 s, and two at 110 s (raw and packed alike).
    times = ["1970-01-01T00:00:10Z", "1970-01-01T00:00:50Z", "1970-01-01T00:01:10Z", "1970-01-01T00:01:50Z",
             "1970-01-01T00:01:50Z"]
    values = [[1.0, None], [3.0, 8.0], [None, 4.0], [6.0, 2.0], [5.0, None]]
    partials = partials_of_readings(*readings_bytes(times, values), bucket_seconds=60)
    assert not partials.from_rollup and partials.covered_us is None
    assert partial_rows(partials) == {
        (1, 10.0, 50.0, 2, 4.0, 1.0, 3.0, 1.0, 3.0),
        (2, 50.0, 50.0, 1, 8.0, 8.0, 8.0, 8.0, 8.0),
        (2, 70.0, 110.0, 2, 6.0, 2.0, 4.0, 4.0, 2.0),
        # Two samples at 110 s: the newest is the larger, as max() of [time, value] picks it.
        (1, 110.0, 110.0, 2, 11.0, 5.0, 6.0, 5.0, 6.0),
    }
    # Before the epoch, a bucket still starts at a whole minute.
    early = partials_of_readings(*readings_bytes(["1969-12-31T23:59:30Z", "1970-01-01T00:00:30Z"], [[1.0], [2.0]]),
                                 bucket_seconds=60)
    assert partial_rows(early) == {(1, -30.0, -30.0, 1, 1.0, 1.0, 1.0, 1.0, 1.0), (1, 30.0, 30.0, 1, 2.0, 2.0, 2.0, 2.0, 2.0)}


def samples_partials(rows: list[tuple]) -> Partials:
    """Partials of samples from (metric id, first_at, last_at, count, sum, min, max, first, last) rows."""
    columns = list(zip(*rows))
    return Partials(False, None, *(np.array(column) for column in columns))


def test_buckets_merge_partials_with_the_oldest_first_and_the_newest_last():
    # A bucket of 300 s from 0: samples at 5 s and 290 s around the rollup's minutes (60 to 180 s).
    parts = [
        Grids.received(start=60.0, slot_seconds=60, grids=grid_bytes([[2, 2]], [[10.0, 20.0]])).partials(0, 2),
        samples_partials([(1, 5.0, 5.0, 1, 7.0, 7.0, 7.0, 7.0, 7.0), (1, 290.0, 290.0, 1, 1.0, 1.0, 1.0, 1.0, 1.0),
                          (2, 310.0, 320.0, 2, 9.0, 4.0, 5.0, 4.0, 5.0)]),
    ]
    points = summary_points(parts, bucket_seconds=300, aggregates=["first", "last", "count", "sum", "min", "max", "avg"])
    assert points == {
        1: [{"time": "1970-01-01T00:00:00Z", "first": 7.0, "last": 1.0, "count": 6, "sum": 38.0, "min": 1.0, "max": 20.0,
             "avg": 38.0 / 6}],
        2: [{"time": "1970-01-01T00:05:00Z", "first": 4.0, "last": 5.0, "count": 2, "sum": 9.0, "min": 4.0, "max": 5.0,
             "avg": 4.5}],
    }
    assert list(points[1][0]) == ["time", "first", "last", "count", "sum", "min", "max", "avg"]
    assert summary_points(parts, bucket_seconds=300, aggregates=["count"], metric_ids=[2]) == {
        2: [{"time": "1970-01-01T00:05:00Z", "count": 2}]}
    assert summary_points(parts, bucket_seconds=300, aggregates=["count"], metric_ids=[3]) == {}
    assert summary_points([], bucket_seconds=60, aggregates=["count"]) == {}


def test_a_grids_points_written_are_its_slots_as_buckets():
    grids = Grids.received(start=86400.0, slot_seconds=3600, grids=grid_bytes([[1, 0, 2], [0, 3, 0]], [[1.0, 0.0, 2.0], [0.0, 4.0, 0.0]]))
    grids.whole  # noqa: B018 -- its cells, counted before
    before = grids.nbytes
    written = grids.points_written(("max", "count"))
    assert {metric_id: orjson.loads(text) for metric_id, text in written.items()} == summary_points(
        [grids.whole], bucket_seconds=3600, aggregates=["max", "count"])
    assert grids.points_written(("max", "count")) is written  # written once
    assert grids.nbytes == before + sum(map(len, written.values()))


def point(hour: int, value: float) -> dict:
    return {"time": f"1970-01-0{1 + hour // 24}T{hour % 24:02d}:00:00Z", "max": value}


def test_written_days_fall_in_order_among_the_points_computed():
    # Metric 1: a point before the 2nd, one on the 3rd; metric 2 only on the written day; metric 3 only computed.
    computed = {1: [point(20, 1.0), point(50, 3.0)], 3: [point(5, 9.0)]}
    day = WrittenDay(86400, {1: orjson.dumps([point(24, 2.0), point(25, 2.5)]), 2: orjson.dumps([point(30, 7.0)])})
    merged = series_merged(computed, [day])
    assert {metric_id: series.points() for metric_id, series in merged.items()} == {
        1: [point(20, 1.0), point(24, 2.0), point(25, 2.5), point(50, 3.0)], 2: [point(30, 7.0)], 3: [point(5, 9.0)]}
    for series in merged.values():
        assert orjson.loads(orjson.dumps({"points": series.json()}))["points"] == series.points()
    # Asked for some metrics, the computed points are already theirs (summary_points): days keep theirs too.
    only = series_merged({}, [day], metric_ids=[2])
    assert {metric_id: series.points() for metric_id, series in only.items()} == {2: [point(30, 7.0)]}
    assert orjson.dumps(Series(([], b"[]")).json()) == b"[]"
