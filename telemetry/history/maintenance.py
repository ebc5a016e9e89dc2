"""History maintenance, run periodically by `manage.py compress`: partitions ahead, packing and
each tier's retention (raw readings and packed hours, minute rollups, hour rollups)."""
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from telemetry.history import packing, partitions
from telemetry.history.packing import PACKED, ROLLUP_HOUR, ROLLUP_MINUTE, PackResult
from telemetry.ingest.collector.services import samples_delete_older_than
from telemetry.sql import sql_statement

DAYS_AHEAD = 2
PACK_CHUNK = 200  # devices per packing transaction: progress and SIGTERM between them
_PACKED_FORGET = sql_statement(__file__, "packed_forget")
_PACKED_DELETE_OLDER = sql_statement(__file__, "packed_delete_older")


@dataclass
class MaintenanceResult:
    packed: PackResult
    dropped: dict[str, list[str]]


def raw_delete_older_than(cutoff: datetime) -> int:
    """Delete raw samples, readings and packed hours alike, older than `cutoff`: whole days'
    partitions dropped, then the rest of the cutoff's day (packed hours that end by the cutoff).
    Returns how many samples were deleted."""
    dropped = partitions.partitions_drop_before(PACKED, cutoff, forget=_PACKED_FORGET)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_PACKED_DELETE_OLDER, {"cutoff": cutoff})
        packed = cursor.fetchone()[0]
    return sum(dropped.values()) + packed + samples_delete_older_than(cutoff=cutoff)


def history_maintain(*, now: datetime, progress: Callable[[PackResult], None] = lambda _: None,
                     stopping: Callable[[], bool] = lambda: False) -> MaintenanceResult:
    """Create the coming days' partitions, pack what is older than COMPRESS_AFTER, then drop each
    tier's partitions past its retention."""
    for table in (partitions.READINGS, PACKED, ROLLUP_MINUTE):
        partitions.partitions_ahead(table, now=now, days=DAYS_AHEAD)
    partitions.partitions_ahead(ROLLUP_HOUR, now=now, days=31)
    packed = packing.hours_pack(before=packing.packing_boundary(now), chunk=PACK_CHUNK, progress=progress, stopping=stopping)
    dropped: dict[str, list[str]] = {}
    if settings.HISTORY_RAW_RETENTION_SECONDS and not stopping():
        cutoff = now - timedelta(seconds=settings.HISTORY_RAW_RETENTION_SECONDS)
        dropped[PACKED] = [p.name for p in partitions.partitions_drop_before(PACKED, cutoff, forget=_PACKED_FORGET)]
        dropped[partitions.READINGS] = [p.name for p in partitions.partitions_drop_before(
            partitions.READINGS, cutoff, forget=partitions.READINGS_FORGET)]
    for table, seconds in ((ROLLUP_MINUTE, settings.HISTORY_MINUTE_RETENTION_SECONDS),
                           (ROLLUP_HOUR, settings.HISTORY_HOUR_RETENTION_SECONDS)):
        if seconds and not stopping():
            dropped[table] = [p.name for p in partitions.partitions_drop_before(table, now - timedelta(seconds=seconds))]
    return MaintenanceResult(packed, dropped)
