"""A rehearsal of the cluster on one machine: the chart's pod commands as local processes.

Runs, against the local RabbitMQ and a PostgreSQL database of its own (`telemetry_sim`):
1. one streamer and one collector (the reference result);
2. 10 streamers sharing the CSV through `--shard i/10` and 10 collector workers, and checks
   that the stored samples equal the reference, each exactly once;
3. one collector, scaled to 4 in the middle of a rate-limited stream, and checks nothing is lost.
Exit status 0 when every check holds. Usage: python scripts/cluster_sim.py [--streamers 10] [--collectors 10]
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "dcgm_metrics_20250718_134233.csv"
ADMIN_URL = os.environ.get("SIM_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SIM_DB = os.environ.get("SIM_DATABASE", "telemetry_sim")
SIM_URL = ADMIN_URL.rsplit("/", 1)[0] + "/" + SIM_DB
LOGS = REPO / "var" / "cluster-sim"


def sim_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL=SIM_URL.replace("postgresql://", "postgres://"),
        CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        CELERY_INGEST_QUEUE="telemetry.ingest.sim",
        COLLECTOR_MAX_ENTRIES_PER_GPU="0",
        SECRET_KEY="cluster-sim-only",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def say(text: str) -> None:
    print(f"[cluster-sim] {text}", flush=True)


def prepare_database() -> None:
    # A fresh database each run, so the schema is always the current migrations'.
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{SIM_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{SIM_DB}"')
    manage = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=sim_env())
    if manage.returncode:
        raise SystemExit("migrate failed")
    subprocess.run([sys.executable, "-m", "celery", "-A", "config", "purge", "-f", "-Q", "telemetry.ingest.sim"],
                   cwd=REPO, env=sim_env(), capture_output=True, check=True)


def reset() -> None:
    with psycopg.connect(SIM_URL, autocommit=True) as db:
        db.execute("TRUNCATE telemetry_reading, telemetry_gpu, telemetry_ingestcounter")


def stored() -> set[tuple]:
    with psycopg.connect(SIM_URL) as db:
        return set(db.execute(
            "SELECT g.uuid, m.name, r.timestamp, u.value FROM telemetry_reading r "
            "CROSS JOIN LATERAL unnest(r.values) WITH ORDINALITY AS u(value, metric_id) "
            "JOIN telemetry_gpu g ON g.id = r.gpu_id JOIN telemetry_metric m ON m.id = u.metric_id "
            "WHERE u.value IS NOT NULL"
        ).fetchall())


def counters() -> dict[str, int]:
    with psycopg.connect(SIM_URL) as db:
        return dict(db.execute("SELECT name, value FROM telemetry_ingestcounter").fetchall())


# Every collector started, so that a failed check still stops them all (see main).
STARTED: list[subprocess.Popen] = []


def start_collector(name: str) -> subprocess.Popen:
    """The chart's collector container: `celery -A config worker -Q <queue> --concurrency 1`."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "telemetry.ingest.sim", "--concurrency", "1",
         "--loglevel", "INFO", "-n", f"{name}@%h", "--without-mingle", "--without-gossip"],
        cwd=REPO, env=sim_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    process.log = log
    STARTED.append(process)
    return process


def wait_ready(workers: list[subprocess.Popen], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all("ready." in w.log.read_text() for w in workers):
            return
        if any(w.poll() is not None for w in workers):
            raise SystemExit("a collector exited at start; see " + str(LOGS))
        time.sleep(0.5)
    raise SystemExit("collectors not ready in time; see " + str(LOGS))


def start_streamer(*args: str) -> subprocess.Popen:
    """The chart's streamer container: `manage.py stream` with its share of the CSV."""
    return subprocess.Popen([sys.executable, "manage.py", "stream", str(SAMPLE), "--timestamps", "source", *args],
                            cwd=REPO, env=sim_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(streamers: list[subprocess.Popen]) -> None:
    for streamer in streamers:
        _, err = streamer.communicate(timeout=300)
        if streamer.returncode:
            raise SystemExit(f"a streamer failed: {err[-2000:]}")


def wait_stored(expected: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = counters()
        if seen.get("samples_stored", 0) + seen.get("samples_duplicate", 0) >= expected:
            return
        time.sleep(0.5)
    raise SystemExit(f"only {counters()} of {expected} samples arrived in {timeout:.0f}s")


def stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()


def run(streamers: int, collectors: int) -> int:
    prepare_database()
    failures = 0

    say("reference: 1 streamer, 1 collector")
    reset()
    workers = [start_collector("reference")]
    wait_ready(workers)
    finish([start_streamer("--batch-size", "500")])
    wait_stored(2470)
    stop(workers)
    reference = stored()
    say(f"reference stored {len(reference)} samples")

    say(f"{streamers} streamers (--shard i/{streamers}) and {collectors} collectors")
    reset()
    workers = [start_collector(f"collector-{i}") for i in range(collectors)]
    wait_ready(workers)
    started = time.monotonic()
    finish([start_streamer("--shard", f"{i}/{streamers}", "--batch-size", "100") for i in range(streamers)])
    wait_stored(len(reference))
    stop(workers)
    result, seen = stored(), counters()
    same = result == reference and seen.get("samples_duplicate", 0) == 0 and seen.get("samples_stored") == len(reference)
    say(f"stored {len(result)} samples in {time.monotonic() - started:.1f}s, {seen.get('samples_duplicate', 0)} duplicates: "
        + ("equal to the reference, each exactly once" if same else "DIFFERENT from the reference"))
    failures += not same

    say("scaling collectors from 1 to 4 in the middle of a stream")
    reset()
    workers = [start_collector("scale-0")]
    wait_ready(workers)
    streamer = start_streamer("--rate", "150", "--batch-size", "100", "--flush-interval", "0.5")
    time.sleep(2)
    more = [start_collector(f"scale-{i}") for i in range(1, 4)]
    wait_ready(more)
    workers += more
    at_scale = counters().get("samples_stored", 0)
    say(f"scaled to {len(workers)} collectors after {at_scale} of {len(reference)} samples were stored")
    if at_scale >= len(reference):
        say("the stream ended before the scale-up: this check proved nothing")
        failures += 1
    finish([streamer])
    wait_stored(len(reference))
    stop(workers)
    same = stored() == reference
    say("nothing lost while scaling" if same else "samples LOST or changed while scaling")
    failures += not same
    say("all checks passed" if not failures else f"{failures} check(s) failed")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streamers", type=int, default=10)
    parser.add_argument("--collectors", type=int, default=10)
    args = parser.parse_args()
    try:
        return run(args.streamers, args.collectors)
    finally:
        stop(STARTED)


if __name__ == "__main__":
    sys.exit(main())
