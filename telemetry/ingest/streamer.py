"""The streamer: reads a source, batches samples, publishes each batch as a Celery task at a set rate.

Each worker is a thread with its own source iterator and broker connection; it keeps only its
share of the GPUs (crc32 of the UUID), nested inside this process's `--shard i/n`, so several
workers and several streamers never emit the same row. A held batch is sent before exit.
"""
import itertools
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from telemetry.ingest.batch import Batch, HeldReadings, Sample, encode_batch
from telemetry.ingest.nvml import read_nvml
from telemetry.ingest.sources import RejectHandler, RejectLog, read_path

logger = logging.getLogger(__name__)

TimestampMode = Literal["now", "source"]


@dataclass(frozen=True)
class StreamConfig:
    source: str
    workers: int = 1
    rate: float = 0.0
    batch_size: int = 5000
    reorder_window: int = 100_000
    flush_interval: float = 1.0
    loop: bool = False
    timestamps: TimestampMode = "source"
    only_host: str = ""
    shard: tuple[int, int] = (0, 1)
    nvml_interval: float = 1.0
    progress_interval: float = 10.0


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` → (I, N) with 0 <= I < N."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"shard {text!r} is not of the form I/N (for example 0/4)") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need 0 <= I < N")
    return index, count


class StreamStats:
    """Counters shared by the workers and the progress reporter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.samples = 0
        self.batches = 0
        self.rejected = 0
        self.started = time.monotonic()

    def add_batch(self, samples: int, rejected: int) -> None:
        with self._lock:
            self.samples += samples
            self.batches += 1
            self.rejected += rejected

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"streamed {self.samples} samples in {self.batches} batches "
            f"({self.samples / elapsed:.0f} samples/s), {self.rejected} rows rejected"
        )


def restamp_now(samples: Iterator[Sample]) -> Iterator[Sample]:
    """Replace source times by processing times; a tick's samples (one source time) share one time."""
    last_source = None
    now_us = 0
    for sample in samples:
        if sample.timestamp_us != last_source:
            last_source = sample.timestamp_us
            now_us = max(time.time_ns() // 1000, now_us + 1)
        yield sample._replace(timestamp_us=now_us)


def in_share(uuid: str, shard: tuple[int, int], worker: int, workers: int) -> bool:
    """Shard `shard` of the GPUs, then worker `worker`'s part of that shard."""
    digest = zlib.crc32(uuid.encode())
    index, count = shard
    return digest % count == index and (digest // count) % workers == worker


class Streamer:
    def __init__(
        self,
        config: StreamConfig,
        *,
        publisher_factory: Callable[[], "object"],
        stop: threading.Event,
        abort: threading.Event,
    ) -> None:
        self.config = config
        self.stats = StreamStats()
        self._publisher_factory = publisher_factory
        self._stop = stop
        self._abort = abort
        self._errors: list[BaseException] = []

    def run(self) -> StreamStats:
        """Stream until the source ends (or forever with --loop) or `stop` is set; then flush."""
        threads = [
            threading.Thread(target=self._worker_main, args=(w,), name=f"streamer-{w}", daemon=True)
            for w in range(self.config.workers)
        ]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=self.config.progress_interval / len(threads))
            if any(t.is_alive() for t in threads):
                logger.info(self.stats.line())
        if self._errors:
            raise self._errors[0]
        logger.info("done: %s", self.stats.line())
        return self.stats

    def _worker_main(self, worker: int) -> None:
        try:
            self._work(worker)
        except BaseException as exc:  # re-raised by run() in the main thread
            self._errors.append(exc)
            self._stop.set()

    def _source(self, worker: int, on_reject: RejectHandler) -> Iterator[Sample]:
        config = self.config
        if config.source == "nvml":
            samples = read_nvml(interval=config.nvml_interval, stop=self._stop)
        else:
            passes = itertools.count() if config.loop else range(1)
            samples = itertools.chain.from_iterable(
                read_path(Path(config.source), on_reject=on_reject) for _ in passes
            )
        if config.timestamps == "now" and config.source != "nvml":
            samples = restamp_now(samples)
        if config.only_host:
            samples = (sample for sample in samples if sample.gpu.hostname == config.only_host)
        if config.shard == (0, 1) and config.workers == 1:
            yield from samples
            return
        # A GPU's share is computed once, not a crc32 of its UUID per row.
        mine: dict[str, bool] = {}
        for sample in samples:
            uuid = sample.gpu.uuid
            owned = mine.get(uuid)
            if owned is None:
                owned = mine[uuid] = in_share(uuid, config.shard, worker, config.workers)
            if owned:
                yield sample

    def _work(self, worker: int) -> None:
        config = self.config
        # Every worker reads every row; only the first reports malformed ones, so each is counted once.
        rejects = RejectLog() if worker == 0 and config.shard[0] == 0 else _ignore_rejects
        publisher = self._publisher_factory()
        held = HeldReadings(config.batch_size, config.reorder_window, config.flush_interval)
        reported_rejects = 0

        def send(batch: Batch) -> None:
            nonlocal reported_rejects
            batch.rejected = getattr(rejects, "count", 0) - reported_rejects
            publisher.publish(encode_batch(batch), samples=len(batch))
            self.stats.add_batch(len(batch), batch.rejected)
            reported_rejects += batch.rejected

        samples = self._source(worker, rejects)
        if config.rate:
            samples = self._paced(samples, held)
        try:
            for batch in held.feed(samples):
                send(batch)
                if self._stop.is_set():
                    break
            for batch in held.drain():
                send(batch)
        finally:
            publisher.close()

    def _paced(self, samples: Iterator[Sample], held: HeldReadings) -> Iterator[Sample | None]:
        """`samples` at the configured rate, until stopped; None after each wait, so the hold sends
        what came of age meanwhile."""
        started = time.monotonic()
        for sent, sample in enumerate(samples, start=1):
            yield sample
            due = started + sent / self.config.rate
            while (now := time.monotonic()) < due:
                if self._stop.wait(max(min(due, held.next_check) - now, 0.001)):
                    return
                yield None
            if self._stop.is_set():
                return


def _ignore_rejects(path: str, line: int, reason: str) -> None:
    """Rejects seen by a worker other than the first: the first one logs and counts them."""
