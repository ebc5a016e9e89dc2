"""The collector's service against the real PostgreSQL: idempotent storage, merging, trimming."""
import threading
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from telemetry.ingest.wire import Batch, GpuInfo, Sample

from telemetry.ingest.streamer.batching import BatchBuilder
from telemetry.ingest.collector.services import (
    References, device_order, references, int_array, nullable_int_array, readings_by_key, samples_persist, samples_trim, text_array,
)
from telemetry.times import to_datetime
from telemetry.models import Gpu, IngestCounter, LabelSet, Reading
from tests.conftest import SAMPLE_COUNT, SAMPLE_GPUS, SAMPLE_HOSTS, SAMPLE_VALUE_SUM
from tests.ingest.collector.devices import (
    DEVICES, FIRST_TICK_US, MIG_1, MIG_2, MIG_PARENT, MIG_UUID, WHOLE, WHOLE_UUID, device_value, devices_batch,
)
from tests.ingest.factories import METRICS, file_batch, fleet_batch, gpu
from tests.samples import device_id, stored_count, stored_samples, stored_sum

pytestmark = pytest.mark.django_db


def test_sample_file_is_stored_exactly(sample_csv):
    result = samples_persist(batch=file_batch(sample_csv), max_per_gpu=0)
    assert (result.received, result.stored, result.duplicates) == (SAMPLE_COUNT, SAMPLE_COUNT, 0)
    assert stored_count() == SAMPLE_COUNT
    assert Gpu.objects.count() == SAMPLE_GPUS
    assert Gpu.objects.values("hostname").distinct().count() == SAMPLE_HOSTS
    assert stored_sum() == pytest.approx(SAMPLE_VALUE_SUM, abs=1e-6)
    assert set(Gpu.objects.values_list("sample_count", flat=True)) == {10}
    # What remains after the column labels (driver version, instance, job) differs only per host.
    assert LabelSet.objects.count() == SAMPLE_HOSTS


def test_a_batch_stored_twice_stores_nothing_twice():
    batch = fleet_batch(gpus=3, ticks=4)
    first = samples_persist(batch=batch, max_per_gpu=0)
    again = samples_persist(batch=batch, max_per_gpu=0)
    assert (first.stored, again.stored, again.duplicates) == (24, 0, 24)
    assert stored_count() == 24
    assert list(Gpu.objects.values_list("sample_count", flat=True)) == [8, 8, 8]
    counters = dict(IngestCounter.objects.values_list("name", "value"))
    assert (counters["samples_stored"], counters["samples_duplicate"]) == (24, 24)


def test_array_literals_reach_postgresql_as_written():
    odd = ['GPU-"quoted"', "GPU-back\\slash", "GPU-{braces},comma", "GPU- spaced ", "NULL", "GPU-ü", ""]
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text[], %s::bigint[]", [text_array(odd), int_array([3, -1, 2**40])])
        assert cursor.fetchone() == (odd, [3, -1, 2**40])


def test_gpus_named_with_quotes_and_backslashes_are_found_again():
    odd = ['GPU-"quoted"', "GPU-back\\slash", "GPU-{braces},comma"]
    builder = BatchBuilder()
    for n, uuid in enumerate(odd):
        builder.add(Sample(GpuInfo(uuid, "host", n, "", ""), METRICS[0], 1_752_871_354_000_000, float(n), None))
    batch = builder.build()
    assert samples_persist(batch=batch, max_per_gpu=0).stored == len(odd)
    again = samples_persist(batch=batch, max_per_gpu=0)
    assert (again.stored, again.duplicates) == (0, len(odd))
    assert sorted(Gpu.objects.values_list("uuid", flat=True)) == sorted(odd)


