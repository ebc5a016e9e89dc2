"""docker/entrypoint.sh run here as the image runs it: roles that need no database or broker."""
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.chart.examples import ROOT

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env}
    return subprocess.run([str(ENTRYPOINT), *args], capture_output=True, text=True, env=full_env, timeout=60, cwd="/")


@pytest.fixture(scope="module")
def health_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            status = 200 if self.path == "/health" else 503
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}' if status == 200 else b"down")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_unknown_role_fails_with_usage():
    result = run("bogus")
    assert result.returncode == 64
    assert "unknown role 'bogus'" in result.stderr and "wait-for-migrations" in result.stderr
    assert run().returncode == 64


def test_healthcheck_role(health_server):
    assert run("healthcheck", f"{health_server}/health").returncode == 0
    failed = run("healthcheck", "--retries", "1", f"{health_server}/ready")
    assert failed.returncode == 1 and "503" in failed.stderr


def test_migrate_gives_up_when_the_database_never_answers():
    result = run("migrate", DATABASE_URL="postgres://nobody@127.0.0.1:1/none", DB_WAIT_TIMEOUT="2")
    assert result.returncode == 1
    assert "database not reachable after 2s" in result.stderr
