"""Hour rollups decoded once per process: a day is sent again only when its row was written since."""
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from telemetry.api import hour_rollups, selectors
from telemetry.api.buckets import WrittenDay
from telemetry.history.packing import hours_pack
from telemetry.ingest.collector.services import samples_persist
from telemetry.models import Gpu
from tests.history.history_data import history_batch

pytestmark = pytest.mark.django_db

# 2025-07-17 22:00 UTC: 27 hours at 20 s hold the whole of the 18th and parts of the 17th and 19th.
START_US = 1_752_789_600_000_000
MIDNIGHT = datetime(2025, 7, 19, tzinfo=timezone.utc)
WINDOW = (START_US, START_US + 27 * 3_600_000_000)


class Reads:
    """summary_hours.sql through `selectors`, remembering which days came with their grids."""

    def __init__(self, gpu_id: int) -> None:
        self.gpu_id = gpu_id
        self.sent: list[int] = []

    def __call__(self, held_days: list[int], held_versions: list[str]) -> list[tuple]:
        rows = selectors._fetchall("summary_hours", {
            "gpu_id": self.gpu_id, "start": datetime.fromtimestamp(WINDOW[0] / 1e6, timezone.utc),
            "end": datetime.fromtimestamp(WINDOW[1] / 1e6, timezone.utc), "held_days": held_days,
            "held_versions": held_versions})
        self.sent = [row[0] for row in rows if row[2] is not None]
        return rows


def cells(parts) -> list[tuple]:
    return [tuple(np.concatenate([getattr(p, name) for p in parts]).tolist())
            for name in ("metric_ids", "first_at", "counts", "sums", "mins", "maxs", "firsts", "lasts")]


def test_a_day_is_sent_again_only_once_its_row_is_written_again():
    samples_persist(batch=history_batch(hours=27, start_us=START_US, step_us=20_000_000), max_per_gpu=0)
    hours_pack(before=MIDNIGHT, chunk=10)
    gpu_id = Gpu.objects.order_by("id").first().id
    held, reads = hour_rollups.HeldDays(2**20), Reads(gpu_id)
    partials = lambda: hour_rollups.hour_partials(held, gpu_id=gpu_id, start_us=WINDOW[0], end_us=WINDOW[1], fetch=reads)  # noqa: E731

    first = partials()
    days = sorted(reads.sent)
    assert len(days) == 2 and len(held) == 2  # the 17th (its last two hours) and the 18th
    assert cells(partials()) == cells(first) and reads.sent == []

    # A late sample on the 18th unpacks its hour and the day's rollup; packing writes the day again.
    samples_persist(batch=history_batch(hours=0.01, start_us=START_US + 5 * 3_600_000_000 + 7_000_000, seed=3),
                    max_per_gpu=0)
    hours_pack(before=MIDNIGHT, chunk=10)
    again = partials()
    assert reads.sent == [days[1]]
    assert cells(again) == cells(hour_rollups.hour_partials(hour_rollups.HeldDays(2**20), gpu_id=gpu_id,
                                                             start_us=WINDOW[0], end_us=WINDOW[1], fetch=Reads(gpu_id)))
    assert sum(again[1].counts) > sum(first[1].counts)


def test_the_least_recently_read_day_leaves_first_when_the_bytes_are_spent():
    samples_persist(batch=history_batch(hours=27, start_us=START_US, step_us=20_000_000), max_per_gpu=0)
    hours_pack(before=MIDNIGHT, chunk=10)
    gpu_id = Gpu.objects.order_by("id").first().id
    one_day = hour_rollups.HeldDays(2**20)
    hour_rollups.hour_partials(one_day, gpu_id=gpu_id, start_us=WINDOW[0], end_us=WINDOW[1], fetch=Reads(gpu_id))
    largest = max(grids.nbytes for _, grids in one_day.held(gpu_id, range(0, 2 * 10**9, 86400)).values())

    held, reads = hour_rollups.HeldDays(largest), Reads(gpu_id)
    hour_rollups.hour_partials(held, gpu_id=gpu_id, start_us=WINDOW[0], end_us=WINDOW[1], fetch=reads)
    assert len(held) == 1 and held.nbytes <= largest
    hour_rollups.hour_partials(held, gpu_id=gpu_id, start_us=WINDOW[0], end_us=WINDOW[1], fetch=reads)
    assert len(reads.sent) == 1  # the newer day was held; the older one is read again, and replaces it
    assert hour_rollups.HeldDays(0).held(gpu_id, [0]) == {}


def test_points_written_for_a_day_count_in_the_bytes_held():
    samples_persist(batch=history_batch(hours=27, start_us=START_US, step_us=20_000_000), max_per_gpu=0)
    hours_pack(before=MIDNIGHT, chunk=10)
    gpu_id = Gpu.objects.order_by("id").first().id
    held, reads = hour_rollups.HeldDays(2**20), Reads(gpu_id)
    hour_rollups.hour_partials(held, gpu_id=gpu_id, start_us=WINDOW[0], end_us=WINDOW[1], fetch=reads)
    decoded = held.nbytes
    parts = hour_rollups.hour_partials(held, gpu_id=gpu_id, start_us=WINDOW[0], end_us=WINDOW[1], fetch=reads,
                                       written=("avg", "max"))
    # The 18th is held whole: its points, written; the 17th's last two hours stay cells.
    (day,) = [part for part in parts if isinstance(part, WrittenDay)]
    assert day.day == int(MIDNIGHT.timestamp()) - 86400 and reads.sent == []
    assert held.nbytes == decoded + sum(map(len, day.by_metric.values()))
    hour_rollups.hour_partials(held, gpu_id=gpu_id, start_us=WINDOW[0], end_us=WINDOW[1], fetch=reads, written=("avg", "max"))
    assert held.nbytes == decoded + sum(map(len, day.by_metric.values()))  # written once
