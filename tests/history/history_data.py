"""Readings of a few devices over a few old hours, with gaps, label sets and noisy values."""
import random
from datetime import datetime, timezone

from django.db import connection

from telemetry.ingest.streamer.batching import BatchBuilder
from telemetry.ingest.wire import Batch, Labels, Sample
from tests.ingest.factories import gpu

METRICS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE")
# 2025-07-18 10:00 UTC, long before any packing boundary.
START_US = 1_752_832_800_000_000
STEP_US = 10_000_000
POD = Labels("main", "trainer-0", "ml", ())


def history_batch(*, gpus: int = 2, hours: float = 3, start_us: int = START_US, seed: int = 1,
                  step_us: int = STEP_US) -> Batch:
    """Every `step_us`, each GPU's metrics; one in seven values missing, one GPU attributed to a pod."""
    rng = random.Random(seed)
    builder = BatchBuilder()
    for step in range(int(hours * 3600 * 1_000_000 // step_us)):
        ts = start_us + step * step_us + rng.randrange(0, 1000)
        for n in range(gpus):
            for metric in METRICS:
                if rng.random() < 1 / 7:
                    continue
                value = {"DCGM_FI_DEV_GPU_UTIL": float(rng.choice([0, 100])), "DCGM_FI_DEV_GPU_TEMP": 40.0 + step % 5,
                         "DCGM_FI_DEV_POWER_USAGE": round(rng.uniform(50, 700), 3)}[metric]
                builder.add(Sample(gpu(n), metric, ts, value, POD if n == 0 else None))
    return builder.build()


def readings_between(gpu_id: int, lo: datetime | None = None, hi: datetime | None = None) -> list[tuple]:
    """(time, label set, samples by metric id) of every reading, raw and packed, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT \"timestamp\", label_set_id, \"values\" FROM telemetry_readings_between(%s, %s, %s) ORDER BY 1",
            [gpu_id, lo or datetime.min.replace(tzinfo=timezone.utc), hi or datetime.max.replace(tzinfo=timezone.utc)],
        )
        return [(ts, label, {i + 1: v for i, v in enumerate(values) if v is not None}) for ts, label, values in cursor.fetchall()]


def table_rows(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
        return cursor.fetchall()
