"""The hour rollups a summary reads, kept decoded in each API process.

Most of history is written once: a day's hour rollup row changes only when a late sample unpacks
one of its hours and packing writes the day again. So each process keeps the days it has decoded,
keyed by (device, day) with the row's version (summary_hours.sql: every write of a row changes
it), and the database sends again only the days whose version the process does not hold. What is
kept is bounded by API_ROLLUP_CACHE_MB, the least recently used day leaving first.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from telemetry.api.buckets import Grids, Partials, WrittenDay

DAY_SECONDS = 86_400
HOUR_SECONDS = 3_600
_US_PER_HOUR = HOUR_SECONDS * 1_000_000
# summary_hours.sql's rows: day (epoch seconds), version, then the six grids (None when held).
DayRow = Sequence
# Asked for the rows of the days that meet the window, given the (day, version) pairs held.
FetchDays = Callable[[list[int], list[str]], list[DayRow]]


class HeldDays:
    """Decoded hour-rollup days by (device id, day), each with its row's version; least recently used out first."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        # (device id, day) → (version, grids, the bytes they were counted at)
        self._days: OrderedDict[tuple[int, int], tuple[str, Grids, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # the development server answers requests in threads

    def held(self, gpu_id: int, days: Iterable[int]) -> dict[int, tuple[str, Grids]]:
        """The held days among `days`: day → (version, grids)."""
        with self._lock:
            found = {}
            for day in days:
                entry = self._days.get((gpu_id, day))
                if entry is not None:
                    self._days.move_to_end((gpu_id, day))
                    found[day] = entry[:2]
            return found

    def keep(self, gpu_id: int, day: int, version: str, grids: Grids) -> None:
        """Hold a day's grids, and with them their cells (`Grids.whole`); again once they have grown."""
        grids.whole  # noqa: B018 -- computed now, so that the bytes held count it
        size = grids.nbytes
        with self._lock:
            old = self._days.pop((gpu_id, day), None)
            if old is not None:
                self._bytes -= old[2]
            if size > self._max_bytes:
                return
            self._days[gpu_id, day] = (version, grids, size)
            self._bytes += size
            while self._bytes > self._max_bytes:
                _, (_, _, dropped) = self._days.popitem(last=False)
                self._bytes -= dropped

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._days)


def hour_partials(held: HeldDays, *, gpu_id: int, start_us: int, end_us: int, fetch: FetchDays,
                  written: tuple[str, ...] | None = None) -> list[Partials | WrittenDay]:
    """The cells of the hours that [start_us, end_us] (inclusive) holds whole, a Partials per day
    with an hour rollup, oldest first; days decoded before and not written since are not sent again.
    With `written` (aggregates, for a summary in hour buckets) a day held whole comes as its points,
    written as JSON once per process and aggregates."""
    first_day = start_us // 1_000_000 // DAY_SECONDS * DAY_SECONDS
    holding = held.held(gpu_id, range(first_day, end_us // 1_000_000 + 1, DAY_SECONDS))
    rows = fetch(list(holding), [version for version, _ in holding.values()])
    parts = []
    for day, version, *sent in rows:
        kept = holding.get(day)
        if kept is not None and kept[0] == version:
            grids = kept[1]
        else:
            grids = Grids.received(start=float(day), slot_seconds=HOUR_SECONDS, grids=sent)
            held.keep(gpu_id, day, version, grids)
        day_us = day * 1_000_000
        first_slot = max(0, -((day_us - start_us) // _US_PER_HOUR))
        end_slot = min(24, (end_us + 1 - day_us) // _US_PER_HOUR)
        if written is not None and (first_slot, end_slot) == (0, 24):
            grown = written not in grids.written
            parts.append(WrittenDay(day, grids.points_written(written)))
            if grown:
                held.keep(gpu_id, day, version, grids)
        else:
            parts.append(grids.partials(first_slot, end_slot))
    return parts
