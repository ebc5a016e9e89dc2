"""Fault-injection fixtures: a 100,000-sample fleet CSV, collectors and a streamer on a queue of their own,
and context managers that stop RabbitMQ or PostgreSQL and always start them again."""
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection
from kombu import Connection, Exchange, Queue

from bench.fleet import Fleet
from telemetry.models import IngestCounter
from tests import samples
from tests.conftest import REPO, subprocess_env, wait_until, worker_pool

# A queue of the fault tests' own: a concurrent test run's collectors never take these batches.
FAULT_QUEUE = "telemetry.ingest.faults"
FAULT_DEAD_QUEUE = f"{FAULT_QUEUE}.dead"
BROKER_URL = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
PG_CLUSTER = os.environ.get("FAULT_PG_CLUSTER", "15 main").split()
# 125 hosts × 8 GPUs × 10 metrics × 10 ticks.
FLEET = Fleet(hosts=125, interval_s=15)
FLEET_TICKS = 10


@dataclass(frozen=True)
class Source:
    path: Path
    count: int
    value_sum: int


@pytest.fixture(scope="session")
def fleet_csv(tmp_path_factory) -> Source:
    path = tmp_path_factory.mktemp("faults") / "fleet.csv"
    count, total = FLEET.write_dcgm_csv(path, ticks=FLEET_TICKS)
    assert count >= 100_000
    return Source(path, count, total)


def fault_env(**overrides: str) -> dict[str, str]:
    return subprocess_env(CELERY_INGEST_QUEUE=FAULT_QUEUE, LOG_LEVEL="INFO", **overrides)


def ingest_queues() -> tuple[Queue, Queue]:
    """The fault queue and its dead-letter queue, declared exactly as config/settings.py declares its own."""
    dead = Queue(FAULT_DEAD_QUEUE, Exchange("telemetry.dlx", type="direct", durable=True),
                 routing_key=FAULT_DEAD_QUEUE, durable=True)
    live = Queue(FAULT_QUEUE, Exchange("telemetry", type="direct", durable=True), routing_key=FAULT_QUEUE,
                 durable=True, queue_arguments={"x-dead-letter-exchange": "telemetry.dlx",
                                                "x-dead-letter-routing-key": FAULT_DEAD_QUEUE})
    return live, dead


def queues_purge() -> None:
    with Connection(BROKER_URL) as broker:
        for queue in ingest_queues()[::-1]:
            bound = queue.bind(broker.default_channel)
            bound.declare()
            bound.purge()


def dead_letter_count() -> int:
    with Connection(BROKER_URL) as broker:
        _, messages, _ = broker.default_channel.queue_declare(FAULT_DEAD_QUEUE, passive=True)
    return messages


@pytest.fixture
def collectors(transactional_db) -> Iterator:
    """Start collector workers on the fault queue (stopped at the end); the fault queues start empty."""
    queues_purge()
    with worker_pool(queue=FAULT_QUEUE, env={"CELERY_INGEST_QUEUE": FAULT_QUEUE, "LOG_LEVEL": "INFO"}, name="fault") as start:
        yield start


class Stream:
    """`manage.py stream` of the fleet CSV at a set rate, so faults land in the middle of it."""

    def __init__(self, source: Source, *, rate: int, batch_size: int) -> None:
        self.source = source
        self.log = REPO / "tests" / "artifacts" / f"stream-{os.getpid()}-{time.monotonic_ns()}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "stream", str(source.path), "--timestamps", "source", "--rate", str(rate),
             "--batch-size", str(batch_size), "--flush-interval", "1", "--progress-interval", "5"],
            cwd=REPO, env=fault_env(), stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )

    def running(self) -> bool:
        return self.process.poll() is None

    def finish(self, timeout: float = 180) -> str:
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        output = self.log.read_text()
        assert self.process.returncode == 0, output[-3000:]
        assert f"streamed {self.source.count} samples" in output, output[-3000:]
        return output


# Each fault in a stream of large batches and in a fleet's small ones (one node's tick).
@pytest.fixture(params=[5000, 200], ids=["batches-of-5000", "batches-of-200"])
def stream(collectors, request) -> Iterator:
    started: list[Stream] = []

    def start(source: Source, **kwargs) -> Stream:
        run = Stream(source, batch_size=request.param, **kwargs)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.running():
            run.process.kill()
            run.process.wait()


def stored_count() -> int:
    connection.close_if_unusable_or_obsolete()
    return samples.stored_count()


def assert_stored_exactly_once(source: Source, *, timeout: float = 180) -> None:
    """Every sample of the source is stored once: the count and the sum of the values are the source's."""
    connection.close()  # a service restart may have broken this process's connection
    wait_until(lambda: stored_count() >= source.count, timeout=timeout, interval=0.5)
    # A (GPU, time) row is unique and holds one value per metric, so the count is of distinct samples.
    assert samples.stored_count() == source.count
    assert samples.stored_sum() == source.value_sum


def counter(name: str) -> int:
    row = IngestCounter.objects.filter(name=name).first()
    return row.value if row else 0


# --- Stopping services, always started again ---


def _run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def rabbitmq_start() -> None:
    _run("rabbitmqctl", "start_app")
    _run("rabbitmqctl", "await_startup")


@contextmanager
def rabbitmq_stopped() -> Iterator[None]:
    try:
        stopped = _run("rabbitmqctl", "stop_app")
        assert stopped.returncode == 0, stopped.stderr
        yield
    finally:
        rabbitmq_start()


def postgresql_running() -> bool:
    return _run("pg_ctlcluster", "--skip-systemctl-redirect", *PG_CLUSTER, "status").returncode == 0


def postgresql_start() -> None:
    if not postgresql_running():
        _run("pg_ctlcluster", "--skip-systemctl-redirect", *PG_CLUSTER, "start")
    wait_until(_postgresql_accepts, timeout=60, interval=0.5)


def _postgresql_accepts() -> bool:
    return _run("pg_isready", "-h", "127.0.0.1", "-p", "5432", timeout=10).returncode == 0


@contextmanager
def postgresql_stopped() -> Iterator[None]:
    connection.close()
    try:
        stopped = _run("pg_ctlcluster", "--skip-systemctl-redirect", *PG_CLUSTER, "stop", "-m", "fast")
        assert stopped.returncode == 0, stopped.stderr
        yield
    finally:
        postgresql_start()
        connection.close()


@pytest.fixture(autouse=True)
def services_restored() -> Iterator[None]:
    """Whatever a fault test does, RabbitMQ and PostgreSQL are up when it ends."""
    yield
    postgresql_start()
    rabbitmq_start()
    connection.close()
