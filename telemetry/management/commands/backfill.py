"""`manage.py backfill PATH...`: load CSV files keeping their timestamps, straight into storage."""
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import queue
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError, connections

from config.celery import app
from telemetry.ingest.batch import Batch, BatchBuilder, HeldReadings, encode_batch
from telemetry.ingest.file_ranges import LineRange, line_ranges, open_range
from telemetry.ingest.progress import Progress
from telemetry.ingest.publisher import BatchPublisher, PublishAborted
from telemetry.ingest.services import PersistResult, samples_persist
from telemetry.ingest.signals import graceful_shutdown
from telemetry.ingest.sources import RejectLog, SourceFormatError, csv_files, read_csv

_DONE = None
# How often the parent looks at its workers' progress and at the signals when no worker has news.
_POLL_S = 0.5
# Workers storing readings of the same GPUs lock their rows in orders that can cross; PostgreSQL then
# rolls one transaction back (deadlock detected), and storing that batch again is all it takes.
_LOCK_RACE_STATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
_STORE_ATTEMPTS = 5

logger = logging.getLogger(__name__)


@dataclass
class Totals:
    rows_read: int = 0  # samples handed on; rejected rows are counted apart
    stored: int = 0
    duplicates: int = 0
    queued: int = 0
    rejected: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class Loading:
    """How batches are made and stored: the command's options, as a worker needs them."""

    batch_size: int
    reorder_window: int
    max_per_gpu: int


class Command(BaseCommand):
    help = "Load DCGM or wide CSV files (or folders of them), keeping their timestamps. Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="CSV files or folders of CSV files")
        parser.add_argument("--batch-size", type=int, default=20000, help="samples per write (default 20000)")
        parser.add_argument("--reorder-window", type=int, default=settings.STREAM_REORDER_WINDOW,
                            help="samples held back so that one GPU's metrics of one time, listed far apart in a "
                                 "DCGM export, are stored as one row [STREAM_REORDER_WINDOW; default 100000]")
        parser.add_argument("--via-queue", action="store_true",
                            help="publish batches to the collectors through RabbitMQ instead of writing directly")
        parser.add_argument("--max-per-gpu", type=int, default=settings.COLLECTOR_MAX_ENTRIES_PER_GPU,
                            help="per-GPU limit applied while loading, 0 = none [COLLECTOR_MAX_ENTRIES_PER_GPU]")
        parser.add_argument("--workers", type=int, default=2,
                            help="processes that each parse and store a share of every file's lines (default 2; "
                                 "not with --via-queue, which parses in one)")

    def handle(self, *args, **options) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["reorder_window"] < 0:
            raise CommandError("--reorder-window must not be negative")
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        try:
            files = [f for path in options["paths"] for f in csv_files(Path(path))]
        except SourceFormatError as exc:
            raise CommandError(str(exc)) from None
        loading = Loading(options["batch_size"], options["reorder_window"], options["max_per_gpu"])
        with graceful_shutdown() as (stop, abort):
            if options["via_queue"]:
                totals = self._via_queue([line_ranges(f, 1)[0] for f in files], loading, stop, abort)
            else:
                totals = self._in_workers(files, options["workers"], loading, stop, abort)
        self._summary(totals, interrupted=stop.is_set(), via_queue=options["via_queue"])

    def _progress(self, ranges: Iterable[LineRange]) -> Progress:
        return Progress(total_bytes=sum(r.size for r in ranges), stream=self.stderr._out)

    def _via_queue(self, ranges: list[LineRange], loading: Loading, stop: threading.Event,
                   abort: threading.Event) -> Totals:
        """Parse here and publish from a thread of this process: publishing waits on the broker, not the CPU."""
        totals = Totals()
        publisher = BatchPublisher(app=app, abort=abort)

        def publish(batch: Batch) -> None:
            publisher.publish(encode_batch(batch), samples=len(batch))
            totals.queued += len(batch)

        batches: queue.Queue[Batch | None] = queue.Queue(maxsize=4)
        errors: list[BaseException] = []
        writer = threading.Thread(target=_drain, args=(batches, publish, errors), name="backfill-publisher")
        writer.start()
        progress = self._progress(ranges)
        parser = RangeParser(loading, send=batches.put)
        try:
            parser.parse(ranges, should_stop=lambda: stop.is_set() or bool(errors), on_progress=progress.update)
        except SourceFormatError as exc:
            raise CommandError(str(exc)) from None
        finally:
            batches.put(_DONE)
            writer.join()
        if errors:
            if isinstance(errors[0], PublishAborted):
                raise CommandError(str(errors[0]))
            raise errors[0]
        progress.update(done_bytes=parser.done_bytes, rows=parser.rows, force=True)
        totals.rows_read, totals.rejected = parser.rows_read, parser.rejects.count
        return totals

    def _in_workers(self, files: list[Path], workers: int, loading: Loading, stop: threading.Event,
                    abort: threading.Event) -> Totals:
        """Each worker parses its share of every file's lines and stores its own batches: parsing, a
        core's worth of Python per process, is what limits a backfill."""
        ranges_by_file = [line_ranges(f, workers) for f in files]
        shares = [[ranges[i] for ranges in ranges_by_file] for i in range(workers)]
        pool = WorkerPool(shares, loading)
        try:
            return pool.wait(stop=stop, abort=abort,
                             progress=self._progress(r for ranges in ranges_by_file for r in ranges))
        finally:
            pool.end()

    def _summary(self, totals: Totals, *, interrupted: bool, via_queue: bool) -> None:
        head = "backfill interrupted" if interrupted else "backfill done"
        rows = totals.rows_read + totals.rejected
        if via_queue:
            self.stdout.write(f"{head}: {rows} rows read, {totals.queued} samples queued, {totals.rejected} rejected")
        else:
            self.stdout.write(f"{head}: {rows} rows read, {totals.stored} stored, {totals.duplicates} duplicates, "
                              f"{totals.rejected} rejected")


