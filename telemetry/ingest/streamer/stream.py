"""The streamer: reads a source, batches samples, publishes each batch as a Celery task at a set rate.

Parsing is a core's worth of Python per row, so with `workers` > 1 a CSV source is read by that
many forked processes (see `processes`): each file is cut into as many ranges of whole lines, and
each worker streams its range of every file, in file order, through its own reorder window and its
own publisher (the publisher factory is called in the worker). `shard` keeps a share of the GPUs
(crc32 of the UUID) in every worker, so several streamers never emit the same row. NVML is one
machine's GPUs, polled; dcgm-exporter URLs (`urls`, `url_files`) are scraped every `interval` by a
thread pool (see `exporter`): either is streamed by one worker in this process whatever `workers`
says, and for URLs `shard` keeps a share of the URLs instead of the GPUs. Every worker sends what it
holds before it ends.
"""
import itertools
import logging
import multiprocessing.synchronize
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

from telemetry.ingest.wire import Batch, Sample, encode_batch

from telemetry.ingest.streamer.batching import BatchBuilder, HeldReadings
from telemetry.ingest.streamer.exporter import DEFAULT_METRICS, ScrapeStats, Targets, scrape
from telemetry.ingest.streamer.file_ranges import LineRange, worker_shares
from telemetry.ingest.streamer.nvml import read_nvml
from telemetry.ingest.streamer.processes import WorkerPool, WorkerSlot
from telemetry.ingest.streamer.sources import (
    RejectHandler, RejectLog, SourceFormatError, csv_files, read_line_ranges, read_path,
)

logger = logging.getLogger(__name__)

TimestampMode = Literal["now", "source"]
# Small batches due at once are published together up to this many samples (see HeldReadings).
BURST_SAMPLES = 4000
# What tells a worker to stop: the command's Event in this process, the pool's in a worker process.
StopEvent = threading.Event | multiprocessing.synchronize.Event


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
    interval: float = 15.0  # seconds between NVML polls, or between scrapes of the URLs
    progress_interval: float = 10.0
    # dcgm-exporter's /metrics: URLs, and files listing URLs (re-read when they change); either
    # makes the streamer scrape them instead of reading `source`.
    urls: tuple[str, ...] = ()
    url_files: tuple[str, ...] = ()
    metrics: str = DEFAULT_METRICS  # the families kept, a regular expression matching the whole name
    scrape_timeout: float = 5.0
    scrape_concurrency: int = 16

    @property
    def scrapes(self) -> bool:
        """Whether the source is dcgm-exporter URLs."""
        return bool(self.urls or self.url_files)


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


class Publisher(Protocol):
    """Where a worker sends its batches: a BatchPublisher, or a test's recorder."""

    def publish(self, payload: bytes, *, samples: int) -> None: ...

    def burst(self) -> AbstractContextManager[None]:
        """Batches published inside leave together, when it ends."""

    def close(self) -> None:
        """Sends what is still held; called once, when the worker ends."""


class Tally(Protocol):
    """Where a worker counts what it publishes: StreamStats in this process, _WorkerTally in a worker process."""

    def add_batch(self, samples: int, rejected: int) -> None:
        """Called after each publish."""


class StreamStats:
    """What was streamed: one worker's counts, or the sums of the worker processes' counts."""

    def __init__(self) -> None:
        self.samples = 0
        self.batches = 0
        self.rejected = 0
        self.scrapes: ScrapeStats | None = None  # when the source is dcgm-exporter URLs
        self.started = time.monotonic()

    def add_batch(self, samples: int, rejected: int) -> None:
        self.samples += samples
        self.batches += 1
        self.rejected += rejected

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        line = (
            f"streamed {self.samples} samples in {self.batches} batches "
            f"({self.samples / elapsed:.0f} samples/s), {self.rejected} rows rejected"
        )
        return line if self.scrapes is None else f"{line}; {self.scrapes.line()}"


_COUNTERS = ("samples", "batches", "rejected")


class _WorkerTally:
    """A worker process's counts, shown to the parent through its counter slot."""

    def __init__(self, slot: WorkerSlot) -> None:
        self._slot = slot
        self._counts = StreamStats()

    def add_batch(self, samples: int, rejected: int) -> None:
        counts = self._counts
        counts.add_batch(samples, rejected)
        self._slot.report(samples=counts.samples, batches=counts.batches, rejected=counts.rejected)


