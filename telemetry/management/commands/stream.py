"""`manage.py stream`: the streamer (a DaemonSet in Kubernetes, or one central streamer scraping many nodes)."""
import re
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.celery import app
from telemetry.ingest.streamer.exporter import check_url, is_url, is_url_list, read_url_list
from telemetry.ingest.streamer.nvml import NvmlUnavailable
from telemetry.ingest.streamer.processes import WorkersAborted, WorkersFailed
from telemetry.ingest.streamer.publisher import BatchPublisher, PublishAborted
from telemetry.ingest.streamer.shutdown import graceful_shutdown
from telemetry.ingest.streamer.sources import SourceFormatError
from telemetry.ingest.streamer.stream import StreamConfig, Streamer, parse_shard


class Command(BaseCommand):
    help = ("Stream samples from a CSV file, a folder of CSVs, live GPUs (nvml) or dcgm-exporter's /metrics "
            "(one or more URLs, or files listing them) to the collectors.")
    # The system checks import the URLconf, and with it the API, the admin and their libraries: memory
    # that a streamer (a DaemonSet pod on every node) would hold for code it never runs.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", nargs="*",
                            help="CSV file, folder of CSV files, 'nvml', or dcgm-exporter URLs (http:// or https://, "
                                 "e.g. http://node-1:9400/metrics) and files listing URLs, one a line, # for comments "
                                 "[STREAM_SOURCE, URLs separated by spaces; default: the bundled sample]")
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
        parser.add_argument("--interval", "--nvml-interval", dest="interval", type=float,
                            default=settings.STREAM_INTERVAL,
                            help="seconds between scrapes of the URLs, or between NVML polls "
                                 "[STREAM_INTERVAL, or else STREAM_NVML_INTERVAL; default 15]")
        parser.add_argument("--metrics", default=settings.STREAM_METRICS,
                            help="families scraped from URLs, a regular expression matching the whole name "
                                 r"[STREAM_METRICS; default DCGM_FI_.*|DCGM_EXP_.*]")
        parser.add_argument("--scrape-timeout", type=float, default=settings.STREAM_SCRAPE_TIMEOUT,
                            help="seconds one scrape may take, connecting to the last byte [STREAM_SCRAPE_TIMEOUT; "
                                 "default 5]")
        parser.add_argument("--scrape-concurrency", type=int, default=settings.STREAM_SCRAPE_CONCURRENCY,
                            help="URLs scraped at once [STREAM_SCRAPE_CONCURRENCY; default 16]")
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
    if options["interval"] <= 0 or options["progress_interval"] <= 0 or options["scrape_timeout"] <= 0:
        raise CommandError("--interval, --scrape-timeout and --progress-interval must be positive")
    if options["scrape_concurrency"] < 1:
        raise CommandError("--scrape-concurrency must be at least 1")
    try:
        shard = parse_shard(options["shard"])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    source, urls, url_files = _sources(options["source"])
    if urls or url_files:
        try:
            re.compile(options["metrics"])
        except re.error as exc:
            raise CommandError(f"--metrics {options['metrics']!r} is not a regular expression: {exc}") from None
    return StreamConfig(
        source=source,
        workers=options["workers"],
        rate=options["rate"],
        batch_size=options["batch_size"],
        reorder_window=options["reorder_window"],
        flush_interval=options["flush_interval"],
        loop=options["loop"],
        timestamps=options["timestamps"] or ("now" if options["loop"] else "source"),
        only_host=options["only_host"],
        shard=shard,
        interval=options["interval"],
        progress_interval=options["progress_interval"],
        urls=urls,
        url_files=url_files,
        metrics=options["metrics"],
        scrape_timeout=options["scrape_timeout"],
        scrape_concurrency=options["scrape_concurrency"],
    )


def _sources(given: list[str]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(source, URLs, URL list files) from the command line, or else STREAM_SOURCE.

    One source is a CSV file or folder, 'nvml', a URL, or a file listing URLs (its first line that is
    not blank or a comment is a URL). Several are URLs and URL lists only.
    """
    if not given:
        configured = settings.STREAM_SOURCE.split()
        given = configured if configured and all(is_url(item) for item in configured) else [settings.STREAM_SOURCE]
    urls, url_files, others = [], [], []
    for item in given:
        if is_url(item):
            try:
                urls.append(check_url(item))
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        elif Path(item).is_file() and is_url_list(Path(item)):
            try:
                read_url_list(Path(item))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                raise CommandError(f"URL list: {exc}") from None
            url_files.append(item)
        else:
            others.append(item)
    if others and (urls or url_files or len(others) > 1):
        raise CommandError(f"several sources are for dcgm-exporter URLs and URL lists only; {others[0]!r} is neither")
    if others:
        return others[0], (), ()
    return (urls or url_files)[0], tuple(urls), tuple(url_files)
