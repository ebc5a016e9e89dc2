"""A summary's buckets, merged from partial aggregates: rollup grids, and the partials of the readings no rollup stands for.

The database sends each rollup row's grids whole, where unnesting them cell by cell and grouping
the cells there cost most of a long summary, and the other readings as one grid, where grouping
their samples there cost most of a short one; numpy cuts and groups them and merges every
partial into its bucket. Partials never overlap in time: each sample is counted by exactly one.
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Callable, Sequence

import numpy as np
import orjson

from telemetry.api.arrays import array_received, timestamps_received
from telemetry.api.selectors import AGGREGATES

# A rollup's grids (telemetry_rollup_sent's columns after the slots), in order.
_GRID_COLUMNS = ("counts", "sums", "mins", "maxs", "firsts", "lasts")


@dataclass(frozen=True)
class Partials:
    """Partial aggregates of one metric's samples each, columns side by side.

    first_at and last_at are the times (epoch seconds) of the oldest and newest sample a partial
    holds; a rollup cell's are its slot's start, which orders it among partials all the same.
    `from_rollup`: cells of a rollup's grids, else partials of samples. `covered_us`: the
    [start, end) in epoch microseconds of the slots a rollup's grids were cut to (None: samples).
    """

    from_rollup: bool
    covered_us: tuple[int, int] | None

    metric_ids: np.ndarray
    first_at: np.ndarray
    last_at: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    firsts: np.ndarray
    lasts: np.ndarray

    def __len__(self) -> int:
        return len(self.counts)


@dataclass(frozen=True)
class Grids:
    """A rollup row's [metric id][slot] grids, decoded: counts, then sums, mins, maxs, firsts and
    lasts (NaN in a cell without samples). `start`: the first slot's start, in epoch seconds.
    `written`: the points of every slot, a bucket each, as JSON by metric id, per aggregates asked."""

    start: float
    slot_seconds: int
    counts: np.ndarray
    sums: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    firsts: np.ndarray
    lasts: np.ndarray
    written: dict[tuple[str, ...], dict[int, bytes]] = field(default_factory=dict, compare=False)

    @classmethod
    def received(cls, *, start: float, slot_seconds: int, grids: Sequence[bytes]) -> Grids:
        """The grids as the database sends them (telemetry_rollup_sent), in this machine's byte order."""
        return cls(start, slot_seconds, *(
            array_received(data, ">i4" if name == "counts" else ">f8").astype("=i4" if name == "counts" else "=f8")
            for name, data in zip(_GRID_COLUMNS, grids)
        ))

    @property
    def nbytes(self) -> int:
        """Bytes of the grids, of their cells with samples (`whole`) once computed, and of the points written."""
        whole = self.__dict__.get("whole")
        return sum(getattr(self, name).nbytes for name in _GRID_COLUMNS) + (
            0 if whole is None else sum(getattr(whole, name).nbytes for name in _COLUMNS)) + sum(
            len(text) for by_metric in self.written.values() for text in by_metric.values())

    def points_written(self, aggregates: tuple[str, ...]) -> dict[int, bytes]:
        """The points of every slot, each its own bucket, as a JSON array per metric id (summary_points's)."""
        by_metric = self.written.get(aggregates)
        if by_metric is None:
            points = summary_points([self.whole], bucket_seconds=self.slot_seconds, aggregates=aggregates)
            by_metric = self.written[aggregates] = {metric_id: orjson.dumps(run) for metric_id, run in points.items()}
        return by_metric

    @cached_property
    def whole(self) -> Partials:
        """The cells with samples in every slot: a summary wants every slot of most rows it reads."""
        return self._cut(0, self.counts.shape[1])

    def partials(self, first_slot: int, end_slot: int) -> Partials:
        """The cells with samples in slots [first_slot, end_slot)."""
        return self.whole if (first_slot, end_slot) == (0, self.counts.shape[1]) else self._cut(first_slot, end_slot)

    def _cut(self, first_slot: int, end_slot: int) -> Partials:
        counts, sums, mins, maxs, firsts, lasts = (getattr(self, name)[:, first_slot:end_slot] for name in _GRID_COLUMNS)
        metrics, slots = np.nonzero(counts > 0)
        at = self.start + (slots + first_slot) * float(self.slot_seconds)
        start_us, slot_us = round(self.start * 1e6), self.slot_seconds * 1_000_000
        covered = (start_us + first_slot * slot_us, start_us + end_slot * slot_us)
        return Partials(True, covered, metrics + 1, at, at,
                        *(grid[metrics, slots] for grid in (counts, sums, mins, maxs, firsts, lasts)))


