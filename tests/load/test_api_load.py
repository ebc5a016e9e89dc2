"""Load: 50 concurrent API clients for 60 seconds against gunicorn while the streamer and a collector ingest.

No request may fail; the latency percentiles are printed and written to tests/artifacts/load.json.
LOAD_SECONDS and LOAD_CLIENTS shorten or widen the run.
"""
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlencode

import pytest

from telemetry.models import Gpu
from tests.samples import stored_count
from tests.conftest import REPO, SAMPLE_CSV, subprocess_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = int(os.environ.get("LOAD_CLIENTS", "50"))
SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str, timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def api_server():
    port = free_port()
    log = REPO / "tests" / "artifacts" / f"gunicorn-{os.getpid()}-{time.monotonic_ns()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "3",
         "--worker-class", "gthread", "--threads", "4", "--backlog", "256", "--timeout", "60"],
        cwd=REPO, env=subprocess_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        try:
            return get(port, "/health", timeout=2)[0] == 200
        except OSError:
            return process.poll() is not None

    try:
        assert wait_until(up, timeout=60) and process.poll() is None, log.read_text()[-3000:]
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_fifty_clients_while_ingesting_get_no_error(api_server, worker_process, capsys):
    worker_process()
    streamer = subprocess.Popen(
        [sys.executable, "manage.py", "stream", str(SAMPLE_CSV), "--loop", "--timestamps", "now", "--rate", "2000",
         "--batch-size", "500", "--flush-interval", "0.5"],
        cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: Gpu.objects.count() >= 200 and stored_count() >= 2000, timeout=60)
        probe = Gpu.objects.first().device_id
        status, _ = get(api_server, f"/api/v1/gpus/{probe}/telemetry?limit=1")
        if status == 404:
            pytest.skip("/api/v1/gpus/{id}/telemetry answers 404: the API is not there yet")
        # Device ids, not UUIDs: a GPU's MIG instances share its UUID.
        device_ids = [gpu.device_id for gpu in Gpu.objects.only("uuid", "mig_instance")]
        stored_before = stored_count()

        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + SECONDS

        def client(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                device_id = rng.choice(device_ids)
                if rng.random() < 0.7:
                    path = f"/api/v1/gpus/{device_id}/telemetry?" + urlencode({"limit": 1000, "order": "desc"})
                else:
                    path = f"/api/v1/gpus/{device_id}/telemetry/summary?" + urlencode({"bucket": "1m", "agg": "avg,min,max,last"})
                began = time.perf_counter()
                try:
                    status, body = get(api_server, path)
                except OSError as exc:
                    status, body = None, repr(exc).encode()
                elapsed = time.perf_counter() - began
                with lock:
                    latencies.append(elapsed)
                    if status != 200:
                        errors.append(f"{status} {path}: {body[:200]!r}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stored_during = stored_count() - stored_before
    finally:
        streamer.terminate()
        streamer.wait(timeout=60)

    ordered = sorted(latencies)
    report = {
        "clients": CLIENTS, "seconds": SECONDS, "requests": len(ordered), "errors": len(errors),
        "requests_per_s": round(len(ordered) / SECONDS, 1),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1), "samples_stored_meanwhile": stored_during,
    }
    (REPO / "tests" / "artifacts" / "load.json").write_text(json.dumps(report, indent=2))
    with capsys.disabled():
        print(f"\nAPI load: {json.dumps(report)}")
    assert not errors, errors[:10]
    assert len(ordered) > CLIENTS
    assert stored_during > 0, "ingest made no progress during the load"
