"""Collector liveness: the worker's event loop touches a file; the probe checks how old it is.

A timer on the consumer's own loop stops firing when that loop is stuck, which is the failure a
liveness probe should catch. Probe: `python -m telemetry.ingest.collector.heartbeat --max-age 60`.
"""
import argparse
import os
import sys
import time
from pathlib import Path

from celery import bootsteps

INTERVAL_S = 10.0


def touch(path: str) -> None:
    Path(path).touch()


class HeartbeatStep(bootsteps.StartStopStep):
    """Consumer bootstep: touch COLLECTOR_HEARTBEAT_FILE every INTERVAL_S seconds."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timer_ref = None

    def start(self, parent) -> None:
        from django.conf import settings

        touch(settings.COLLECTOR_HEARTBEAT_FILE)
        self.timer_ref = parent.timer.call_repeatedly(INTERVAL_S, touch, (settings.COLLECTOR_HEARTBEAT_FILE,))

    def stop(self, parent) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Exit 0 if the collector's heartbeat is recent.")
    parser.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--file", default=os.environ.get("COLLECTOR_HEARTBEAT_FILE", "/tmp/collector-heartbeat"))
    args = parser.parse_args(argv)
    try:
        age = time.time() - os.stat(args.file).st_mtime
    except FileNotFoundError:
        print(f"no heartbeat file {args.file}", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"heartbeat {args.file} is {age:.0f}s old (max {args.max_age:.0f}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
