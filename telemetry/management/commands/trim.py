"""`manage.py trim`: apply the per-GPU limit, and optionally drop samples older than an age."""
import re
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from telemetry.ingest.collector.services import samples_delete_older_than, samples_trim

_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `90s`, `2w` → timedelta."""
    match = _AGE.match(text.strip())
    if not match:
        raise ValueError(f"age {text!r} is not a number followed by s, m, h, d or w (for example 7d)")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


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
            deleted = samples_delete_older_than(cutoff=cutoff)
            self.stdout.write(f"deleted {deleted} samples older than {cutoff.isoformat()}")
        if options["max_per_gpu"]:
            trimmed = samples_trim(max_per_gpu=options["max_per_gpu"])
            self.stdout.write(f"trimmed {trimmed} samples beyond {options['max_per_gpu']} per GPU")