def partials_of_rollup(row: Sequence) -> Partials:
    """One row of summary_minutes.sql (telemetry_rollup_sent) as partials: the cells of the grids' slots it was cut to."""
    slot_seconds, start, first_slot, end_slot, _metric_ids, _first_at, _last_at, *grids = row
    return Grids.received(start=start, slot_seconds=slot_seconds, grids=grids).partials(first_slot, end_slot)


def partials_of_readings(times: bytes, grid: bytes, *, bucket_seconds: int) -> Partials:
    """The row of summary_readings.sql as partials: its samples' count, sum, min, max, first and last per
    metric and bucket (buckets aligned to the Unix epoch), with the times of each one's oldest and newest."""
    at_us = timestamps_received(times)
    values = array_received(grid, ">f8").astype(np.float64)
    # Metric by metric, each one's samples in time order (the readings come oldest first).
    columns, rows = np.nonzero(~np.isnan(values.T))
    at, value = at_us[rows], values[rows, columns]
    if not len(at):
        return Partials(False, None, columns, *(np.empty(0) for _ in range(2)), np.empty(0, np.int32),
                        *(np.empty(0) for _ in range(5)))
    if not (np.diff(at_us) > 0).all():
        # Where readings share a time, the first is the smallest value of the oldest time and the last
        # the largest of the newest, as min() and max() of [time, value] order them.
        order = np.lexsort((value, at, columns))
        columns, at, value = columns[order], at[order], value[order]
    bucket = at // (bucket_seconds * 1_000_000)
    starts = np.flatnonzero(np.r_[True, (columns[1:] != columns[:-1]) | (bucket[1:] != bucket[:-1])])
    ends = np.r_[starts[1:], len(at)] - 1
    return Partials(
        False, None, columns[starts] + 1, at[starts] / 1e6, at[ends] / 1e6, np.diff(np.r_[starts, len(at)]).astype(np.int32),
        np.add.reduceat(value, starts), np.minimum.reduceat(value, starts), np.maximum.reduceat(value, starts),
        value[starts], value[ends],
    )


_COLUMNS = ("metric_ids", "first_at", "last_at", "counts", "sums", "mins", "maxs", "firsts", "lasts")


def spans_uncovered(start_us: int, end_us: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The inclusive spans of [start_us, end_us] outside the [start, end) periods `covered` (ordered, disjoint)."""
    spans, at = [], start_us
    for lo, hi in covered:
        if hi <= lo:
            continue
        if lo > at:
            spans.append((at, lo - 1))
        at = max(at, hi)
    if at <= end_us:
        spans.append((at, end_us))
    return spans


def _columns(parts: list[Partials], keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every partial's columns, concatenated, those `keep` marks (None: all)."""
    columns = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _COLUMNS}
    return columns if keep is None else {name: column[keep] for name, column in columns.items()}


@cache
def _points_builder(aggregates: tuple[str, ...]) -> Callable[..., list[dict]]:
    """A function of the points' columns (times, then each aggregate's values) that lists them as
    {"time": …, <aggregate>: …} points: a dict display, faster than dict(zip()) (bench/README.md)."""
    if not set(aggregates) <= set(AGGREGATES):
        raise ValueError(f"aggregates must be some of {AGGREGATES}, not {aggregates!r}")
    names = [f"v{i}" for i in range(len(aggregates))]
    fields = ", ".join(f"{name!r}: {value}" for name, value in zip(aggregates, names))
    return eval(f"lambda times, {', '.join(names)}: [{{'time': t, {fields}}} for t, {', '.join(names)} in zip(times, {', '.join(names)})]")