def test_a_new_gpu_is_stored_with_every_attribute_as_sampled():
    gpus = [GpuInfo("GPU-a", 'host "one"', 3, "nvidia3", "NVIDIA H100 80GB HBM3"), GpuInfo("GPU-b", "höst-2", 0, "", "")]
    builder = BatchBuilder()
    for tick, gpu in ((1, gpus[0]), (2, gpus[0]), (5, gpus[1])):
        builder.add(Sample(gpu, METRICS[0], tick * 1_000_000, 1.0, None))
    samples_persist(batch=builder.build(), max_per_gpu=0)
    rows = Gpu.objects.order_by("uuid").values_list(
        "uuid", "hostname", "index", "device", "model_name", "first_seen", "last_seen", "sample_count")
    stored = [(g.uuid, g.hostname, g.index, g.device, g.model_name) for g in gpus]
    assert list(rows) == [
        (*stored[0], to_datetime(1_000_000), to_datetime(2_000_000), 2),
        (*stored[1], to_datetime(5_000_000), to_datetime(5_000_000), 1),
    ]


def test_duplicates_inside_one_batch_are_stored_once():
    builder = BatchBuilder()
    batch = fleet_batch(gpus=1, ticks=1)
    for sample in batch.samples() * 3:
        builder.add(sample)
    result = samples_persist(batch=builder.build(), max_per_gpu=0)
    assert (result.stored, result.duplicates) == (2, 4)


def test_each_gpu_keeps_exactly_its_newest_n_samples():
    limit = 7
    for start in range(0, 10):  # ten batches of one tick each, oldest first
        samples_persist(batch=fleet_batch(gpus=3, ticks=1, start_us=start * 1_000_000), max_per_gpu=limit)
    for row in Gpu.objects.all():
        kept = sorted(((ts, m) for _, m, ts, _ in stored_samples(gpu=row)), reverse=True)
        assert len(kept) == limit == row.sample_count
        # Ticks 9, 8, 7 complete (2 metrics each) and the newer metric name of tick 6.
        newest = [(to_datetime(t * 1_000_000), m) for t in range(9, 5, -1) for m in sorted(METRICS, reverse=True)]
        assert [(ts, m) for ts, m in kept] == sorted(newest, reverse=True)[:limit]


def test_trim_applies_a_new_limit_and_recounts():
    samples_persist(batch=fleet_batch(gpus=2, ticks=5), max_per_gpu=0)
    Reading.objects.filter(gpu__uuid=gpu(0).uuid, timestamp=to_datetime(1_752_871_354_000_000)).delete()
    deleted = samples_trim(max_per_gpu=4)
    assert deleted == (8 - 4) + (10 - 4)
    assert sorted(Gpu.objects.values_list("sample_count", flat=True)) == [4, 4]
    assert stored_count() == 8


def test_gpu_first_and_last_seen_follow_the_samples():
    samples_persist(batch=fleet_batch(gpus=1, ticks=2, start_us=10_000_000), max_per_gpu=0)
    samples_persist(batch=fleet_batch(gpus=1, ticks=1, start_us=5_000_000), max_per_gpu=0)
    row = Gpu.objects.get()
    assert (row.first_seen, row.last_seen) == (to_datetime(5_000_000), to_datetime(11_000_000))


def test_a_gpu_that_moved_host_is_updated():
    samples_persist(batch=fleet_batch(gpus=1, ticks=1), max_per_gpu=0)
    builder = BatchBuilder()
    for sample in fleet_batch(gpus=1, ticks=1, start_us=0).samples():
        builder.add(sample._replace(gpu=sample.gpu._replace(hostname="new-host")))
    samples_persist(batch=builder.build(), max_per_gpu=0)
    assert Gpu.objects.get().hostname == "new-host"


def test_a_reading_split_between_batches_is_merged_into_one_row():
    whole = fleet_batch(gpus=2, ticks=3)
    per_metric = {metric: BatchBuilder() for metric in METRICS}
    for sample in whole.samples():
        per_metric[sample.metric].add(sample)
    parts = [builder.build() for builder in per_metric.values()]
    results = [samples_persist(batch=part, max_per_gpu=0) for part in parts]
    assert [r.stored for r in results] == [6, 6]
    assert Reading.objects.count() == 6  # 2 GPUs × 3 ticks, each row holding both metrics
    assert stored_count() == 12 and list(Gpu.objects.values_list("sample_count", flat=True)) == [6, 6]
    again = samples_persist(batch=parts[0], max_per_gpu=0)
    assert (again.stored, again.duplicates) == (0, 6)
    assert stored_samples() == sorted(
        (s.gpu.uuid, s.metric, to_datetime(s.timestamp_us), s.value) for s in whole.samples()
    )


