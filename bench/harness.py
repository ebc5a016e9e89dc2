"""What the benchmarks run on: a throwaway database, real collector workers, CPU accounting, the machine."""
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def database_url(name: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


def configure_django(db_name: str, queue: str) -> None:
    """Point this process (and the subprocesses it starts) at the bench database and queue, then set Django up."""
    os.environ.update(
        DATABASE_URL=database_url(db_name),
        CELERY_INGEST_QUEUE=queue,
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY=os.environ.get("SECRET_KEY") or "bench-only-not-a-secret",
        DEBUG="false",
        ALLOWED_HOSTS="localhost,127.0.0.1,testserver",
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        PYTHONUNBUFFERED="1",
    )
    os.environ.setdefault("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    queues_version_2(queue)


def queues_version_2(queue: str) -> None:
    """Store this bench's queues (the ingest queue and its dead letters, named after it) in classic
    queue version 2, as the chart's broker stores new queues (classic_queue.default_version = 2):
    a policy on their names, since this machine's broker keeps its own default."""
    policy = ["rabbitmqctl", "-q", "set_policy", "--apply-to", "queues", _policy_name(queue), f"^{re.escape(queue)}",
              '{"queue-version": 2}']
    try:
        subprocess.run(policy, check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"note: the bench's queues keep this broker's classic queue version ({exc})", flush=True)


def _policy_name(queue: str) -> str:
    return f"bench-{queue}"


def database_recreate(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables_truncate() -> None:
    from django.db import connection

    from telemetry.ingest.collector.services import references

    references.clear()  # this process's remembered ids name rows about to go
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE telemetry_reading, telemetry_readinghour, telemetry_rollupminute, telemetry_rolluphour, telemetry_gpu, "
            "telemetry_metric, telemetry_labelset, telemetry_ingestcounter RESTART IDENTITY"
        )


def table_bytes(cursor, table: str) -> dict:
    """On-disk bytes of a table, summed over its partitions when it has any: total, heap, indexes,
    and each index (a partitioned index's partitions summed under its name)."""
    cursor.execute(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint, coalesce(sum(pg_relation_size(relid)), 0)::bigint, "
        "coalesce(sum(pg_indexes_size(relid)), 0)::bigint FROM ("
        " SELECT relid FROM pg_partition_tree(%(t)s) WHERE isleaf"
        " UNION SELECT %(t)s::regclass WHERE NOT EXISTS (SELECT FROM pg_partition_tree(%(t)s))) AS leaves", {"t": table})
    total, heap, indexes = cursor.fetchone()
    cursor.execute(
        "SELECT x.indexrelid::regclass::text, coalesce(sum(pg_relation_size(i.relid)), 0)::bigint "
        "FROM pg_index AS x JOIN LATERAL (SELECT relid FROM pg_partition_tree(x.indexrelid) WHERE isleaf "
        " UNION SELECT x.indexrelid WHERE NOT EXISTS (SELECT FROM pg_partition_tree(x.indexrelid))) AS i ON true "
        "WHERE x.indrelid = %s::regclass GROUP BY 1", [table])
    return {"total": total, "heap": heap, "indexes": indexes, "per_index": dict(cursor.fetchall())}


def tables_vacuum() -> None:
    """VACUUM ANALYZE the telemetry tables: what autovacuum does some time after a load, done now."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE telemetry_reading, telemetry_gpu, telemetry_metric, telemetry_labelset")


_settle_refused: list[str] = []


def database_settle() -> None:
    """CHECKPOINT: write out what earlier phases left dirty, so that the checkpoint their writes
    would trigger (every 1 GB of WAL or 5 minutes) does not land inside the next timed phase.

    It needs a superuser or the pg_checkpoint role; without either the phases run unsettled, said once."""
    from django.db import ProgrammingError, connection

    if _settle_refused:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except ProgrammingError as exc:
        _settle_refused.append(str(exc))
        print(f"  note: timed phases run without a CHECKPOINT before them ({str(exc).strip()})", flush=True)


def counter(name: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM telemetry_ingestcounter WHERE name = %s", [name])
        row = cursor.fetchone()
    return row[0] if row else 0


def queues_purge() -> None:
    from config.celery import app
    from telemetry.ingest.queues import dead_letter_queue, declare_ingest_queues, ingest_queue

    with app.connection_for_write() as connection:
        declare_ingest_queues(connection)
        for queue in (ingest_queue(), dead_letter_queue()):
            queue.bind(connection.default_channel).purge()


def queues_delete() -> None:
    """Delete this bench's queues, and the policy `configure_django` set on their names."""
    from django.conf import settings

    from config.celery import app
    from telemetry.ingest.queues import dead_letter_queue, ingest_queue

    with app.connection_for_write() as connection:
        for queue in (ingest_queue(), dead_letter_queue()):
            try:
                queue.bind(connection.default_channel).delete()
            except Exception:  # already gone
                pass
    try:
        subprocess.run(["rabbitmqctl", "-q", "clear_policy", _policy_name(settings.INGEST_QUEUE)], capture_output=True,
                       timeout=60)
    except (OSError, subprocess.SubprocessError):  # no rabbitmqctl here: no policy was set either
        pass


def run_command(command: list[str], *, timeout: float, capture_output: bool = False,
                **options) -> subprocess.CompletedProcess:
    """`subprocess.run` in a process group of its own: on a timeout or an interrupt, the processes
    the command forked (the streamer's and backfill's workers) are killed with it, instead of
    running on beside the next measurement."""
    if capture_output:
        options.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with subprocess.Popen(command, start_new_session=True, **options) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


class Worker:
    """`celery -A config worker` on the bench queue: `concurrency` pool processes (two fill two cores)."""

    def __init__(self, log_dir: Path, *, concurrency: int = 2, max_per_gpu: int = 0) -> None:
        self.concurrency = concurrency
        self.max_per_gpu = max_per_gpu
        self.log = log_dir / f"worker-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Worker":
        from django.conf import settings

        env = dict(os.environ, COLLECTOR_MAX_ENTRIES_PER_GPU=str(self.max_per_gpu),
                   COLLECTOR_HEARTBEAT_FILE=str(self.log) + ".hb", LOG_LEVEL="WARNING")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", settings.INGEST_QUEUE,
             "--concurrency", str(self.concurrency), "--loglevel", "INFO", "--without-mingle", "--without-gossip",
             "-n", f"bench-{os.getpid()}-{time.monotonic_ns()}@%h"],  # never clash with another worker's pidbox
            cwd=REPO, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while "ready." not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def pids(self) -> set[int]:
        return {self.process.pid, *_descendants(self.process.pid)} if self.process else set()

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for pid in _descendants(self.process.pid):
                    _kill(pid)
                self.process.kill()
                self.process.wait()


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    result = [int(p) for p in out]
    for child in list(result):
        result.extend(_descendants(child))
    return result


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(groups: dict[str, set[int]]) -> dict[str, float]:
    """CPU seconds used so far by named groups of processes, plus every postgres and RabbitMQ process."""
    used: dict[str, float] = defaultdict(float)
    owner = {pid: name for name, pids in groups.items() for pid in pids}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS
        # A backend that exits mid-run leaves its CPU time in the postmaster's children's time.
        children = (int(fields[13]) + int(fields[14])) / _TICKS
        pid = int(entry.name)
        if pid in owner:  # with the children it has reaped (the streamer's worker processes)
            used[owner[pid]] += seconds + children
        elif comm == "postgres":
            used["postgresql"] += seconds + children
        elif comm.startswith("beam"):
            used["rabbitmq"] += seconds
    return dict(used)


def cpu_share(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    """Each group's share of the machine's CPU over `wall` seconds (1.0 = every core busy)."""
    cores = os.cpu_count() or 1
    return {name: round((after.get(name, 0) - before.get(name, 0)) / wall / cores, 3) for name in after}


def abba(first, second, pairs: int) -> list:
    """`pairs` pairs of two measurements run back to back, every other pair reversed (A B B A A B …),
    so that drift within a run favours neither."""
    return [item for pair in range(pairs) for item in ((first, second) if pair % 2 == 0 else (second, first))]


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kb = 0
    try:
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    return {
        "host": platform.node(),
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(memory_kb / 2**20, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "note": "shared machine: figures drift run to run; compare ratios measured in the same run",
    }
