"""Packing: readings older than COMPRESS_AFTER become one compressed row per device and hour.

Each packed hour gets its minute rollup in the same statement, and a day whose every hour is
packed gets its hour rollup from those (sql/hours_pack.sql, sql/rollup_days.sql). Hours are
packed once: a late sample for a packed hour unpacks it first (`hours_unpack`, called by the
collector), and the next run packs it again, whole. Packing and unpacking of a device take the
same advisory lock, so neither sees half of the other. A per-device trim that must take part of a
packed hour unpacks it too (telemetry/ingest/collector/services.py).
"""
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from telemetry.history import partitions
from telemetry.sql import sql_statement
from telemetry.times import to_microseconds

logger = logging.getLogger(__name__)

PACKED = "telemetry_readinghour"
ROLLUP_MINUTE = "telemetry_rollupminute"
ROLLUP_HOUR = "telemetry_rolluphour"
# pg_advisory_xact_lock's first key: this feature's class of locks, the second being a device id.
LOCK_NAMESPACE = 0x7E1E
# Readings this much younger than COMPRESS_AFTER are not packed yet, so a group holding only
# newer ones needs no look at the packed hours (one packing run's clock against another's).
UNPACK_MARGIN = timedelta(hours=1)

_sql = lambda name: sql_statement(__file__, name)  # noqa: E731
_DEVICES_TO_PACK = _sql("devices_to_pack")
_DEVICES_LOCK = _sql("devices_lock")
_HOURS_PACK = _sql("hours_pack")
_HOURS_UNPACK = _sql("hours_unpack")
_ROLLUP_DAYS = _sql("rollup_days")


@dataclass
class PackResult:
    devices: int = 0
    hours: int = 0
    samples: int = 0
    days_rolled_up: int = 0
    days: set[datetime] = field(default_factory=set)


def packing_boundary(now: datetime | None = None) -> datetime:
    """The hour boundary that readings older than COMPRESS_AFTER end at: packing stops there."""
    moment = (now or timezone.now()) - timedelta(seconds=settings.COMPRESS_AFTER_SECONDS)
    return moment.replace(minute=0, second=0, microsecond=0)


def devices_lock(cursor, ids: list[int]) -> None:
    cursor.execute(_DEVICES_LOCK, {"namespace": LOCK_NAMESPACE, "ids": ids})


def hours_pack(*, before: datetime, chunk: int, progress: Callable[[PackResult], None] = lambda _: None,
               stopping: Callable[[], bool] = lambda: False) -> PackResult:
    """Pack every device's readings older than `before` (an hour boundary), `chunk` devices a
    transaction; `progress` hears after each chunk, and `stopping` ends the run between chunks."""
    with connection.cursor() as cursor:
        cursor.execute(_DEVICES_TO_PACK, {"before": before})
        days_of = dict(cursor.fetchall())
    result = PackResult()
    ids = sorted(days_of)
    for first in range(0, len(ids), chunk):
        if stopping():
            break
        part = ids[first:first + chunk]
        _chunk_pack(part, {day for i in part for day in days_of[i]}, before, result)
        progress(result)
    return result


def _chunk_pack(ids: list[int], days_with_readings: set[datetime], before: datetime, result: PackResult) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        devices_lock(cursor, ids)
        days = [to_microseconds(day) // partitions.US_PER_DAY for day in days_with_readings]
        for table in (PACKED, ROLLUP_MINUTE, ROLLUP_HOUR):
            partitions.partitions_ensure(cursor, table, days)
        cursor.execute(_HOURS_PACK, {"ids": ids, "before": before})
        hours, samples, touched, _ = cursor.fetchone()
        cursor.execute(_ROLLUP_DAYS, {"ids": ids, "days": touched, "before": before})
        result.days_rolled_up += cursor.fetchone()[0]
    result.devices += len(ids)
    result.hours += hours
    result.samples += samples
    result.days.update(touched)


def hours_unpack(cursor, hours: list[tuple[int, datetime]]) -> int:
    """Unpack these (GPU id, hour) packed hours into readings, under the devices' packing lock;
    returns how many were packed."""
    devices_lock(cursor, sorted({gpu_id for gpu_id, _ in hours}))
    cursor.execute(_HOURS_UNPACK, {"ids": [gpu_id for gpu_id, _ in hours], "hours": [hour for _, hour in hours]})
    return cursor.fetchone()[0]
