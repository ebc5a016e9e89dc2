"""Day partitions: created as readings arrive and ahead of time, dropped whole by retention."""
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection

from telemetry.history import partitions
from telemetry.ingest.collector.services import batches_persist, gpus_recount, samples_delete_older_than, samples_persist
from telemetry.models import Gpu, Reading
from tests.ingest.factories import fleet_batch

pytestmark = pytest.mark.django_db

DAY_US = partitions.US_PER_DAY
# 2025-07-18 22:00 UTC: four hourly ticks cross midnight into the 19th.
LATE_EVENING_US = 1_752_876_000_000_000


def names() -> list[str]:
    return [p.name for p in partitions.partitions_list(partitions.READINGS)]


def rows_in(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {name}")
        return cursor.fetchone()[0]


def every(hours: int, *, start_us: int, ticks: int, gpus: int = 2):
    """Batches of one tick each, `hours` apart."""
    return [fleet_batch(gpus=gpus, ticks=1, start_us=start_us + tick * hours * 3_600_000_000) for tick in range(ticks)]


def test_readings_land_in_a_partition_of_their_own_day():
    batches_persist(every(1, start_us=LATE_EVENING_US, ticks=4), max_per_gpu=0)
    assert names() == ["telemetry_reading_p20250718", "telemetry_reading_p20250719"]
    assert (rows_in("telemetry_reading_p20250718"), rows_in("telemetry_reading_p20250719")) == (2 * 2, 2 * 2)
    assert Reading.objects.count() == 8


def test_a_day_dropped_since_a_worker_remembered_it_is_created_again():
    samples_persist(batch=fleet_batch(gpus=1, ticks=1, start_us=LATE_EVENING_US), max_per_gpu=0)
    partitions.known.remember(partitions.READINGS, [LATE_EVENING_US // DAY_US])  # as on commit
    samples_delete_older_than(cutoff=datetime(2025, 7, 20, tzinfo=timezone.utc))
    assert names() == []
    result = samples_persist(batch=fleet_batch(gpus=1, ticks=1, start_us=LATE_EVENING_US), max_per_gpu=0)
    assert result.stored == 2
    assert names() == ["telemetry_reading_p20250718"]


def test_partitions_ahead_creates_today_and_the_next_days():
    partitions.partitions_ahead(partitions.READINGS, now=datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc), days=2)
    assert names() == ["telemetry_reading_p20261231", "telemetry_reading_p20270101", "telemetry_reading_p20270102"]
    bounds = partitions.partitions_list(partitions.READINGS)[1]
    assert (bounds.lower, bounds.upper) == (datetime(2027, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 2, tzinfo=timezone.utc))


def test_older_than_drops_whole_days_and_deletes_the_rest_of_the_cutoffs_day():
    # Three days of two GPUs, one reading (2 samples) per GPU every 6 hours.
    start = LATE_EVENING_US - 22 * 3_600_000_000  # 2025-07-18 00:00
    batches_persist(every(6, start_us=start, ticks=12), max_per_gpu=0)
    cutoff = datetime(2025, 7, 19, 13, tzinfo=timezone.utc)  # keeps the 19th's 18:00 and the 20th
    deleted = samples_delete_older_than(cutoff=cutoff)
    assert deleted == 2 * 2 * (4 + 3)
    assert names() == ["telemetry_reading_p20250719", "telemetry_reading_p20250720"]
    assert Reading.objects.filter(timestamp__lt=cutoff).count() == 0
    counted = dict(Gpu.objects.values_list("id", "sample_count"))
    gpus_recount()
    assert counted == dict(Gpu.objects.values_list("id", "sample_count")) == {g: 2 * 5 for g in counted}


def test_each_device_keeps_its_newest_samples_across_days():
    batches_persist(every(1, start_us=LATE_EVENING_US, ticks=4, gpus=1), max_per_gpu=0)
    samples_persist(batch=fleet_batch(gpus=1, ticks=1, start_us=LATE_EVENING_US + 4 * 3_600_000_000), max_per_gpu=3)
    kept = list(Reading.objects.order_by("timestamp").values_list("timestamp", flat=True))
    assert kept[-1] - kept[0] == timedelta(hours=1)  # 02:00 (one sample) and 03:00
    assert Gpu.objects.get().sample_count == 3


@pytest.mark.django_db(transaction=True)
def test_the_pipelines_history_thread_creates_the_coming_days(settings):
    import threading
    import time

    from django.utils import timezone

    from telemetry.management.commands.pipeline import _run_history

    settings.HISTORY_INTERVAL_SECONDS = 1
    stop = threading.Event()
    thread = threading.Thread(target=_run_history, args=(stop,))
    thread.start()
    in_two_days = f"telemetry_reading_p{timezone.now() + timedelta(days=2):%Y%m%d}"
    deadline = time.monotonic() + 30
    while in_two_days not in names() and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    thread.join(timeout=30)
    assert in_two_days in names() and not thread.is_alive()