def restamp_now(samples: Iterator[Sample]) -> Iterator[Sample]:
    """Replace source times by processing times; a tick's samples (one source time) share one time."""
    last_source = None
    now_us = 0
    for sample in samples:
        if sample.timestamp_us != last_source:
            last_source = sample.timestamp_us
            now_us = max(time.time_ns() // 1000, now_us + 1)
        yield sample._replace(timestamp_us=now_us)


def in_share(uuid: str, shard: tuple[int, int]) -> bool:
    """Whether a GPU is in shard `shard` (index, count) of the GPUs."""
    index, count = shard
    return zlib.crc32(uuid.encode()) % count == index


def _in_shard(samples: Iterator[Sample], shard: tuple[int, int]) -> Iterator[Sample]:
    # A GPU's share is computed once, not a crc32 of its UUID per row.
    mine: dict[str, bool] = {}
    for sample in samples:
        uuid = sample.gpu.uuid
        owned = mine.get(uuid)
        if owned is None:
            owned = mine[uuid] = in_share(uuid, shard)
        if owned:
            yield sample


# Reads a CSV source once from the start, reporting malformed rows to the handler.
ReadOnce = Callable[[RejectHandler], Iterator[Sample]]


class Streamer:
    def __init__(
        self,
        config: StreamConfig,
        *,
        publisher_factory: Callable[[], Publisher],
        stop: threading.Event,
        abort: threading.Event,
    ) -> None:
        """`publisher_factory` makes a worker's publisher, in the worker: in a forked worker process when
        `config.workers` > 1 (what it records there stays there; `run()`'s stats sum the workers' counts)."""
        self.config = config
        self.stats = StreamStats()
        self._publisher_factory = publisher_factory
        self._stop = stop
        self._abort = abort

    def run(self) -> StreamStats:
        """Stream until the source ends (or forever with --loop) or `stop` is set; then flush.

        Raises WorkersFailed if a worker process fails and WorkersAborted if `abort` is set while
        worker processes run."""
        config = self.config
        if config.scrapes:
            self.stats.scrapes = ScrapeStats()
            ignored = [name for name, given in (("--workers", config.workers > 1), ("--rate", config.rate),
                                                ("--loop", config.loop), ("--timestamps now", config.timestamps == "now"))
                       if given]
            if ignored:
                logger.info("%s do(es) not apply to dcgm-exporter URLs: one worker scrapes them, each page at its "
                            "scrape's time", ", ".join(ignored))
            self._run_here()
        elif config.source == "nvml" or config.workers == 1:
            if config.workers > 1:
                logger.info("--workers %d does not apply to nvml: one worker polls this machine's GPUs",
                            config.workers)
            self._run_here()
        else:
            self._run_workers(worker_shares(csv_files(Path(self.config.source)), self.config.workers))
        logger.info("done: %s", self.stats.line())
        return self.stats

    def _run_here(self) -> None:
        """One worker, in a thread of this process, while this thread writes the progress lines."""
        errors: list[BaseException] = []
        config = self.config

        def work() -> None:
            try:
                self._stream(lambda on_reject: read_path(Path(config.source), on_reject=on_reject),
                             loop=config.loop, stop=self._stop, tally=self.stats)
            except BaseException as exc:  # re-raised below, in the main thread
                errors.append(exc)

        thread = threading.Thread(target=work, name="streamer", daemon=True)
        thread.start()
        thread.join(config.progress_interval)
        while thread.is_alive():
            logger.info(self.stats.line())
            thread.join(config.progress_interval)
        if errors:
            raise errors[0]

    def _run_workers(self, shares: list[list[LineRange]]) -> None:
        """A forked worker process per share; this process sums their counts and writes the progress lines."""
        jobs = [partial(self._stream_share, share) for share in shares]
        next_line = time.monotonic() + self.config.progress_interval

        def on_poll() -> None:
            nonlocal next_line
            self._take_counts(pool)
            if time.monotonic() >= next_line:
                logger.info(self.stats.line())
                next_line = time.monotonic() + self.config.progress_interval

        with WorkerPool("stream", jobs, counters=_COUNTERS, plain_errors=(SourceFormatError,),
                        death_note="what it held was not sent") as pool:
            pool.wait(stop=self._stop, abort=self._abort, on_poll=on_poll)
        self._take_counts(pool)

    def _take_counts(self, pool: WorkerPool) -> None:
        sums = pool.counters.sums()
        self.stats.samples, self.stats.batches, self.stats.rejected = (sums[name] for name in _COUNTERS)

    def _stream_share(self, share: list[LineRange], slot: WorkerSlot) -> None:
        """A worker process's job: stream its range of every file."""
        # A share of no lines (a file shorter than the workers) would loop without ever yielding a row.
        loop = self.config.loop and any(line_range.size for line_range in share)
        self._stream(lambda on_reject: read_line_ranges(share, on_reject=on_reject), loop=loop, stop=slot.stop,
                     tally=_WorkerTally(slot))

    def _stream(self, read_once: ReadOnce, *, loop: bool, stop: StopEvent, tally: Tally) -> None:
        """One worker: its samples through its own hold and publisher until they end or `stop`, then what it holds."""
        config = self.config
        # Each row is read by one worker of a streamer; of several streamers sharing a source by
        # --shard, only shard 0's report malformed rows, so that each is counted once. A URL is
        # scraped by one streamer of them: each reports its own.
        rejects = RejectLog() if config.shard[0] == 0 or config.scrapes else None
        publisher = self._publisher_factory()
        held = HeldReadings(config.batch_size, config.reorder_window, config.flush_interval,
                            burst_samples=BURST_SAMPLES)
        reported_rejects = 0

        def send(batches: Iterable[Batch]) -> None:
            nonlocal reported_rejects
            with publisher.burst():
                for batch in batches:
                    batch.rejected = (rejects.count if rejects is not None else 0) - reported_rejects
                    publisher.publish(encode_batch(batch), samples=len(batch))
                    tally.add_batch(len(batch), batch.rejected)
                    reported_rejects += batch.rejected

        samples = self._source(read_once, _ignore_rejects if rejects is None else rejects, loop=loop, stop=stop)
        if config.rate and not config.scrapes:
            samples = self._paced(samples, held, stop)
        try:
            for burst in held.feed(samples):
                send(burst)
                if stop.is_set():
                    break
            send(held.drain())
            if rejects is not None and rejects.count > reported_rejects:  # rows rejected after the last sample
                send([BatchBuilder().build()])
        finally:
            publisher.close()

    def _source(self, read_once: ReadOnce, on_reject: RejectHandler, *, loop: bool,
                stop: StopEvent) -> Iterator[Sample]:
        """NVML's polls, or `read_once` once or (`loop`) forever; restamped and filtered as configured."""
        config = self.config
        if config.scrapes:
            targets = Targets(config.urls, config.url_files, shard=config.shard)
            samples = scrape(targets, interval=config.interval, timeout=config.scrape_timeout, metrics=config.metrics,
                             stop=stop, on_reject=on_reject, stats=self.stats.scrapes,
                             tick=max(config.flush_interval, 0.05), concurrency=config.scrape_concurrency)
        elif config.source == "nvml":
            samples = read_nvml(interval=config.interval, stop=stop)
        else:
            passes = itertools.count() if loop else range(1)
            samples = itertools.chain.from_iterable(read_once(on_reject) for _ in passes)
            if config.timestamps == "now":
                samples = restamp_now(samples)
        if config.only_host:
            samples = (sample for sample in samples if sample.gpu.hostname == config.only_host)
        if config.shard != (0, 1) and not config.scrapes:  # URLs are sharded by Targets
            samples = _in_shard(samples, config.shard)
        return samples

    def _paced(self, samples: Iterator[Sample], held: HeldReadings, stop: StopEvent) -> Iterator[Sample | None]:
        """`samples` at the configured rate, until stopped; None after each wait, so the hold sends
        what came of age meanwhile."""
        started = time.monotonic()
        for sent, sample in enumerate(samples, start=1):
            yield sample
            due = started + sent / self.config.rate
            while (now := time.monotonic()) < due:
                if stop.wait(max(min(due, held.next_check) - now, 0.001)):
                    return
                yield None
            if stop.is_set():
                return


def _ignore_rejects(path: str, line: int, reason: str) -> None:
    """Rejects seen by a streamer of a shard other than 0: shard 0's streamer logs and counts them."""
