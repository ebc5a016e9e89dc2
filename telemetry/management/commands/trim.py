"""`manage.py trim`: apply the per-GPU limit, and optionally drop samples older than an age."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from config.env import parse_age
from telemetry.history.maintenance import raw_delete_older_than
from telemetry.ingest.collector.services import samples_trim


class Command(BaseCommand):
    help = "Keep each GPU's newest N samples (COLLECTOR_MAX_ENTRIES_PER_GPU) and drop samples older than --older-than."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-per-gpu", type=int, default=settings.COLLECTOR_MAX_ENTRIES_PER_GPU,
                            help="samples kept per GPU, 0 = no limit [COLLECTOR_MAX_ENTRIES_PER_GPU; default 10000]")
        parser.add_argument("--older-than", help="also delete samples older than this age, e.g. 7d, 12h, 30m")

    def handle(self, *args, **options) -> None:
        if options["max_per_gpu"] < 0:
            raise CommandError("--max-per-gpu must not be negative")
        if options["older_than"]:
            try:
                age = parse_age(options["older_than"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            cutoff = timezone.now() - age
            deleted = raw_delete_older_than(cutoff)
            self.stdout.write(f"deleted {deleted} samples older than {cutoff.isoformat()}")
        if options["max_per_gpu"]:
            trimmed = samples_trim(max_per_gpu=options["max_per_gpu"])
            self.stdout.write(f"trimmed {trimmed} samples beyond {options['max_per_gpu']} per GPU")
