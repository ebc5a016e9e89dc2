"""The benches' shared helpers."""
import subprocess
import sys

import pytest

from bench.harness import abba, run_command


def test_pairs_run_in_abba_order_so_drift_favours_neither():
    assert abba("A", "B", 3) == ["A", "B", "B", "A", "A", "B"]
    assert abba("A", "B", 0) == []


def test_a_command_run_past_its_time_is_killed_with_what_it_forked(tmp_path):
    alive = tmp_path / "child-alive"
    # The child outlives its parent's exit on its own, as a forked worker would.
    script = f"import os, time\nif os.fork() == 0:\n    time.sleep(2)\n    open({str(alive)!r}, 'w').close()\nelse:\n    time.sleep(60)"
    with pytest.raises(subprocess.TimeoutExpired):
        run_command([sys.executable, "-c", script], timeout=0.5)
    done = run_command([sys.executable, "-c", "import time; time.sleep(2.5); print('waited')"], timeout=10,
                       capture_output=True, text=True)
    assert done.stdout == "waited\n" and done.returncode == 0
    assert not alive.exists()
