"""`manage.py stream`: the streamer (a DaemonSet in Kubernetes)."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.celery import app
from telemetry.ingest.streamer.nvml import NvmlUnavailable
from telemetry.ingest.streamer.processes import WorkersAborted, WorkersFailed
from telemetry.ingest.streamer.publisher import BatchPublisher, PublishAborted
from telemetry.ingest.streamer.shutdown import graceful_shutdown
from telemetry.ingest.streamer.sources import SourceFormatError
from telemetry.ingest.streamer.stream import StreamConfig, Streamer, parse_shard


class Command(BaseCommand):
    help = "Stream samples from a CSV file, a folder of CSVs or live GPUs (nvml) to the collectors."
    # The system checks import the URLconf, and with it the API, the admin and their libraries: memory
    # that a streamer (a DaemonSet pod on every node) would hold for code it never runs.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", nargs="?", default=settings.STREAM_SOURCE,
                            help="CSV file, folder of CSV files, or 'nvml' [STREAM_SOURCE; default: the bundled sample]")
        parser.add_argument("--workers", type=int, default=settings.STREAM_WORKERS,
                            help="worker processes, each streaming its share of every CSV file's lines (not for nvml) "
                                 "[STREAM_WORKERS; default 1]")
        parser.add_argument("--rate", type=float, default=settings.STREAM_RATE,
                            help="samples per second per worker, 0 = as fast as possible [STREAM_RATE; default 0]")
        parser.add_argument("--batch-size", type=int, default=settings.STREAM_BATCH_SIZE,
                            help="samples per batch; one batch is one Celery task [STREAM_BATCH_SIZE; default 5000]")
        parser.add_argument("--reorder-window", type=int, default=settings.STREAM_REORDER_WINDOW,
                            help="samples held back so that one GPU's metrics of one time, which a DCGM export lists "
                                 "far apart, reach storage as one row [STREAM_REORDER_WINDOW; default 100000]")
        parser.add_argument("--flush-interval", type=float, default=settings.STREAM_FLUSH_INTERVAL,
                            help="send a partial batch after this many seconds [STREAM_FLUSH_INTERVAL; default 1]")
        parser.add_argument("--loop", action="store_true", default=settings.STREAM_LOOP,
                            help="replay the source forever [STREAM_LOOP]")
        parser.add_argument("--timestamps", choices=["now", "source"], default=settings.STREAM_TIMESTAMPS or None,
                            help="'now': processing time, 'source': the file's times "
                                 "[STREAM_TIMESTAMPS; default now with --loop, else source]")
        parser.add_argument("--only-host", default=settings.STREAM_ONLY_HOST,
                            help="stream only rows of this host name, e.g. the node's name [STREAM_ONLY_HOST]")
        parser.add_argument("--shard", default=settings.STREAM_SHARD or "0/1",
                            help="stream only GPU shard I of N, as I/N [STREAM_SHARD; default 0/1]")
        parser.add_argument("--nvml-interval", type=float, default=settings.STREAM_NVML_INTERVAL,
                            help="seconds between NVML polls [STREAM_NVML_INTERVAL; default 1]")
        parser.add_argument("--progress-interval", type=float, default=settings.STREAM_PROGRESS_INTERVAL,
                            help="seconds between progress lines [STREAM_PROGRESS_INTERVAL; default 10]")

    def handle(self, *args, **options) -> None:
        config = _config_from_options(options)
        with graceful_shutdown() as (stop, abort):
            streamer = Streamer(
                config,
                publisher_factory=lambda: BatchPublisher(app=app, abort=abort),
                stop=stop,
                abort=abort,
            )
            try:
                stats = streamer.run()
            except (SourceFormatError, NvmlUnavailable, PublishAborted, WorkersFailed, WorkersAborted) as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(stats.line())


def _config_from_options(options: dict) -> StreamConfig:
    for name in ("workers", "batch_size"):
        if options[name] < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("rate", "flush_interval", "reorder_window"):
        if options[name] < 0:
            raise CommandError(f"--{name.replace('_', '-')} must not be negative")
    if options["nvml_interval"] <= 0 or options["progress_interval"] <= 0:
        raise CommandError("--nvml-interval and --progress-interval must be positive")
    try:
        shard = parse_shard(options["shard"])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return StreamConfig(
        source=options["source"],
        workers=options["workers"],
        rate=options["rate"],
        batch_size=options["batch_size"],
        reorder_window=options["reorder_window"],
        flush_interval=options["flush_interval"],
        loop=options["loop"],
        timestamps=options["timestamps"] or ("now" if options["loop"] else "source"),
        only_host=options["only_host"],
        shard=shard,
        nvml_interval=options["nvml_interval"],
        progress_interval=options["progress_interval"],
    )
