"""A ColumnBatch (telemetry/ingest/columns.py) is stored exactly as the same Batch is.

Each scenario runs twice in one rolled-back transaction each, once storing Batches and once the
same readings as ColumnBatches (one binary COPY), and both must leave the same samples, rows,
device bookkeeping and counters, and report the same stored, duplicate and trimmed counts.
"""
from datetime import datetime, timezone

import numpy as np
import pytest
from django.db import connection, transaction

from telemetry.history.packing import hours_pack
from telemetry.ingest.collector.services import references, samples_persist
from telemetry.ingest.columns import ColumnBatch
from telemetry.ingest.wire import Batch, GpuInfo, Labels
from telemetry.models import Gpu, IngestCounter, Reading
from tests.conftest import REPO
from tests.history.history_data import START_US, history_batch
from tests.ingest.factories import file_batch, fleet_batch
from tests.samples import stored_samples

pytestmark = pytest.mark.django_db

PACK_BEFORE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def columns(batch: Batch) -> ColumnBatch:
    return ColumnBatch(batch.gpus, batch.metrics, batch.labels, np.array(batch.gpu, np.int32), np.array(batch.ts, np.int64),
                       np.array(batch.label, np.int32), np.array(batch.size, np.int64), np.array(batch.metric, np.int32),
                       np.array(batch.value, np.float64), batch.rejected)


def state() -> dict:
    """What the database holds, by content (ids differ between the two runs)."""
    readings = Reading.objects.values_list("gpu__uuid", "gpu__mig_instance", "timestamp", "label_set__container",
                                           "label_set__pod", "label_set__labels")
    devices = Gpu.objects.values_list("uuid", "mig_instance", "mig_profile", "hostname", "index", "device",
                                      "model_name", "first_seen", "last_seen", "sample_count")
    with connection.cursor() as cursor:
        cursor.execute("SELECT g.uuid, h.hour, h.samples, h.counts, h.times FROM telemetry_readinghour AS h "
                       "JOIN telemetry_gpu AS g ON g.id = h.gpu_id")
        packed = sorted(cursor.fetchall())
    return {"samples": stored_samples(), "readings": sorted(readings, key=repr), "devices": sorted(devices, key=repr),
            "packed": packed, "counters": dict(IngestCounter.objects.values_list("name", "value"))}


def run(steps, *, as_columns: bool) -> tuple[list, dict]:
    references.clear()
    results = []
    with transaction.atomic():
        for step in steps:
            if step == "pack":
                hours_pack(before=PACK_BEFORE, chunk=10)
                continue
            batch, limit = step
            results.append(samples_persist(batch=columns(batch) if as_columns else batch, max_per_gpu=limit))
        found = state()
        transaction.set_rollback(True)
    references.clear()
    return results, found


def whole_gpu(n: int) -> GpuInfo:
    return GpuInfo(f"GPU-{n}", "host-1", n, f"nvidia{n}", "H100")


def one_reading(metrics: list[str], values: list[float], *, ts: int = START_US, labels: Labels | None = None) -> Batch:
    return Batch([whole_gpu(0)], sorted(set(metrics)), [labels] if labels else [], [0], [ts], [0 if labels else -1],
                 [len(values)], [sorted(set(metrics)).index(m) for m in metrics], values)


SCENARIOS = {
    "readings with gaps, a pod and none": [(history_batch(), 0)],
    "the MIG sample": [(file_batch(REPO / "tests" / "data" / "dcgm_mig.csv"), 0)],
    "a replay": [(history_batch(), 0), (history_batch(), 0)],
    "parts merged into stored readings": [(history_batch(seed=1), 0), (history_batch(seed=2), 0)],
    "late samples for packed hours": [(history_batch(), 0), "pack", (history_batch(hours=3.5, seed=3), 0)],
    "trimmed to a per-device limit": [(fleet_batch(gpus=4, ticks=30), 25), (fleet_batch(gpus=4, ticks=40), 25)],
    "trimmed readings of unequal widths": [(history_batch(seed=4), 40), (history_batch(seed=5, start_us=START_US + 10**9), 40)],
    "a metric twice in a reading": [(one_reading(["A", "B", "A"], [1.0, 2.0, 3.0]), 0),
                                    (one_reading(["B", "C"], [9.0, 4.0], labels=Labels("c", "p", "n", (("k", "v"),))), 0)],
    "rejected rows only": [(Batch([], [], [], [], [], [], [], [], [], rejected=3), 0)],
}


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_a_column_batch_is_stored_as_its_batch_is(steps):
    by_batches = run(steps, as_columns=False)
    by_columns = run(steps, as_columns=True)
    assert by_columns == by_batches
    assert by_batches[1]["counters"]  # something was stored or counted


def test_the_wire_batch_of_a_column_batch_is_the_same_batch():
    batch = history_batch()
    assert columns(batch).batch() == batch
