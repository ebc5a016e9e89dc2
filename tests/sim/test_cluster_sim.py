"""`make cluster-sim` in CI: 10 streamers and 10 collectors store every sample exactly once."""
import subprocess
import sys

from tests.conftest import REPO


def test_cluster_rehearsal_stores_every_sample_exactly_once():
    run = subprocess.run([sys.executable, "scripts/cluster_sim.py"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "stored 2470 samples" in run.stdout
    assert "0 duplicates: equal to the reference, each exactly once" in run.stdout
    assert "nothing lost while scaling" in run.stdout
