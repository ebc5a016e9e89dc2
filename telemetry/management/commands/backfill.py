"""`manage.py backfill PATH...`: load CSV files keeping their timestamps, straight into storage."""
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError

from config.celery import app
from telemetry.ingest.columns import ColumnBatch
from telemetry.ingest.wire import Batch, encode_batch
from telemetry.ingest.streamer.batching import BatchBuilder, HeldReadings
from telemetry.ingest.streamer.dcgm_blocks import DcgmBlockReader, dcgm_header
from telemetry.ingest.streamer.file_ranges import LineRange, line_ranges, open_range, worker_shares
from telemetry.ingest.streamer.processes import WorkerPool, WorkersAborted, WorkersFailed, WorkerSlot
from telemetry.ingest.streamer.progress import Progress
from telemetry.ingest.streamer.publisher import BatchPublisher, PublishAborted
from telemetry.ingest.collector.services import PersistResult, samples_persist
from telemetry.ingest.streamer.shutdown import graceful_shutdown
from telemetry.ingest.streamer.sources import RejectLog, SourceFormatError, csv_files, read_csv

_DONE = None
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
    # The system checks import the URLconf, the API and the admin: a quarter of a second of every
    # backfill's start, for code it never runs (migrate and the API server still run them).
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="CSV files or folders of CSV files")
        parser.add_argument("--batch-size", type=int, default=50000, help="samples per write (default 50000)")
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

        def publish(batch: Batch | ColumnBatch) -> None:
            if isinstance(batch, ColumnBatch):
                batch = batch.batch()
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
            try:
                publisher.close()  # returns once the broker has confirmed every batch
            except PublishAborted as exc:
                errors.append(exc)
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
        shares = worker_shares(files, workers)
        progress = self._progress(r for share in shares for r in share)
        jobs = [partial(_load_share, share, loading) for share in shares]
        with WorkerPool("backfill", jobs, counters=("done_bytes", "rows"), plain_errors=(SourceFormatError,),
                        death_note="what it read may be partly stored") as pool:
            try:
                results = pool.wait(stop=stop, abort=abort, on_poll=lambda: progress.update(**pool.counters.sums()))
            except WorkersAborted:
                raise CommandError("backfill stopped by a second signal, without storing what its workers held; "
                                   "backfill again to load the rest (what is stored is not stored twice)") from None
            except WorkersFailed as exc:
                raise CommandError(str(exc)) from None
        progress.update(**pool.counters.sums(), force=True)
        return sum(results, Totals())

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
        self.blocks = DcgmBlockReader(batch_size=loading.batch_size, reorder_window=loading.reorder_window,
                                      on_reject=self.rejects)
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
        for batch in self.blocks.drain():
            self._hand_on(batch)
        for batch in self.held.drain():
            self._hand_on(batch)
        if self.rejects.count > self._rejects_sent:
            self._hand_on(BatchBuilder().build())

    def _parse_range(self, line_range: LineRange, should_stop: Callable[[], bool],
                     on_progress: Callable[..., None]) -> bool:
        """Parse one range; False if stopped before its end."""
        header = dcgm_header(line_range)
        if header is not None:
            return self._read_blocks(line_range, header, should_stop, on_progress)
        with open_range(line_range) as stream:
            samples = read_csv(stream, path=str(line_range.path), on_reject=self.rejects,
                               first_line=line_range.first_line)
            for burst in self.held.feed(samples):
                for batch in burst:
                    self._hand_on(batch)
                on_progress(done_bytes=self.done_bytes + stream.raw.range_read, rows=self.rows)
                if should_stop():
                    self.done_bytes += stream.raw.range_read
                    return False
        self.done_bytes += line_range.size
        return True

    def _read_blocks(self, line_range: LineRange, header: list[str], should_stop: Callable[[], bool],
                     on_progress: Callable[..., None]) -> bool:
        """A DCGM range through pyarrow, a block of lines at a time (see `dcgm_blocks`)."""
        read = 0

        def block_read(done: int) -> None:
            nonlocal read
            read = done

        for batch in self.blocks.batches(line_range, header, on_block=block_read):
            self._hand_on(batch)
            on_progress(done_bytes=self.done_bytes + read, rows=self.rows)
            if should_stop():
                self.done_bytes += read
                return False
        self.done_bytes += line_range.size
        return True

    def _hand_on(self, batch: Batch) -> None:
        batch.rejected = self.rejects.count - self._rejects_sent
        self._rejects_sent = self.rejects.count
        self.rows_read += len(batch)
        self.send(batch)


def _load_share(share: list[LineRange], loading: Loading, slot: WorkerSlot) -> Totals:
    """A worker's job: parse its ranges, store each batch on its own database connection."""
    totals = Totals()

    def store(batch: Batch) -> None:
        result = _persist_retrying_lock_races(batch, loading.max_per_gpu, worker=slot.name)
        totals.stored += result.stored
        totals.duplicates += result.duplicates

    parser = RangeParser(loading, send=store)
    parser.parse(share, should_stop=slot.stop.is_set, on_progress=slot.report)
    slot.report(done_bytes=parser.done_bytes, rows=parser.rows)
    totals.rows_read, totals.rejected = parser.rows_read, parser.rejects.count
    return totals


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
