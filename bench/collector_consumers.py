"""Evidence for the collector's design: celery-batches against a plain kombu consumer.

Both store the same queued messages (a fleet's ticks: 8 GPUs × 25 fields, 200 samples a
message) through the same `batches_persist`, two processes each, grouping up to
COLLECTOR_GROUP_SAMPLES samples or COLLECTOR_GROUP_WAIT_MS. What differs is what runs around it:
the Celery worker (its consumer, pool and celery-batches' buffer) or a minimal kombu loop. The
workers start first; timed from the first publish until every sample is stored, each in turn.

    python -m bench.collector_consumers --messages 5000 --runs 2
"""
import argparse
import multiprocessing
import socket
import statistics
import sys
import time

from bench import harness

DB_NAME = "telemetry_bench_consumers"
QUEUE = "telemetry.ingest.bench_consumers"
GPUS, FIELDS = 8, 25


def node_batch(node: int, tick: int):
    """One node's tick, as a streamer publishes it."""
    from telemetry.ingest.wire import Batch, GpuInfo

    gpus = [GpuInfo(f"GPU-{node:05d}-{g}", f"node-{node:05d}", g, f"nvidia{g}", "NVIDIA H100 80GB HBM3")
            for g in range(GPUS)]
    ts = 1_752_871_354_000_000 + tick * 1_000_000
    return Batch(gpus=gpus, metrics=[f"DCGM_FI_FIELD_{f:02d}" for f in range(FIELDS)], labels=[],
                 gpu=list(range(GPUS)), ts=[ts] * GPUS, label=[-1] * GPUS, size=[FIELDS] * GPUS,
                 metric=list(range(FIELDS)) * GPUS, value=[float(tick + f) for f in range(FIELDS)] * GPUS)


def queue_messages(count: int, nodes: int = 200) -> int:
    """Publish `count` node ticks to the bench queue; returns the samples they hold."""
    import threading

    from config.celery import app
    from telemetry.ingest.streamer.publisher import BatchPublisher
    from telemetry.ingest.wire import encode_batch

    publisher = BatchPublisher(app=app, abort=threading.Event())
    for n in range(count):
        publisher.publish(encode_batch(node_batch(n % nodes, n // nodes)), samples=GPUS * FIELDS)
    publisher.close()
    return count * GPUS * FIELDS


def kombu_consumer(stop) -> None:
    """A minimal grouping consumer: prefetch, gather, store with `batches_persist`, ack each."""
    from django.conf import settings
    from kombu import Consumer

    from config.celery import app
    from telemetry.ingest.collector.services import batches_persist
    from telemetry.ingest.queues import ingest_queue
    from telemetry.ingest.wire import decode_batch

    held: list = []
    with app.connection_for_read() as broker:
        channel = broker.channel()
        channel.basic_qos(0, settings.CELERY_WORKER_PREFETCH_MULTIPLIER, False)
        with Consumer(channel, queues=[ingest_queue()], callbacks=[lambda body, message: held.append(message)],
                      accept=["msgpack"]):
            while not stop.is_set():
                first = time.monotonic()
                samples = 0
                while samples < settings.COLLECTOR_GROUP_SAMPLES and (
                        not held or time.monotonic() - first < settings.COLLECTOR_GROUP_WAIT_MS / 1000):
                    try:
                        broker.drain_events(timeout=0.05)
                    except socket.timeout:
                        if stop.is_set():
                            return
                    samples = sum(m.headers.get("samples", 0) for m in held)
                    if not held:
                        first = time.monotonic()
                group, held[:] = list(held), []
                batches_persist([decode_batch(m.decode()[0][0]) for m in group], max_per_gpu=0)
                for message in group:
                    message.ack()


def timed_store(start, stop, messages: int) -> tuple[int, float]:
    """Start the consumers, publish `messages` ticks, wait until all are stored: (samples, seconds)."""
    from telemetry.models import IngestCounter

    start()
    try:
        began = time.perf_counter()
        samples = queue_messages(messages)
        while harness.counter(IngestCounter.SAMPLES_STORED) < samples:
            time.sleep(0.02)
        return samples, time.perf_counter() - began
    finally:
        stop()


def measure_celery(messages: int, work) -> tuple[int, float]:
    worker = harness.Worker(work)
    return timed_store(worker.__enter__, lambda: worker.__exit__(None, None, None), messages)


def measure_kombu(messages: int, work) -> tuple[int, float]:
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    processes = [context.Process(target=kombu_consumer, args=(stop,)) for _ in range(2)]

    def begin() -> None:
        from django.db import connection

        connection.close()  # each forked process opens its own
        for process in processes:
            process.start()

    def halt() -> None:
        stop.set()
        for process in processes:
            process.join(10)

    return timed_store(begin, halt, messages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    harness.database_recreate(DB_NAME)
    harness.configure_django(DB_NAME, QUEUE)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    work = harness.REPO / "bench" / "results" / "work-consumers"
    work.mkdir(parents=True, exist_ok=True)
    rates: dict[str, list[float]] = {"celery-batches": [], "kombu consumer": []}
    try:
        for _ in range(args.runs):
            for name, measure in (("celery-batches", measure_celery), ("kombu consumer", measure_kombu)):
                harness.tables_truncate()
                harness.queues_purge()
                samples, seconds = measure(args.messages, work)
                rates[name].append(samples / seconds)
                print(f"{name}: {samples:,} samples in {seconds:.2f} s, {samples / seconds:,.0f} samples/s", flush=True)
    finally:
        from django.db import connection

        connection.close()
        harness.queues_delete()
        harness.database_drop(DB_NAME)
    for name, values in rates.items():
        print(f"{name}: median {statistics.median(values):,.0f} samples/s over {len(values)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