def _drain(batches: "queue.Queue[Batch | None]", write: Callable[[Batch], None], errors: list[BaseException]) -> None:
    while (batch := batches.get()) is not _DONE:
        if not errors:
            try:
                write(batch)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)


class RangeParser:
    """Line ranges to batches through one HeldReadings, handed to `send` in order.

    Each batch carries the rows rejected since the one before, so that storing it adds them to the
    stored `rows_rejected` counter, as the streamer's batches do.
    """

    def __init__(self, loading: Loading, *, send: Callable[[Batch], None]) -> None:
        self.held = HeldReadings(loading.batch_size, loading.reorder_window, flush_interval=None)
        self.send = send
        self.rejects = RejectLog()
        self.rows_read = 0  # samples handed on
        self.done_bytes = 0  # of the ranges parsed to the end
        self._rejects_sent = 0

    @property
    def rows(self) -> int:
        """Rows read so far, rejected ones included."""
        return self.rows_read + self.rejects.count

    def parse(self, ranges: Iterable[LineRange], *, should_stop: Callable[[], bool],
              on_progress: Callable[..., None]) -> None:
        """Parse `ranges` until they end or `should_stop()` (asked once per batch), then hand on all held."""
        for line_range in ranges:
            if not self._parse_range(line_range, should_stop, on_progress):
                break
        for batch in self.held.drain():
            self._hand_on(batch)
        if self.rejects.count > self._rejects_sent:
            self._hand_on(BatchBuilder().build())

    def _parse_range(self, line_range: LineRange, should_stop: Callable[[], bool],
                     on_progress: Callable[..., None]) -> bool:
        """Parse one range; False if stopped before its end."""
        with open_range(line_range) as stream:
            samples = read_csv(stream, path=str(line_range.path), on_reject=self.rejects,
                               first_line=line_range.first_line)
            for batch in self.held.feed(samples):
                self._hand_on(batch)
                on_progress(done_bytes=self.done_bytes + stream.raw.range_read, rows=self.rows)
                if should_stop():
                    self.done_bytes += stream.raw.range_read
                    return False
        self.done_bytes += line_range.size
        return True

    def _hand_on(self, batch: Batch) -> None:
        batch.rejected = self.rejects.count - self._rejects_sent
        self._rejects_sent = self.rejects.count
        self.rows_read += len(batch)
        self.send(batch)


