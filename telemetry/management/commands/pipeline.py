"""`manage.py pipeline`: streamer, collector worker and web server in one process (what `make run` starts).

Without DATABASE_URL it first starts the embedded PostgreSQL (telemetry/embedded/postgres.py, data in
EMBEDDED_POSTGRES_DIR) and stops it last, after the worker has stored every queued batch. It applies
pending migrations itself, on either database, and runs history maintenance (`compress`) every
HISTORY_INTERVAL while it runs.
"""
import logging
import threading

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, OperationalError, connection, connections
from django.utils import timezone

from config.celery import app
from telemetry.embedded.postgres import EmbeddedPostgres, EmbeddedPostgresError
from telemetry.embedded.threads import EmbeddedWebServer, EmbeddedWorker
from telemetry.history.maintenance import history_maintain
from telemetry.ingest.streamer.publisher import BatchPublisher
from telemetry.ingest.streamer.shutdown import graceful_shutdown
from telemetry.ingest.streamer.sources import SourceFormatError
from telemetry.ingest.streamer.stream import StreamConfig, Streamer

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the whole pipeline locally: replay a CSV in a loop, store it, serve the API on one port."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", nargs="?", default=settings.STREAM_SOURCE, help="CSV file or folder [STREAM_SOURCE]")
        parser.add_argument("--host", default="127.0.0.1", help="web server address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="web server port (default 8000)")
        parser.add_argument("--rate", type=float, default=settings.STREAM_RATE or 2000.0,
                            help="samples per second, 0 = as fast as possible [STREAM_RATE; default 2000]")
        parser.add_argument("--batch-size", type=int, default=settings.STREAM_BATCH_SIZE, help="[STREAM_BATCH_SIZE]")
        parser.add_argument("--no-loop", action="store_true", help="stream the source once instead of forever")

    def handle(self, *args, **options) -> None:
        loop = not options["no_loop"]
        config = StreamConfig(
            source=options["source"],
            rate=options["rate"],
            batch_size=options["batch_size"],
            flush_interval=settings.STREAM_FLUSH_INTERVAL,
            loop=loop,
            timestamps="now" if loop else "source",
            progress_interval=settings.STREAM_PROGRESS_INTERVAL,
        )
        try:
            web = EmbeddedWebServer(options["host"], options["port"])
        except OSError as exc:  # the port is taken, or the address is not this machine's
            raise CommandError(f"cannot serve on {options['host']}:{options['port']}: {exc.strerror or exc}") from None
        # From here on the first SIGINT/SIGTERM asks for a clean stop, even while the database starts.
        with graceful_shutdown() as (stop, abort):
            database = None
            try:
                if not settings.DATABASE_URL:
                    database = self._start_database()
                self._migrate(options["verbosity"])
                if stop.is_set():
                    self.stdout.write("stopped before the pipeline started")
                    return
                self._run(config, web, options, stop, abort)
            finally:
                web.stop()
                if database is not None:
                    connections.close_all()
                    try:
                        database.stop()
                    except EmbeddedPostgresError as exc:
                        raise CommandError(str(exc)) from None
                    self.stdout.write("PostgreSQL stopped")

    def _start_database(self) -> EmbeddedPostgres:
        database = EmbeddedPostgres(settings.EMBEDDED_POSTGRES_DIR)
        try:
            database.start()
        except EmbeddedPostgresError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"PostgreSQL {database.version()} running on {database.uri()} (data in {database.data_dir})")
        self.stdout.flush()
        return database

    def _migrate(self, verbosity: int) -> None:
        try:
            call_command("migrate", interactive=False, verbosity=verbosity, stdout=self.stdout)
        except OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"cannot migrate the database: {first}") from None

    def _run(self, config: StreamConfig, web: EmbeddedWebServer, options: dict, stop, abort) -> None:
        worker = EmbeddedWorker(app)
        worker.start()
        web.start()
        self.stdout.write(f"pipeline running: http://{options['host']}:{options['port']}/api/v1/gpus (Ctrl-C stops)")
        self.stdout.flush()
        streamer = Streamer(config, publisher_factory=lambda: BatchPublisher(app=app, abort=abort), stop=stop, abort=abort)
        errors: list[BaseException] = []
        thread = threading.Thread(target=_run_streamer, args=(streamer, errors), name="streamer")
        thread.start()
        history_stop = threading.Event()
        history = threading.Thread(target=_run_history, args=(history_stop,), name="history", daemon=True)
        history.start()
        while thread.is_alive():
            thread.join(timeout=0.5)
        history_stop.set()
        history.join()
        self.stdout.write("streamer stopped; storing the batches still queued")
        drained = worker.drain_and_stop()
        web.stop()
        if errors:
            raise CommandError(str(errors[0])) if isinstance(errors[0], SourceFormatError) else errors[0]
        if not drained:
            raise CommandError("stopped with batches still queued: they were not stored")
        self.stdout.write(f"pipeline stopped cleanly: {streamer.stats.line()}")


def _run_history(stop: threading.Event) -> None:
    """`compress` every HISTORY_INTERVAL while the pipeline runs (partitions ahead, packing, retention)."""
    try:
        while not stop.wait(settings.HISTORY_INTERVAL_SECONDS):
            try:
                history_maintain(now=timezone.now(), stopping=stop.is_set)
            except DatabaseError as exc:  # the next round tries again
                logger.warning("history maintenance failed: %s", exc)
    finally:
        connection.close()


def _run_streamer(streamer: Streamer, errors: list[BaseException]) -> None:
    try:
        streamer.run()
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)