def test_a_sample_already_stored_keeps_its_first_value():
    first = fleet_batch(gpus=1, ticks=1)
    samples_persist(batch=first, max_per_gpu=0)
    builder = BatchBuilder()
    for sample in first.samples():
        builder.add(sample._replace(value=99.0))
    assert samples_persist(batch=builder.build(), max_per_gpu=0).stored == 0
    assert stored_sum() == 0.0


START_US = 1_752_871_354_000_000  # fleet_batch's default start
NEWER = START_US + 100_000_000


def test_trimming_reaches_back_past_readings_narrower_than_the_batch():
    builder = BatchBuilder()
    for sample in fleet_batch(gpus=1, ticks=6).samples():
        if sample.metric == METRICS[0]:
            builder.add(sample)  # six old readings of one sample each
    samples_persist(batch=builder.build(), max_per_gpu=0)
    result = samples_persist(batch=fleet_batch(gpus=1, ticks=1, start_us=NEWER), max_per_gpu=4)
    assert result.trimmed == 4
    kept = [ts for _, _, ts, _ in stored_samples()]
    assert sorted(kept) == sorted([to_datetime(1_752_871_358_000_000), to_datetime(1_752_871_359_000_000)] + [to_datetime(NEWER)] * 2)
    assert Gpu.objects.get().sample_count == 4


def test_a_reading_older_than_the_trimmed_ones_is_still_trimmed_first():
    for tick in range(4):
        samples_persist(batch=fleet_batch(gpus=1, ticks=1, start_us=NEWER + tick * 1_000_000), max_per_gpu=4)
    # The walk starts after the newest reading trimmed away, past rows still in the index.
    assert Gpu.objects.get().trimmed_through == to_datetime(NEWER + 1_000_000)
    old = fleet_batch(gpus=1, ticks=1)  # far older than everything trimmed so far
    samples_persist(batch=old, max_per_gpu=4)
    # Storing it cleared trimmed_through, so the walk started over and trimmed it first.
    assert Gpu.objects.get().trimmed_through == to_datetime(old.ts[0])
    kept = sorted({ts for _, _, ts, _ in stored_samples()})
    assert kept == [to_datetime(NEWER + 2_000_000), to_datetime(NEWER + 3_000_000)]


def _wait_for_a_lock_wait(timeout: float = 10.0) -> None:
    """Until some backend of this database waits on a row lock."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("no worker waited on another's locks")


def _ticks(first: int, count: int = 1) -> Batch:
    """Two GPUs' readings at `count` one-second ticks from tick `first` (2 samples each)."""
    return fleet_batch(gpus=2, ticks=count, start_us=START_US + first * 1_000_000)


def _store_while_another_holds_its_commit(first: Batch, second: Batch, *, max_per_gpu: int) -> dict[str, object]:
    """Two workers: the first stores `first` and commits only once the second, storing `second`
    with a snapshot from before that commit, waits on its locks. Their results, by name."""
    holding, release, results = threading.Event(), threading.Event(), {}

    def hold_first() -> None:
        try:
            with transaction.atomic():
                results["first"] = samples_persist(batch=first, max_per_gpu=max_per_gpu)
                holding.set()
                release.wait(10)
        finally:
            holding.set()
            connection.close()

    def store_second() -> None:
        try:
            results["second"] = samples_persist(batch=second, max_per_gpu=max_per_gpu)
        finally:
            connection.close()

    workers = [threading.Thread(target=hold_first), threading.Thread(target=store_second)]
    workers[0].start()
    holding.wait(10)
    workers[1].start()
    try:
        _wait_for_a_lock_wait()
    finally:
        release.set()
        for worker in workers:
            worker.join(30)
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("before, first, second, limit, kept, trimmed", [
    # Both trim the same oldest reading: the second's plan is stale, its delete finds the row gone.
    ([(_ticks(0, 2), 4)], _ticks(2), _ticks(3), 4, [2, 3], (4, 4)),
    # The first stores a reading older than every trimmed one and keeps it; the second's plan,
    # walking from where trimming had stopped, cannot see it: it is still trimmed first.
    ([(_ticks(0, 3), 4)], _ticks(-5), _ticks(3, 2), 6, [2, 3, 4], (0, 8)),
    # An odd limit: both plan to cut the same boundary reading; the second's cut finds it changed.
    ([(_ticks(0, 2), 3)], _ticks(2), _ticks(3), 3, [2, 3], (4, 4)),
], ids=["both-trim-the-same-reading", "an-older-reading-stored-meanwhile", "both-cut-the-same-reading"])
def test_a_worker_whose_gpus_another_changed_meanwhile_still_keeps_exactly_the_newest_n(
        before, first, second, limit, kept, trimmed):
    """The trim planned from a snapshot made stale by another worker's commit: counts and kept samples stay exact."""
    for batch, max_per_gpu in before:
        samples_persist(batch=batch, max_per_gpu=max_per_gpu)
    results = _store_while_another_holds_its_commit(first, second, max_per_gpu=limit)
    assert (results["first"].trimmed, results["second"].trimmed) == trimmed
    for row in Gpu.objects.all():
        assert sorted({ts for _, _, ts, _ in stored_samples(gpu=row)}) == [
            to_datetime(START_US + tick * 1_000_000) for tick in kept]
        assert row.sample_count == stored_count(gpu_id=row.pk) == limit