class WorkerPool:
    """Forked processes, each parsing its share of ranges and storing its batches with `samples_persist`.

    Workers ignore SIGINT and SIGTERM: the parent decides when to stop, and a worker told to stop
    stores every batch it holds before it reports. Each worker sends its log records (rejected rows
    among them) to the parent, which writes them through its own logging, then its totals or what
    went wrong; a worker that ends without a word has died.
    """

    def __init__(self, shares: list[list[LineRange]], loading: Loading) -> None:
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._progress = SharedProgress(context, len(shares))
        self._processes: list[multiprocessing.Process] = []
        self._pipes: dict[Connection, int] = {}
        connections.close_all()  # each child opens its own; a shared socket would mix their queries
        for index, share in enumerate(shares):
            reader, writer = context.Pipe(duplex=False)
            worker = Worker(index, len(shares), stop=self._stop, pipe=writer, progress=self._progress)
            process = context.Process(target=worker.run, args=(share, loading), name=worker.name, daemon=True)
            process.start()
            writer.close()  # the child's copy is the only one left: its end is this reader's EOF
            self._processes.append(process)
            self._pipes[reader] = index

    def wait(self, *, stop: threading.Event, abort: threading.Event, progress: Progress) -> Totals:
        """The workers' totals once all have reported; the first signal stops them, a second kills them."""
        totals = Totals()
        failures: list[str] = []
        while self._pipes:
            if abort.is_set():
                raise CommandError("backfill stopped by a second signal, without storing what its workers held; "
                                   "backfill again to load the rest (what is stored is not stored twice)")
            if stop.is_set() or failures:
                self._stop.set()
            for pipe in multiprocessing.connection.wait(list(self._pipes), timeout=_POLL_S):
                outcome = self._receive(pipe)
                if isinstance(outcome, Totals):
                    totals += outcome
                elif outcome is not None:
                    failures.append(outcome)
            self._progress.draw(progress)
        if failures:
            raise CommandError("; ".join(dict.fromkeys(failures)))  # a bad header is every worker's failure
        self._progress.draw(progress, force=True)
        return totals

    def _receive(self, pipe: Connection) -> Totals | str | None:
        """A worker's totals, what made it fail, or None for a log record (written here)."""
        index = self._pipes[pipe]
        try:
            kind, payload = pipe.recv()
        except EOFError:
            kind, payload = "failed", self._death(index)
        if kind == "log":
            logging.getLogger(payload.name).handle(payload)
            return None
        del self._pipes[pipe]
        pipe.close()
        return payload

    def _death(self, index: int) -> str:
        process = self._processes[index]
        process.join()
        code = process.exitcode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        return f"{process.name} {how} before reporting; what it read may be partly stored"

    def end(self) -> None:
        """Kill the workers that have not reported (after a second signal or an error here), reap them all."""
        for pipe, index in self._pipes.items():
            self._processes[index].kill()
            pipe.close()
        for process in self._processes:
            process.join()


class Worker:
    """One forked worker: parses its ranges, stores each batch on its own database connection."""

    def __init__(self, index: int, count: int, *, stop: multiprocessing.synchronize.Event, pipe: Connection,
                 progress: "SharedProgress") -> None:
        self.name = f"backfill worker {index + 1} of {count}"
        self._stop = stop
        self._pipe = pipe
        self._show = partial(progress.show, index)
        self._totals = Totals()

    def run(self, share: list[LineRange], loading: Loading) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _log_to_parent(self._pipe)
        try:
            parser = RangeParser(loading, send=lambda batch: self._store(batch, loading.max_per_gpu))
            parser.parse(share, should_stop=self._stop.is_set, on_progress=self._show)
            self._show(done_bytes=parser.done_bytes, rows=parser.rows)
            self._totals.rows_read, self._totals.rejected = parser.rows_read, parser.rejects.count
            self._pipe.send(("done", self._totals))
        except SourceFormatError as exc:
            self._pipe.send(("failed", str(exc)))
        except Exception as exc:  # the parent fails the backfill with it
            self._pipe.send(("failed", f"{self.name} failed: {type(exc).__name__}: {exc}"))
        finally:
            connections.close_all()
            self._pipe.close()

    def _store(self, batch: Batch, max_per_gpu: int) -> None:
        result = _persist_retrying_lock_races(batch, max_per_gpu, worker=self.name)
        self._totals.stored += result.stored
        self._totals.duplicates += result.duplicates


class SharedProgress:
    """Each worker's bytes and rows done, in memory shared with the parent, which draws their sums.

    A slot per worker, written by that worker only: no lock needed.
    """

    def __init__(self, context: multiprocessing.context.BaseContext, workers: int) -> None:
        self._bytes = context.RawArray("q", workers)
        self._rows = context.RawArray("q", workers)

    def show(self, worker: int, *, done_bytes: int, rows: int) -> None:
        self._bytes[worker] = done_bytes
        self._rows[worker] = rows

    def draw(self, progress: Progress, *, force: bool = False) -> None:
        progress.update(done_bytes=sum(self._bytes), rows=sum(self._rows), force=force)


def _persist_retrying_lock_races(batch: Batch, max_per_gpu: int, *, worker: str) -> PersistResult:
    """`samples_persist`, again when PostgreSQL rolled it back to break a deadlock with another worker.

    The batch's transaction left nothing behind, so storing it again counts every sample once.
    """
    for _ in range(_STORE_ATTEMPTS - 1):
        try:
            return samples_persist(batch=batch, max_per_gpu=max_per_gpu)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) not in _LOCK_RACE_STATES:
                raise
            logger.info("%s: batch of %d samples rolled back (%s), storing it again", worker, len(batch),
                        str(exc).splitlines()[0])
    return samples_persist(batch=batch, max_per_gpu=max_per_gpu)


class _PipeLogHandler(logging.handlers.QueueHandler):
    """A worker's log records, made picklable, sent down its pipe to the parent."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.send(("log", record))


def _log_to_parent(pipe: Connection) -> None:
    """Route this worker's logging to the parent: one writer for the console, and the handlers that
    tests and log shippers attach to the parent's root logger see the workers' records too."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_PipeLogHandler(pipe))
