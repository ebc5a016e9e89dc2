"""The collector's liveness probe: a recent heartbeat passes, a stale or missing one fails."""
import os
import time

from telemetry.ingest.collector.heartbeat import main
from tests.conftest import wait_until


def test_recent_heartbeat_passes_and_stale_fails(tmp_path):
    beat = tmp_path / "hb"
    assert main(["--file", str(beat)]) == 1
    beat.touch()
    assert main(["--file", str(beat), "--max-age", "60"]) == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    assert main(["--file", str(beat), "--max-age", "60"]) == 1


def test_a_running_worker_keeps_its_heartbeat_fresh(worker_process):
    worker = worker_process(concurrency=1)
    beat = str(worker.log) + ".hb"
    assert wait_until(lambda: main(["--file", beat, "--max-age", "15"]) == 0, timeout=20)
    time.sleep(12)  # longer than one heartbeat interval: the loop keeps touching it
    assert main(["--file", beat, "--max-age", "11"]) == 0
