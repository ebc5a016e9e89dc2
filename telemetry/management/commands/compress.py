"""`manage.py compress`: pack readings older than COMPRESS_AFTER per device and hour, with their
rollups, create the coming days' partitions and drop each history tier past its retention."""
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from telemetry.history.maintenance import history_maintain
from telemetry.history.packing import PackResult
from telemetry.ingest.streamer.shutdown import graceful_shutdown


class Command(BaseCommand):
    help = ("Pack readings older than COMPRESS_AFTER into compressed device-hours with minute and hour rollups, "
            "and drop what is past HISTORY_RAW_RETENTION, HISTORY_MINUTE_RETENTION and HISTORY_HOUR_RETENTION.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--every", type=float, metavar="SECONDS",
                            help="run again every SECONDS until stopped [default: once]")

    def handle(self, *args, **options) -> None:
        if options["every"] is not None and options["every"] <= 0:
            raise CommandError("--every must be a number of seconds above 0")
        with graceful_shutdown() as (stop, _):
            while not stop.is_set():
                self.run_once(stop.is_set)
                if not options["every"]:
                    break
                stop.wait(options["every"])

    def run_once(self, stopping) -> None:
        started = time.monotonic()

        def progress(packed: PackResult) -> None:
            self.stdout.write(f"packed {packed.devices} devices: {packed.hours} hours, {packed.samples} samples "
                              f"({time.monotonic() - started:.1f} s)")

        result = history_maintain(now=timezone.now(), progress=progress, stopping=stopping)
        for table, names in result.dropped.items():
            if names:
                self.stdout.write(f"dropped {len(names)} partitions of {table}: {', '.join(names)}")
        self.stdout.write(f"done in {time.monotonic() - started:.1f} s" + (" (stopped)" if stopping() else ""))