def summary_points(
    parts: list[Partials], *, bucket_seconds: int, aggregates: Sequence[str], metric_ids: Sequence[int] | None = None
) -> dict[int, list[dict]]:
    """Per metric id with samples, its buckets (aligned to the epoch) oldest first, each a point
    {"time": RFC 3339, <aggregate>: value, …} with the aggregates in the order given."""
    if not parts:
        return {}
    every = _columns(parts)
    if metric_ids is not None:
        every = _columns(parts, np.isin(every["metric_ids"], metric_ids))
    if not len(every["counts"]):
        return {}
    buckets = (every["first_at"] // bucket_seconds).astype(np.int64) * bucket_seconds
    # Grouped by (metric, bucket), oldest first; sorted again by newest time for each bucket's last value.
    by_first = np.lexsort((every["first_at"], buckets, every["metric_ids"]))
    by_last = np.lexsort((every["last_at"], buckets, every["metric_ids"]))
    metrics, buckets = every["metric_ids"][by_first], buckets[by_first]
    starts = np.flatnonzero(np.r_[True, (metrics[1:] != metrics[:-1]) | (buckets[1:] != buckets[:-1])])
    ends = np.r_[starts[1:], len(metrics)] - 1
    counts = np.add.reduceat(every["counts"][by_first].astype(np.int64), starts)
    sums = np.add.reduceat(every["sums"][by_first], starts)
    columns = {
        "avg": lambda: sums / counts,
        "min": lambda: np.minimum.reduceat(every["mins"][by_first], starts),
        "max": lambda: np.maximum.reduceat(every["maxs"][by_first], starts),
        "first": lambda: every["firsts"][by_first][starts],
        "last": lambda: every["lasts"][by_last][ends],
        "count": lambda: counts,
        "sum": lambda: sums,
    }
    bucket_times, bucket_index = np.unique(buckets[starts], return_inverse=True)
    # Buckets start on whole seconds: numpy writes them all at once.
    texts = [f"{t}Z" for t in np.datetime_as_string(bucket_times.astype("datetime64[s]")).tolist()]
    points = _points_builder(tuple(aggregates))([texts[i] for i in bucket_index.tolist()],
                                                *(columns[name]().tolist() for name in aggregates))
    group_metrics = metrics[starts]
    series_starts = np.flatnonzero(np.r_[True, group_metrics[1:] != group_metrics[:-1]])
    bounds = np.r_[series_starts, len(group_metrics)].tolist()
    return {metric_id: points[lo:hi] for metric_id, lo, hi in zip(group_metrics[series_starts].tolist(), bounds, bounds[1:])}


@dataclass(frozen=True)
class WrittenDay:
    """A day whose points (hour buckets) are already written as JSON by metric id, from its held hour rollups."""

    day: int  # epoch seconds
    by_metric: dict[int, bytes]

    @property
    def covered_us(self) -> tuple[int, int]:
        return self.day * 1_000_000, (self.day + 86_400) * 1_000_000


@dataclass(frozen=True)
class Series:
    """One metric's points oldest first, in runs: lists of point dicts, or a day's points written as a JSON array."""

    runs: tuple[list[dict] | bytes, ...]

    def points(self) -> list[dict]:
        return [point for run in self.runs for point in (orjson.loads(run) if isinstance(run, bytes) else run)]

    def json(self) -> orjson.Fragment:
        """The points as one JSON array, the written runs as they are."""
        items = [(run if isinstance(run, bytes) else orjson.dumps(run))[1:-1] for run in self.runs]
        return orjson.Fragment(b"[" + b",".join(item for item in items if item) + b"]")


def series_merged(points: dict[int, list[dict]], days: Sequence[WrittenDay], metric_ids: Sequence[int] | None = None
                  ) -> dict[int, Series]:
    """Each metric's points and its written days in time order: no point falls in a written day."""
    runs: dict[int, list] = {metric_id: [] for metric_id in points}
    at = dict.fromkeys(points, 0)
    for day in sorted(days, key=lambda one: one.day):
        # A day's first bucket as summary_points writes it: times of one format sort as text.
        day_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day.day))
        for metric_id, text in day.by_metric.items():
            if metric_ids is not None and metric_id not in metric_ids:
                continue
            own, lo = points.get(metric_id, []), at.get(metric_id, 0)
            cut = bisect.bisect_left(own, day_text, lo=lo, key=lambda point: point["time"])
            runs.setdefault(metric_id, []).extend([own[lo:cut], text] if cut > lo else [text])
            at[metric_id] = cut
    for metric_id, own in points.items():
        if at[metric_id] < len(own):
            runs[metric_id].append(own[at[metric_id]:])
    return {metric_id: Series(tuple(metric_runs)) for metric_id, metric_runs in sorted(runs.items())}
