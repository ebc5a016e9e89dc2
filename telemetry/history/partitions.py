"""Time partitions: created before anything is written to them, dropped whole when they age out.

The readings (and the history tables) are partitioned by UTC day (migration 0008). A worker
creates the partitions a group needs in the group's own transaction, remembering the ones it has
seen committed, so a day is never missing whatever the clock says; `partitions_ahead` creates the
next days beforehand all the same, so the first write of a day finds its table. Retention drops a
partition once all of its range is older than the cutoff, after taking its samples off each
device's count: dropping a table costs the same whatever it holds.
"""
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from psycopg import sql

from telemetry.sql import sql_statement
from telemetry.times import to_datetime, to_microseconds

logger = logging.getLogger(__name__)

READINGS = "telemetry_reading"
US_PER_DAY = 86_400_000_000

_ENSURE = sql_statement(__file__, "partitions_ensure")
_LIST = sql_statement(__file__, "partitions_list")
READINGS_FORGET = sql_statement(__file__, "readings_forget")


class KnownPartitions:
    """The (table, day) partitions this process has seen committed; days counted since the epoch."""

    def __init__(self) -> None:
        self.days: set[tuple[str, int]] = set()

    def clear(self) -> None:
        self.days.clear()

    def missing(self, table: str, days: Iterable[int]) -> list[int]:
        return sorted(day for day in set(days) if (table, day) not in self.days)

    def remember(self, table: str, days: list[int]) -> None:
        self.days.update((table, day) for day in days)


known = KnownPartitions()


def days_of(times_us: Iterable[int]) -> set[int]:
    """The UTC days (since the epoch) of times given in microseconds since the epoch."""
    return {ts // US_PER_DAY for ts in times_us}


def partitions_ensure(cursor, table: str, days: Iterable[int]) -> None:
    """Create `table`'s partitions for these days unless this process knows they exist; remembered
    once the caller's transaction commits (a rolled-back creation is created again next time)."""
    missing = known.missing(table, days)
    if not missing:
        return
    cursor.execute(_ENSURE, {"table": table, "times": [to_datetime(day * US_PER_DAY) for day in missing]})
    transaction.on_commit(lambda: known.remember(table, missing))


@dataclass(frozen=True)
class Partition:
    name: str
    lower: datetime
    upper: datetime


def partitions_list(table: str) -> list[Partition]:
    """`table`'s partitions, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(_LIST, {"table": table})
        return [Partition(*row) for row in cursor.fetchall()]


def partitions_ahead(table: str, *, now: datetime, days: int) -> None:
    """Create `table`'s partitions from today through `days` days ahead."""
    with transaction.atomic(), connection.cursor() as cursor:
        first = to_microseconds(now) // US_PER_DAY
        partitions_ensure(cursor, table, range(first, first + days + 1))


def partitions_drop_before(table: str, cutoff: datetime, *, forget: str | None = None) -> dict[Partition, int]:
    """Drop each of `table`'s partitions whose whole range is older than `cutoff`, each in a
    transaction of its own. `forget`, a statement given the partition's `lower` and `upper` that
    returns a count, runs first, to take what the partition holds off the devices' bookkeeping.
    Returns each partition dropped with its count (0 without `forget`)."""
    dropped: dict[Partition, int] = {}
    for partition in partitions_list(table):
        if partition.upper > cutoff:
            break
        with transaction.atomic(), connection.cursor() as cursor:
            count = 0
            if forget:
                cursor.execute(forget, {"lower": partition.lower, "upper": partition.upper})
                count = cursor.fetchone()[0]
            cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(partition.name)))
        days = range(to_microseconds(partition.lower) // US_PER_DAY, to_microseconds(partition.upper) // US_PER_DAY)
        known.days.difference_update((table, day) for day in days)
        dropped[partition] = count
        logger.info("dropped partition %s (%s to %s)", partition.name, partition.lower.isoformat(), partition.upper.isoformat())
    return dropped
