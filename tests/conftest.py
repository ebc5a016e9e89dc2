"""Shared fixtures: the bundled sample, a real Celery worker process on RabbitMQ, and helpers."""
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CSV = REPO / "data" / "dcgm_metrics_20250718_134233.csv"
SAMPLE_COUNT = 2470
SAMPLE_GPUS = 247
SAMPLE_HOSTS = 31
SAMPLE_VALUE_SUM = 21064007.681


@pytest.fixture
def sample_csv() -> Path:
    return SAMPLE_CSV


def database_url() -> str:
    """The URL of the database the tests use (pytest-django's test_ copy), for subprocesses."""
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def subprocess_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=database_url(), PYTHONUNBUFFERED="1")
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        cwd=REPO, env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(autouse=True)
def _references_forgotten() -> None:
    """Each test starts with a worker that remembers no device, metric or label set: the tables
    it remembered them from are emptied between tests."""
    from telemetry.history import partitions
    from telemetry.ingest.collector.services import references

    references.clear()
    partitions.known.clear()


def purge_ingest_queues() -> None:
    from config.celery import app
    from telemetry.ingest.queues import dead_letter_queue, declare_ingest_queues, ingest_queue

    with app.connection_for_write() as connection:
        declare_ingest_queues(connection)
        for queue in (ingest_queue(), dead_letter_queue()):
            queue.bind(connection.default_channel).purge()


def wait_until(predicate: Callable[[], bool], *, timeout: float = 60, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60).stdout


def broker_connections_drop(pid: int) -> int:
    """Have RabbitMQ close process `pid`'s connections, as a broker restart would; returns how many."""
    sockets = subprocess.run(["ss", "-tnpH", "state", "established", "dport", "= :5672"],
                             check=True, capture_output=True, text=True).stdout
    ports = {line.split()[2].rsplit(":", 1)[1] for line in sockets.splitlines() if f"pid={pid}," in line}
    dropped = 0
    for line in rabbitmqctl("list_connections", "pid", "peer_port").splitlines()[1:]:
        connection, peer_port = line.split("\t")
        if peer_port in ports:
            rabbitmqctl("close_connection", connection, "test: broker connection dropped")
            dropped += 1
    return dropped


class WorkerProcess:
    """`celery -A config worker -Q <queue>` as a subprocess against the test database."""

    def __init__(self, *, concurrency: int = 2, max_per_gpu: int = 0, queue: str | None = None,
                 env: dict[str, str] | None = None, name: str = "test") -> None:
        self.concurrency = concurrency
        self.max_per_gpu = max_per_gpu
        self.queue = queue or settings.INGEST_QUEUE
        self.env = env or {}
        self.name = name
        self.process: subprocess.Popen | None = None
        self.log = REPO / "tests" / "artifacts" / f"{name}-worker-{os.getpid()}-{time.monotonic_ns()}.log"

    def start(self) -> "WorkerProcess":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = subprocess_env(COLLECTOR_MAX_ENTRIES_PER_GPU=str(self.max_per_gpu),
                             COLLECTOR_HEARTBEAT_FILE=str(self.log) + ".hb", **self.env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", self.queue,
             "--concurrency", str(self.concurrency), "--loglevel", "INFO", "--without-mingle", "--without-gossip",
             # A node name of its own: two workers named celery@host clash on their control queue.
             "-n", f"{self.name}-{os.getpid()}-{time.monotonic_ns()}@%h"],
            cwd=REPO, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )
        ready = wait_until(lambda: "ready." in self.log.read_text() or self.process.poll() is not None, timeout=90)
        if not ready or self.process.poll() is not None:
            raise RuntimeError(f"worker did not start:\n{self.log.read_text()[-3000:]}")
        return self

    def kill(self) -> None:
        """kill -9 the whole worker (main process and its pool children)."""
        if self.process and self.process.poll() is None:
            for pid in _children(self.process.pid):
                _signal(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text()


@contextmanager
def worker_pool(**defaults) -> Iterator[Callable[..., WorkerProcess]]:
    """A starter of WorkerProcesses with these defaults; every one started is stopped at the end."""
    started: list[WorkerProcess] = []

    def start(**kwargs) -> WorkerProcess:
        worker = WorkerProcess(**{**defaults, **kwargs}).start()
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


def _children(pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture
def worker_process(transactional_db) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real collector workers (stopped at the end); the ingest queues start empty."""
    purge_ingest_queues()
    with worker_pool() as start:
        yield start
