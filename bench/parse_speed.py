"""How fast `read_csv` turns a DCGM exporter CSV into samples, on one core.

    python -m bench.parse_speed                 # 1,000 hosts × 2 ticks = 160,000 rows, best of 3
    python -m bench.parse_speed --hosts 100 --ticks 5 --runs 5

Writes the file with `bench.fleet.Fleet` into a temporary folder, reads it back `--runs` times
and prints the best rate in rows per second. Times are this process's CPU time, so other work on a
shared machine counts less than on a wall clock. Every run also checks the sample count and the sum
of the values against what the fleet wrote, so a faster reader that loses or garbles rows fails
here instead of looking good. Next to it, for scale, the rate of Python's bare `csv.reader` over
the same file (parsing only, no samples).
"""
import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

from bench.fleet import Fleet
from telemetry.ingest.streamer.sources import read_csv


def read_once(path: Path) -> tuple[float, int, float]:
    """(seconds, samples, value sum) of one full read of the file."""
    rejects: list[tuple[str, int, str]] = []
    count = 0
    total = 0.0
    started = time.process_time()
    with open(path, "rb") as stream:
        for sample in read_csv(stream, path=str(path), on_reject=lambda *args: rejects.append(args)):
            count += 1
            total += sample.value
    elapsed = time.process_time() - started
    if rejects:
        raise SystemExit(f"{path}: {len(rejects)} rows rejected, first {rejects[0]}")
    return elapsed, count, total


def csv_reader_once(path: Path) -> float:
    """Seconds for the bare csv.reader to split every row: the floor of any reader built on it."""
    started = time.process_time()
    with open(path, encoding="utf-8", newline="") as text:
        for _ in csv.reader(text):
            pass
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="timed reads; the best one counts")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parse-speed-") as folder:
        path = Path(folder) / "fleet.csv"
        rows, value_sum = Fleet(hosts=args.hosts).write_dcgm_csv(path, ticks=args.ticks)
        best = float("inf")
        for _ in range(args.runs):
            elapsed, count, total = read_once(path)
            if (count, total) != (rows, value_sum):
                raise SystemExit(f"read {count} samples summing to {total}, the file has {rows} summing to {value_sum}")
            best = min(best, elapsed)
        bare = min(csv_reader_once(path) for _ in range(args.runs))
    print(f"read_csv:   {rows / best:>10,.0f} rows/s  ({rows:,} rows, best of {args.runs}: {best:.3f} s)")
    print(f"csv.reader: {rows / bare:>10,.0f} rows/s  (parsing only, for scale)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
