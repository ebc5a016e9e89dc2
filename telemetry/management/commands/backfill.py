"""`manage.py backfill PATH...`: load CSV files keeping their timestamps, straight into storage."""
import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, connections

from config.celery import app
from telemetry.ingest.batch import Batch, BatchBuilder, HeldReadings, decode_batch, encode_batch
from telemetry.ingest.progress import Progress
from telemetry.ingest.publisher import BatchPublisher, PublishAborted
from telemetry.ingest.services import PersistResult, samples_persist
from telemetry.ingest.signals import graceful_shutdown
from telemetry.ingest.sources import RejectLog, SourceFormatError, csv_files, read_csv

_DONE = None


@dataclass
class Totals:
    rows_read: int = 0
    stored: int = 0
    duplicates: int = 0
    queued: int = 0


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

    def handle(self, *args, **options) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["reorder_window"] < 0:
            raise CommandError("--reorder-window must not be negative")
        try:
            files = [f for path in options["paths"] for f in csv_files(Path(path))]
        except SourceFormatError as exc:
            raise CommandError(str(exc)) from None
        rejects = RejectLog()
        totals = Totals()
        store = None if options["via_queue"] else StoreProcess(options["max_per_gpu"])
        with graceful_shutdown() as (stop, abort):
            # Parsing (this thread) and writing (the writer thread, and for direct writes the
            # store process it hands batches to) overlap on two cores.
            batches: queue.Queue[Batch | None] = queue.Queue(maxsize=4)
            write = self._queue_writer(abort, totals) if store is None else self._direct_writer(store, totals)
            errors: list[BaseException] = []
            writer = threading.Thread(target=_drain, args=(batches, write, errors), name="backfill-writer")
            writer.start()
            try:
                held = HeldReadings(options["batch_size"], options["reorder_window"], flush_interval=None)
                self._parse(files, held, batches, rejects, totals, stop, errors)
            except SourceFormatError as exc:
                raise CommandError(str(exc)) from None
            finally:
                batches.put(_DONE)
                writer.join()
                if store is not None:
                    store.close()
        if errors:
            if isinstance(errors[0], PublishAborted):
                raise CommandError(str(errors[0]))
            raise errors[0]
        self._summary(totals, rejects, interrupted=stop.is_set(), via_queue=options["via_queue"])

    def _parse(self, files, held, batches, rejects, totals, stop, errors) -> None:
        progress = Progress(total_bytes=sum(f.stat().st_size for f in files), stream=self.stderr._out)
        done_bytes = 0
        reported_rejects = 0

        def hand_over(batch: Batch) -> None:
            nonlocal reported_rejects
            batch.rejected = rejects.count - reported_rejects
            reported_rejects = rejects.count
            totals.rows_read += len(batch)
            batches.put(batch)

        for file_path in files:
            with open(file_path, "rb") as stream:
                for sample in read_csv(stream, path=str(file_path), on_reject=rejects):
                    if not held.add(sample):
                        continue
                    for batch in held.ready():
                        hand_over(batch)
                    progress.update(done_bytes=done_bytes + stream.tell(), rows=totals.rows_read + rejects.count)
                    if stop.is_set() or errors:
                        break
                done_bytes += file_path.stat().st_size
            if stop.is_set() or errors:
                break
        for batch in held.drain():
            hand_over(batch)
        if rejects.count > reported_rejects:
            hand_over(BatchBuilder().build())
        progress.update(done_bytes=done_bytes, rows=totals.rows_read + rejects.count, force=True)

    @staticmethod
    def _direct_writer(store: "StoreProcess", totals: Totals) -> Callable[[Batch], None]:
        def write(batch: Batch) -> None:
            result = store.persist(batch)
            totals.stored += result.stored
            totals.duplicates += result.duplicates

        return write

    @staticmethod
    def _queue_writer(abort: threading.Event, totals: Totals) -> Callable[[Batch], None]:
        publisher = BatchPublisher(app=app, abort=abort)

        def write(batch: Batch) -> None:
            publisher.publish(encode_batch(batch), samples=len(batch))
            totals.queued += len(batch)

        return write

    def _summary(self, totals: Totals, rejects: RejectLog, *, interrupted: bool, via_queue: bool) -> None:
        head = "backfill interrupted" if interrupted else "backfill done"
        rows = totals.rows_read + rejects.count
        if via_queue:
            self.stdout.write(f"{head}: {rows} rows read, {totals.queued} samples queued, {rejects.count} rejected")
        else:
            self.stdout.write(
                f"{head}: {rows} rows read, {totals.stored} stored, {totals.duplicates} duplicates, {rejects.count} rejected"
            )


def _drain(batches: "queue.Queue[Batch | None]", write: Callable[[Batch], None], errors: list[BaseException]) -> None:
    try:
        while (batch := batches.get()) is not _DONE:
            if not errors:
                try:
                    write(batch)
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)
    finally:
        connection.close()


class StoreProcess:
    """`samples_persist` in a child process, one batch at a time.

    Parsing and writing in two threads of one process shared one core's worth of Python (the
    GIL); with the writing in a process of its own each has a core. The child ignores SIGINT and
    SIGTERM: this process decides when to stop, and the child stores every batch handed to it,
    then exits when the pipe closes (also when this process dies).
    """

    def __init__(self, max_per_gpu: int) -> None:
        context = multiprocessing.get_context("fork")
        connections.close_all()  # the child opens its own; a shared socket would mix their queries
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(
            target=_store_batches, args=(child_end, self._pipe, max_per_gpu), name="backfill-store", daemon=True
        )
        self._process.start()
        child_end.close()

    def persist(self, batch: Batch) -> PersistResult:
        self._pipe.send_bytes(encode_batch(batch))
        try:
            outcome = self._pipe.recv()
        except EOFError:
            raise CommandError("the backfill store process ended unexpectedly") from None
        if isinstance(outcome, str):
            raise CommandError(f"storing a batch failed: {outcome}")
        return outcome

    def close(self) -> None:
        self._pipe.close()
        self._process.join()


def _store_batches(pipe, parent_end, max_per_gpu: int) -> None:
    parent_end.close()  # the fork's copy: left open, the parent's close would never reach this end
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        while True:
            try:
                payload = pipe.recv_bytes()
            except EOFError:
                return
            try:
                pipe.send(samples_persist(batch=decode_batch(payload), max_per_gpu=max_per_gpu))
            except Exception as exc:  # reported by the parent, which stops the backfill
                pipe.send(f"{type(exc).__name__}: {exc}")
                return
    finally:
        connections.close_all()