def test_readings_by_key_puts_each_value_in_its_metric_slot_and_keeps_the_first():
    # Batch metric indexes 0, 1, 2 are database metric ids 3, 1, 2 (slots 2, 0, 1).
    batch = Batch(
        gpus=[gpu(0), gpu(1)], metrics=["c", "a", "b"], labels=[], label=[-1] * 6,
        gpu=[0, 1, 0, 1, 0, 1], ts=[10, 10, 20, 20, 10, 30], size=[3, 3, 3, 3, 1, 1],
        metric=[0, 1, 2, 0, 1, 2, 2, 1, 0, 1, 1, 0, 2, 0],
        value=[3.0, 1.0, 2.0, 13.0, 11.0, 12.0, 22.0, 21.0, 23.0, 31.0, 32.0, 3.5, 9.0, 7.0],
    )
    rows = readings_by_key(batch, gpu_ids=[101, 102], metric_ids=[3, 1, 2], label_ids=[])
    assert rows == {
        (101, 10): (None, [1.0, 2.0, 3.0]),  # a second part adds nothing: every slot was filled first
        (102, 10): (None, [11.0, 12.0, 13.0]),
        (101, 20): (None, [21.0, 22.0, 23.0]),  # another order, the same slots
        (102, 20): (None, [31.0, None, 3.5]),  # metric "a" twice: the first value stays
        (102, 30): (None, [None, None, 7.0]),
    }


# --- MIG: a whole GPU and each MIG instance of it are devices of their own ---


def _devices() -> list[tuple]:
    """(uuid, mig_instance, mig_profile, sample_count) of every stored device, in device order."""
    return sorted(Gpu.objects.values_list("uuid", "mig_instance", "mig_profile", "sample_count"),
                  key=lambda row: device_order(row[:2]))


def _device_of(info: GpuInfo) -> Gpu:
    return Gpu.objects.get(uuid=info.uuid, mig_instance=info.mig_instance)


def test_mig_instances_and_their_parent_gpu_are_stored_as_devices_of_their_own():
    batch = devices_batch(ticks=3)
    result = samples_persist(batch=batch, max_per_gpu=0)
    assert (result.stored, result.duplicates) == (24, 0)
    assert _devices() == [(MIG_UUID, None, "", 6), (MIG_UUID, 1, "3g.40gb", 6), (MIG_UUID, 2, "3g.40gb", 6),
                          (WHOLE_UUID, None, "", 6)]
    assert Reading.objects.count() == 12  # 4 devices × 3 ticks
    assert stored_samples() == sorted(
        (device_id(*s.gpu.key), s.metric, to_datetime(s.timestamp_us), s.value) for s in batch.samples())
    again = samples_persist(batch=batch, max_per_gpu=0)
    assert (again.stored, again.duplicates) == (0, 24)
    assert Gpu.objects.count() == 4


