"""`manage.py pipeline` (what `make run` starts) on the embedded default: SQLite and an in-process broker."""
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request

from tests.conftest import REPO, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(DEBUG="true", SQLITE_PATH=str(tmp_path / "telemetry.sqlite3"), PYTHONUNBUFFERED="1")
    return env


def stored(db_path) -> int:
    try:
        with sqlite3.connect(db_path) as db:
            # The embedded mode keeps a reading's values as a JSON array.
            return db.execute(
                "SELECT count(*) FROM telemetry_reading, json_each(telemetry_reading.\"values\") "
                "WHERE json_each.type != 'null'"
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_one_command_run_stores_samples_serves_and_stops_cleanly(tmp_path):
    env = embedded_env(tmp_path)
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    run = subprocess.Popen(
        [sys.executable, "manage.py", "pipeline", "--port", str(port), "--rate", "3000", "--batch-size", "1000"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        db_path = tmp_path / "telemetry.sqlite3"
        assert wait_until(lambda: stored(db_path) > 2000, timeout=60)
        assert wait_until(lambda: answers(f"http://127.0.0.1:{port}/admin/login/"), timeout=30)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    assert "pipeline stopped cleanly" in stdout
    streamed = int(stdout.split("pipeline stopped cleanly: streamed ")[1].split()[0])
    # Every batch the streamer produced was stored before the process exited (the default
    # per-GPU limit of 10000 is far above what a few seconds produce).
    assert stored(db_path) == streamed


def test_a_taken_port_is_a_one_line_error(tmp_path):
    env = embedded_env(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "manage.py", "pipeline", "--port", str(port)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in run.stderr and "Traceback" not in run.stderr
