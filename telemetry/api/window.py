"""One device's samples in a window, walked from a position, out of the reading blocks window_readings.sql sends.

The database sends raw readings as one grid and each packed hour as it is stored, where turning
every reading into its samples there cost most of a window's time; numpy merges the blocks in
time order and picks the samples. A query returns at most so many readings and hours, so the
walk goes on from where the blocks it read are complete until the page is full.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Sequence

import numpy as np

from telemetry.api.arrays import array_received, timestamps_received
from telemetry.api.selectors import Sample
from telemetry.times import microseconds_rfc3339_short, to_datetime, to_microseconds

_HOUR_US = 3_600_000_000
# Packed hours read per query for each so many readings wanted: an hour at a 30 s interval holds 120.
_READINGS_PER_HOUR_READ = 120
# Raw readings a query asks for at most, which bounds the grid it sends.
_READINGS_MAX = 100_000


@dataclass(frozen=True)
class Readings:
    """Readings side by side: times (epoch microseconds), label set ids (0: none) and a
    [reading][metric id - 1] grid of their values, NaN where a reading has none."""

    times: np.ndarray
    label_set_ids: np.ndarray
    grid: np.ndarray

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class Samples:
    """Samples side by side in a walk's order: times (epoch microseconds), metric ids and values."""

    times: np.ndarray
    metric_ids: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.times)

    def __getitem__(self, index: slice) -> Samples:
        return Samples(self.times[index], self.metric_ids[index], self.values[index])

    def time_texts(self) -> tuple[list[str], np.ndarray]:
        """Each distinct time as RFC 3339 text (fraction trimmed), and the index of each sample's among them."""
        distinct, position = np.unique(self.times, return_inverse=True)
        if (distinct % 1_000_000).any():
            texts = [microseconds_rfc3339_short(t) for t in distinct.tolist()]
        else:  # whole seconds, the usual case: numpy writes them all at once
            texts = [f"{t}Z" for t in np.datetime_as_string((distinct // 1_000_000).astype("datetime64[s]")).tolist()]
        return texts, position

    def time_column(self) -> np.ndarray:
        """Each sample's time for orjson to write as an array: whole seconds as datetime64[s],
        which it writes as RFC 3339 with a Z, else as RFC 3339 text (fraction trimmed)."""
        whole_seconds = not (self.times % 1_000_000).any()
        if whole_seconds and (not len(self) or self.times.max() < _DATETIME64_WRITTEN_BEFORE_US):
            return (self.times // 1_000_000).astype("datetime64[s]")
        texts, position = self.time_texts()
        return np.array(texts, dtype=object)[position]

    def rows(self) -> list[Sample]:
        texts, position = self.time_texts()
        return list(zip([texts[i] for i in position.tolist()], self.metric_ids.tolist(), self.values.tolist()))


def readings_of_row(hour: int | None, times: bytes, label_set_ids: bytes, grid: bytes) -> Readings:
    """A row of window_readings.sql: the raw readings (hour None) or a packed hour ([metric][reading] grid)."""
    if hour is None:
        return Readings(timestamps_received(times), array_received(label_set_ids, ">i8"),
                        array_received(grid, ">f8"))
    return Readings(hour + array_received(times, ">i8"), array_received(label_set_ids, ">i8"), array_received(grid, ">f8").T)


def readings_merged(blocks: Sequence[Readings], *, descending: bool) -> Readings:
    """The blocks' readings in one grid (padded to the widest), in time order (newest first when descending)."""
    width = max(block.grid.shape[1] for block in blocks)
    grid = np.full((sum(len(block) for block in blocks), width), np.nan)
    row = 0
    for block in blocks:
        grid[row:row + len(block), :block.grid.shape[1]] = block.grid
        row += len(block)
    times = np.concatenate([block.times for block in blocks])
    order = np.argsort(-times if descending else times, kind="stable")
    return Readings(times[order], np.concatenate([block.label_set_ids for block in blocks])[order], grid[order])


@dataclass(frozen=True)
class Walk:
    """A walk over one device's samples in (time, metric) order, or its reverse when `descending`,
    within [start_us, end_us] and after (time_us, metric_id) `after` in the walk's direction."""

    start_us: int
    end_us: int
    descending: bool
    metric_ids: Sequence[int] | None = None
    after: tuple[int, int] | None = None

    def samples(self, readings: Readings, attributed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reading index, metric id, value) of each of the readings' samples that the walk takes, in its order."""
        keep = (readings.times >= self.start_us) & (readings.times <= self.end_us)
        if attributed is not None:
            keep &= np.isin(readings.label_set_ids, attributed)
        rows = np.flatnonzero(keep)
        width = readings.grid.shape[1]
        columns = np.arange(width) if self.metric_ids is None else np.array([m - 1 for m in self.metric_ids if m <= width], dtype=np.int64)
        if self.descending:
            columns = columns[::-1]
        values = readings.grid[np.ix_(rows, columns)]
        # Row-major: by reading, then by metric in the walk's order.
        at, column = np.nonzero(~np.isnan(values))
        index, metric_ids, values = rows[at], columns[column] + 1, values[at, column]
        if self.after is not None:
            times, (after_time, after_metric) = readings.times[index], self.after
            beyond = (times < after_time) | ((times == after_time) & (metric_ids < after_metric)) if self.descending else (
                (times > after_time) | ((times == after_time) & (metric_ids > after_metric)))
            index, metric_ids, values = index[beyond], metric_ids[beyond], values[beyond]
        return index, metric_ids, values


# A query of window_readings.sql: (start, end, descending, readings, hours) → its rows.
Fetch = Callable[[datetime | str, datetime | str, bool, int, int], list[tuple]]


def window_samples(walk: Walk, *, limit: int, metrics_known: int, fetch: Fetch) -> Samples:
    """The first `limit` samples of the walk, querying on from where the blocks read are complete until it has them."""
    # Samples a reading holds: guessed at first, then as seen; a query that found none asks for twice
    # as many readings the next time, so a metric that few readings hold takes few queries.
    per_reading = len(walk.metric_ids) if walk.metric_ids is not None else max(1, metrics_known)
    pages: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    taken = seen = 0
    while walk.start_us <= walk.end_us and taken < limit:
        wanted = min(_READINGS_MAX, math.ceil((limit - taken) / per_reading) + 1)
        hours = 2 + wanted // _READINGS_PER_HOUR_READ
        rows = fetch(_param_time(walk.start_us), _param_time(walk.end_us), walk.descending, wanted, hours)
        if not rows:
            break
        raw = [readings_of_row(*row[:4]) for row in rows if row[0] is None]
        packed_hours = [row[0] for row in rows if row[0] is not None]
        attributed = None if rows[0][4] is None else array_received(rows[0][4], ">i8")
        complete = _complete_through(walk, raw[0] if raw and len(raw[0]) == wanted else None,
                                     packed_hours if len(packed_hours) == hours else None)
        part = walk if complete is None else replace(
            walk, **({"start_us": max(walk.start_us, complete)} if walk.descending else {"end_us": min(walk.end_us, complete)}))
        readings = readings_merged(raw + [readings_of_row(*row[:4]) for row in rows if row[0] is not None],
                                   descending=walk.descending)
        index, metric_ids, values = part.samples(readings, attributed)
        pages.append((readings.times[index], metric_ids, values))
        taken += len(index)
        seen += int(np.count_nonzero((readings.times >= part.start_us) & (readings.times <= part.end_us)))
        per_reading = taken / seen if taken else per_reading / 2
        if complete is None:
            break
        walk = replace(walk, **({"end_us": complete - 1} if walk.descending else {"start_us": complete + 1}))
    return _samples_listed(pages, limit)


def _complete_through(walk: Walk, raw_full: Readings | None, hours_full: list[int] | None) -> int | None:
    """The time through which the readings a query returned are all of the window's (in the walk's
    direction), where it returned as many raw readings or packed hours as it asked for; None: all of it."""
    bounds = []
    if raw_full is not None:
        bounds.append(int(raw_full.times.min() if walk.descending else raw_full.times.max()))
    if hours_full is not None:
        bounds.append(min(hours_full) if walk.descending else max(hours_full) + _HOUR_US - 1)
    if not bounds:
        return None
    return max(bounds) if walk.descending else min(bounds)


def _samples_listed(pages: list[tuple[np.ndarray, np.ndarray, np.ndarray]], limit: int) -> Samples:
    if not pages:
        return Samples(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    return Samples(*(np.concatenate(column)[:limit] for column in zip(*pages)))


def _param_time(timestamp_us: int) -> datetime | str:
    """A bound for the query: the open ends as PostgreSQL's infinities."""
    if timestamp_us <= MIN_US:
        return "-infinity"
    return "infinity" if timestamp_us >= MAX_US else to_datetime(timestamp_us)


# Open bounds of a walk, just outside every time a datetime holds.
MIN_US = to_microseconds(datetime.min.replace(tzinfo=timezone.utc)) - 1
MAX_US = to_microseconds(datetime.max.replace(tzinfo=timezone.utc)) + 1
# orjson writes a datetime64 only before 9999-12-30 22:00, short of the last times a datetime holds.
_DATETIME64_WRITTEN_BEFORE_US = to_microseconds(datetime(9999, 12, 30, tzinfo=timezone.utc))