def test_a_mig_instance_new_in_a_later_batch_is_added_beside_the_known_ones():
    samples_persist(batch=devices_batch(ticks=1, devices=(MIG_1, WHOLE)), max_per_gpu=0)
    known = {(g.uuid, g.mig_instance): g.pk for g in Gpu.objects.all()}
    samples_persist(batch=devices_batch(ticks=1, devices=(MIG_1, MIG_2, WHOLE), first_tick=1), max_per_gpu=0)
    assert {(g.uuid, g.mig_instance): g.pk for g in Gpu.objects.exclude(pk__in=known.values())} == {
        (MIG_UUID, 2): _device_of(MIG_2).pk}
    assert [row[3] for row in _devices()] == [4, 2, 4]  # mig1 and the whole GPU have two ticks each


def test_each_mig_instance_and_whole_gpu_keeps_exactly_its_own_newest_n_samples():
    limit = 5
    for tick in range(6):  # one batch per tick; the parent GPU stops at tick 2 (its MIG mode enabled)
        devices = DEVICES if tick < 3 else (MIG_1, MIG_2, WHOLE)
        samples_persist(batch=devices_batch(ticks=1, devices=devices, first_tick=tick), max_per_gpu=limit)
    for info in DEVICES:
        row = _device_of(info)
        kept = sorted(((ts, m) for _, m, ts, _ in stored_samples(gpu=row)), reverse=True)
        assert len(kept) == limit == row.sample_count, info
        last = 2 if info is MIG_PARENT else 5
        newest = sorted(((to_datetime(FIRST_TICK_US + t * 1_000_000), m) for t in range(last - 2, last + 1)
                         for m in METRICS), reverse=True)[:limit]
        assert kept == newest, info
        assert {value for _, _, _, value in stored_samples(gpu=row)} == {
            device_value(info, t) for t in range(last - 2, last + 1)}


def test_trim_keeps_each_devices_newest_n_and_recounts_each():
    samples_persist(batch=devices_batch(ticks=5), max_per_gpu=0)
    # One reading of instance 2 deleted outside the collector: its count is stale until the recount.
    Reading.objects.filter(gpu=_device_of(MIG_2), timestamp=to_datetime(FIRST_TICK_US)).delete()
    deleted = samples_trim(max_per_gpu=4)
    assert deleted == 3 * (10 - 4) + (8 - 4)
    assert [row[3] for row in _devices()] == [4, 4, 4, 4]
    for info in DEVICES:
        assert {ts for _, _, ts, _ in stored_samples(gpu=_device_of(info))} == {
            to_datetime(FIRST_TICK_US + t * 1_000_000) for t in (3, 4)}


def test_a_mig_instance_given_a_new_profile_is_updated_alone():
    samples_persist(batch=devices_batch(ticks=1), max_per_gpu=0)
    reprofiled = MIG_2._replace(mig_profile="2g.20gb", hostname="dgx-mig-02")
    builder = BatchBuilder()
    for sample in devices_batch(ticks=1, first_tick=1).samples():
        builder.add(sample._replace(gpu=reprofiled) if sample.gpu == MIG_2 else sample)
    samples_persist(batch=builder.build(), max_per_gpu=0)
    rows = {(g.uuid, g.mig_instance): (g.mig_profile, g.hostname, g.sample_count) for g in Gpu.objects.all()}
    assert rows == {
        (MIG_UUID, None): ("", "dgx-mig-01", 4), (MIG_UUID, 1): ("3g.40gb", "dgx-mig-01", 4),
        (MIG_UUID, 2): ("2g.20gb", "dgx-mig-02", 4), (WHOLE_UUID, None): ("", "dgx-mig-01", 4),
    }


def test_nullable_int_arrays_reach_postgresql_as_written():
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::smallint[]", [nullable_int_array([None, 1, 7, None])])
        assert cursor.fetchone() == ([None, 1, 7, None],)


def test_device_order_puts_a_whole_gpu_before_its_instances():
    keys = [("GPU-b", None), ("GPU-a", 2), ("GPU-a", None), ("GPU-a", 0)]
    assert sorted(keys, key=device_order) == [("GPU-a", None), ("GPU-a", 0), ("GPU-a", 2), ("GPU-b", None)]


