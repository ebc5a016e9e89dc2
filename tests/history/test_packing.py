"""Packing old readings per device and hour: read back alike, idempotent, late samples stored once."""
from datetime import datetime, timezone

import pytest

from telemetry.history.packing import hours_pack
from telemetry.ingest.collector.services import gpus_recount, samples_persist
from telemetry.models import Gpu, Reading
from tests.history.history_data import START_US, history_batch, readings_between, table_rows

pytestmark = pytest.mark.django_db

BOUNDARY = datetime(2026, 1, 1, tzinfo=timezone.utc)


def every_device_readings() -> dict[int, list[tuple]]:
    return {gpu_id: readings_between(gpu_id) for gpu_id in Gpu.objects.values_list("id", flat=True)}


def test_packed_hours_read_back_as_the_readings_they_hold():
    samples_persist(batch=history_batch(), max_per_gpu=0)
    before = every_device_readings()
    result = hours_pack(before=BOUNDARY, chunk=1)
    assert (result.devices, result.hours) == (2, 2 * 3)
    assert Reading.objects.count() == 0
    first = Gpu.objects.order_by("id").first().id
    assert [(gpu, hour.hour) for gpu, hour, *_ in table_rows("telemetry_readinghour")][:3] == [(first, h) for h in (10, 11, 12)]
    assert every_device_readings() == before
    assert result.samples == sum(len(values) for readings in before.values() for _, _, values in readings)


def test_a_window_across_packed_and_raw_readings_is_one_answer():
    samples_persist(batch=history_batch(), max_per_gpu=0)
    gpu_id = Gpu.objects.order_by("id").first().id
    before = every_device_readings()
    hours_pack(before=datetime(2025, 7, 18, 11, 30, tzinfo=timezone.utc).replace(minute=0), chunk=10)
    assert Reading.objects.filter(gpu_id=gpu_id).exists()  # 11:00 onwards still raw
    lo, hi = datetime(2025, 7, 18, 10, 50, tzinfo=timezone.utc), datetime(2025, 7, 18, 11, 10, tzinfo=timezone.utc)
    assert readings_between(gpu_id, lo, hi) == [r for r in before[gpu_id] if lo <= r[0] <= hi]


def test_packing_twice_changes_nothing():
    samples_persist(batch=history_batch(), max_per_gpu=0)
    hours_pack(before=BOUNDARY, chunk=10)
    tables = [table_rows(t) for t in ("telemetry_readinghour", "telemetry_rollupminute", "telemetry_rolluphour")]
    again = hours_pack(before=BOUNDARY, chunk=10)
    assert (again.devices, again.hours, again.samples) == (0, 0, 0)
    assert [table_rows(t) for t in ("telemetry_readinghour", "telemetry_rollupminute", "telemetry_rolluphour")] == tables


def test_a_late_sample_for_a_packed_hour_is_stored_once():
    samples_persist(batch=history_batch(), max_per_gpu=0)
    hours_pack(before=BOUNDARY, chunk=10)
    expected = every_device_readings()
    # The same three hours again (all duplicates) and half an hour more, on both sides of a packed hour.
    replay = samples_persist(batch=history_batch(hours=3.5, start_us=START_US), max_per_gpu=0)
    extra = replay.received - sum(len(v) for readings in expected.values() for _, _, v in readings)
    assert (replay.stored, replay.duplicates) == (extra, replay.received - extra)
    hours_pack(before=BOUNDARY, chunk=10)
    assert Reading.objects.count() == 0
    after = every_device_readings()
    assert {g: r[:len(expected[g])] for g, r in after.items()} == expected
    counted = dict(Gpu.objects.values_list("id", "sample_count"))
    gpus_recount()
    assert dict(Gpu.objects.values_list("id", "sample_count")) == counted


def test_compress_packs_and_drops_each_tier_past_its_retention(settings):
    from django.core.management import call_command
    from io import StringIO

    from telemetry.history import partitions
    from telemetry.history.packing import PACKED, ROLLUP_MINUTE

    settings.COLLECTOR_MAX_ENTRIES_PER_GPU = 0
    samples_persist(batch=history_batch(), max_per_gpu=0)
    out = StringIO()
    settings.HISTORY_RAW_RETENTION_SECONDS = 0  # kept for ever
    settings.HISTORY_MINUTE_RETENTION_SECONDS = settings.HISTORY_HOUR_RETENTION_SECONDS = 0
    call_command("compress", stdout=out)
    assert "packed 2 devices: 6 hours" in out.getvalue()
    assert Reading.objects.count() == 0 and len(table_rows("telemetry_readinghour")) == 6
    settings.HISTORY_RAW_RETENTION_SECONDS = 86400  # the rollups are kept, their retention being for ever
    call_command("compress", stdout=out)
    assert table_rows("telemetry_readinghour") == [] and len(table_rows("telemetry_rollupminute")) == 6
    assert "telemetry_readinghour_p20250718" in out.getvalue()
    assert list(Gpu.objects.values_list("sample_count", flat=True)) == [0, 0]
    assert [p.name for p in partitions.partitions_list(PACKED)][0] > "telemetry_readinghour_p2026"
    assert [p.name for p in partitions.partitions_list(ROLLUP_MINUTE)][0] == "telemetry_rollupminute_p20250718"


def test_each_device_keeps_its_newest_samples_across_packed_hours():
    samples_persist(batch=history_batch(), max_per_gpu=0)
    hours_pack(before=BOUNDARY, chunk=10)
    stored = every_device_readings()
    newer = samples_persist(batch=history_batch(hours=0.2, start_us=START_US + 3 * 3_600_000_000, seed=5),
                            max_per_gpu=2000)
    for gpu in Gpu.objects.all():
        samples = [(ts, m, v) for ts, _, values in stored[gpu.id] for m, v in values.items()]
        samples += [(ts, m, v) for ts, _, values in readings_between(gpu.id, datetime(2025, 7, 18, 13, tzinfo=timezone.utc))
                    for m, v in values.items()]
        # The newest 2,000 by (time, metric id): trimming removes a reading's first samples by metric id.
        kept = sorted(samples)[-2000:]
        assert sorted((ts, m, v) for ts, _, values in readings_between(gpu.id) for m, v in values.items()) == kept
        assert gpu.sample_count == 2000
    assert newer.trimmed == sum(len(v) for readings in stored.values() for _, _, v in readings) + newer.stored - 2 * 2000
    # The hour the limit cut into was unpacked; the rest of the old ones went whole, with their rollups.
    assert Reading.objects.filter(timestamp__lt=datetime(2025, 7, 18, 13, tzinfo=timezone.utc)).exists()
    assert len(table_rows("telemetry_rollupminute")) == len(table_rows("telemetry_readinghour"))


@pytest.mark.parametrize("every", ["0", "-5"])
def test_compress_refuses_an_interval_that_is_not_above_0(every):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--every must be a number of seconds above 0"):
        call_command("compress", "--every", every)
