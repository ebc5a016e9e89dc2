"""The benches' shared helpers."""
from bench.harness import abba


def test_pairs_run_in_abba_order_so_drift_favours_neither():
    assert abba("A", "B", 3) == ["A", "B", "B", "A", "A", "B"]
    assert abba("A", "B", 0) == []