@pytest.mark.django_db(transaction=True)
def test_two_workers_creating_the_same_new_devices_store_each_device_and_sample_once():
    """The second worker's create waits on the first's uncommitted rows, whole GPUs' NULL instance included."""
    batch = devices_batch(ticks=2)
    results = _store_while_another_holds_its_commit(batch, batch, max_per_gpu=0)
    assert (results["first"].stored, results["second"].stored, results["second"].duplicates) == (16, 0, 16)
    assert [row[3] for row in _devices()] == [4, 4, 4, 4]


# --- The references a worker remembers (devices, metrics, label sets) ---


def _statements_while(action) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        action()
    return [query["sql"] for query in queries]


@pytest.mark.django_db(transaction=True)
def test_a_worker_looks_up_the_references_it_remembers_no_more(sample_csv):
    batch = file_batch(sample_csv)
    first = _statements_while(lambda: samples_persist(batch=batch, max_per_gpu=0))
    again = _statements_while(lambda: samples_persist(batch=batch, max_per_gpu=0))
    looked_up = ("JOIN telemetry_gpu AS g ON g.uuid", 'FROM "telemetry_metric"', 'FROM "telemetry_labelset"')
    assert all(any(marker in sql for sql in first) for marker in looked_up)
    assert not any(marker in sql for sql in again for marker in looked_up)
    assert len(references.devices) == SAMPLE_GPUS and len(references.label_sets) == SAMPLE_HOSTS


@pytest.mark.django_db(transaction=True)
def test_a_device_another_worker_created_is_found_and_not_created_twice():
    samples_persist(batch=fleet_batch(gpus=2, ticks=1), max_per_gpu=0)
    # Another worker (its own process, its own memory) has just created GPU 2.
    other = Gpu.objects.create(uuid=gpu(2).uuid, hostname=gpu(2).hostname, index=2, device="nvidia2",
                               model_name=gpu(2).model_name, first_seen=to_datetime(0), last_seen=to_datetime(0))
    samples_persist(batch=fleet_batch(gpus=3, ticks=1, start_us=START_US), max_per_gpu=0)
    assert Gpu.objects.count() == 3
    assert references.devices[gpu(2).uuid, None] == other.pk
    assert stored_count(gpu_id=other.pk) == len(METRICS)


@pytest.mark.django_db(transaction=True)
def test_references_created_in_a_rolled_back_transaction_are_not_remembered():
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        samples_persist(batch=fleet_batch(gpus=2, ticks=1), max_per_gpu=0)
        1 / 0
    assert (references.devices, references.metrics, references.label_sets) == ({}, {}, {})
    assert samples_persist(batch=fleet_batch(gpus=2, ticks=1), max_per_gpu=0).stored == 2 * len(METRICS)
    assert stored_count() == 2 * len(METRICS)


@pytest.mark.django_db(transaction=True)
def test_remembered_references_whose_rows_were_deleted_are_looked_up_again(sample_csv):
    batch = file_batch(sample_csv)
    samples_persist(batch=batch, max_per_gpu=0)
    remembered = dict(references.devices)
    with connection.cursor() as cursor:  # what a test or a benchmark does between runs
        cursor.execute("TRUNCATE telemetry_reading, telemetry_gpu, telemetry_metric, telemetry_labelset")
    assert samples_persist(batch=batch, max_per_gpu=0).stored == SAMPLE_COUNT
    assert not set(remembered.values()) & set(references.devices.values())
    # Every sample is readable again: its device, metric and label set rows exist.
    assert len(stored_samples()) == SAMPLE_COUNT
    assert not Reading.objects.exclude(label_set_id__in=LabelSet.objects.values("id")).exists()


def test_a_full_table_of_references_is_forgotten_before_it_outgrows_its_bound(monkeypatch):
    monkeypatch.setattr(References, "MAX_ENTRIES", 3)
    remembered = References()
    remembered.remember({("a", None): 1, ("b", None): 2}, {"m": 1}, {})
    remembered.remember({("c", None): 3, ("d", None): 4}, {"n": 2}, {})
    assert remembered.devices == {("c", None): 3, ("d", None): 4}
    assert remembered.metrics == {"m": 1, "n": 2}
