"""A progress line for long commands: redrawn in place on a terminal, a log line otherwise."""
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, *, total_bytes: int, stream: TextIO | None = None, every_s: float = 5.0) -> None:
        self.total_bytes = max(total_bytes, 1)
        self.stream = stream or sys.stderr
        self.every_s = every_s if not self.stream.isatty() else 0.2
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, *, done_bytes: int, rows: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        share = min(done_bytes / self.total_bytes, 1.0)
        rate = rows / max(now - self.started, 1e-9)
        bar = "#" * int(share * 30)
        text = f"[{bar:<30}] {share:6.1%} {rows} rows {rate:,.0f} rows/s"
        if self.stream.isatty():
            self.stream.write("\r" + text + ("\n" if force else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
