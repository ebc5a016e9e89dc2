"""History figures: bytes per packed sample, packing rate, dropping a day, summaries from rollups.

`python -m bench.history [--gpus 20 --days 2]`: N GPUs × 10 metrics every 10 s for D days (realistic
values: constant, two-valued, slowly varying and noisy metrics), stored through the collector's
write path, then packed by `compress`'s code; prints each figure next to the issue's target.
"""
import argparse
import random
import statistics
import time
from datetime import datetime, timedelta, timezone

from bench import harness

DB = "telemetry_bench_history"
STEP_US = 10_000_000
METRICS = [f"DCGM_FI_BENCH_{i}" for i in range(10)]
START = datetime(2025, 7, 1, tzinfo=timezone.utc)


def values(rng: random.Random, step: int, gpu: int) -> list[float]:
    """10 metrics: 3 constant, 2 two-valued (utilisation-like), 3 slowly varying, 2 noisy (power)."""
    return [80.0, 1410.0, 0.0, float(rng.choice((0, 100))), float(rng.choice((0, 100))),
            40.0 + (step // 60 + gpu) % 7, 30.0 + (step // 90) % 5, 2000.0 + (step // 30) % 11,
            round(rng.uniform(60, 700), 3), round(rng.uniform(50, 690), 3)]


def load(gpus: int, days: int) -> int:
    from telemetry.ingest.collector.services import batches_persist
    from telemetry.ingest.streamer.batching import BatchBuilder
    from telemetry.ingest.wire import GpuInfo, Sample

    rng = random.Random(1)
    devices = [GpuInfo(f"GPU-bench-{n:04d}", f"host-{n // 8}", n % 8, f"nvidia{n % 8}", "NVIDIA H100") for n in range(gpus)]
    start_us = int(START.timestamp() * 1_000_000)
    total = 0
    steps_per_batch = 20000 // (gpus * len(METRICS)) or 1
    for first in range(0, days * 8640, steps_per_batch):
        builder = BatchBuilder()
        for step in range(first, min(first + steps_per_batch, days * 8640)):
            for n, device in enumerate(devices):
                for metric, value in zip(METRICS, values(rng, step, n)):
                    builder.add(Sample(device, metric, start_us + step * STEP_US, value, None))
        batch = builder.build()
        total += batches_persist([batch], max_per_gpu=0).stored
    return total


def relation_bytes(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits AS i "
                       "WHERE i.inhparent = %s::regclass", [table])
        return cursor.fetchone()[0]


def percentile(samples: list[float], p: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1] if len(samples) > 1 else samples[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpus", type=int, default=20)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    harness.database_recreate(DB)
    harness.configure_django(DB, "telemetry.ingest.bench-history")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection

    from telemetry.api.selectors import gpu_telemetry_summary
    from telemetry.history import maintenance, packing, partitions

    started = time.monotonic()
    samples = load(args.gpus, args.days)
    load_s = time.monotonic() - started
    raw_bytes = relation_bytes("telemetry_reading")
    started = time.monotonic()
    result = packing.hours_pack(before=START + timedelta(days=args.days), chunk=maintenance.PACK_CHUNK)
    pack_s = time.monotonic() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    packed_bytes = relation_bytes("telemetry_readinghour")
    minute_bytes, hour_bytes = relation_bytes("telemetry_rollupminute"), relation_bytes("telemetry_rolluphour")
    print(f"{samples:,} samples ({args.gpus} GPUs × 10 metrics every 10 s × {args.days} days); stored at "
          f"{samples / load_s:,.0f} samples/s")
    print(f"raw readings:  {raw_bytes / samples:.2f} bytes/sample")
    print(f"packed hours:  {packed_bytes / samples:.2f} bytes/sample   (target ≤ 3, goal ≤ 2)")
    print(f"rollups:       minute {minute_bytes / samples:.2f}, hour {hour_bytes / samples:.3f} bytes per raw sample")
    print(f"packing:       {result.samples / pack_s:,.0f} samples/s ({result.hours} device-hours in {pack_s:.1f} s)")

    gpu_id = 1
    timings = []
    for _ in range(args.queries):
        started = time.perf_counter()
        gpu_telemetry_summary(gpu_id=gpu_id, start=START, end=START + timedelta(days=30), bucket_seconds=3600,
                              aggregates=["avg", "min", "max", "count"])
        timings.append((time.perf_counter() - started) * 1000)
    print(f"summary, {args.days} days in 1 h buckets (30-day window): p50 {percentile(timings, 50):.1f} ms, "
          f"p99 {percentile(timings, 99):.1f} ms   (target p99 ≤ 10 ms)")

    started = time.perf_counter()
    dropped = partitions.partitions_drop_before(packing.PACKED, START + timedelta(days=1),
                                                forget=maintenance._PACKED_FORGET)
    drop_ms = (time.perf_counter() - started) * 1000
    print(f"dropping a day's packed partition ({sum(dropped.values()):,} samples): {drop_ms:.0f} ms   (target ≤ 100 ms)")
    connection.close()
    harness.database_drop(DB)


if __name__ == "__main__":
    main()
