"""Read queries behind the API and the admin: one GPU's samples, summaries, latest values, metric totals.

Every time-series query is one range scan of the (gpu, timestamp, metric) unique index; nothing
here counts a GPU's rows or builds a model instance per sample.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Literal

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max, Min, Q

from telemetry.models import Gpu, Metric, Sample

logger = logging.getLogger(__name__)

Order = Literal["asc", "desc"]
Aggregate = Literal["avg", "min", "max", "first", "last", "count", "sum"]

AGGREGATES: tuple[str, ...] = ("avg", "min", "max", "first", "last", "count", "sum")
# Bucket widths a summary accepts, in seconds.
BUCKETS: dict[str, int] = {
    "1s": 1, "5s": 5, "10s": 10, "30s": 30, "1m": 60, "5m": 300, "10m": 600, "15m": 900,
    "30m": 1800, "1h": 3600, "3h": 10800, "6h": 21600, "12h": 43200, "1d": 86400,
}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# --- Metric names: a handful of rows, immutable once created, so each process keeps a copy ---

_metric_lock = threading.Lock()
_metric_ids: dict[str, int] = {}
_metric_names: dict[int, str] = {}


def metric_names_refresh() -> None:
    rows = list(Metric.objects.values_list("name", "id"))
    with _metric_lock:
        _metric_ids.clear()
        _metric_ids.update(rows)
        _metric_names.clear()
        _metric_names.update((i, n) for n, i in rows)


def metric_names_forget() -> None:
    """Drop this process's copy (tests, whose rolled-back metrics come back with new ids)."""
    with _metric_lock:
        _metric_ids.clear()
        _metric_names.clear()


def metric_ids_by_name(*, names: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """Ids of the named metrics and the names that do not exist (re-reading the table on a miss)."""
    names = list(dict.fromkeys(names))
    if any(name not in _metric_ids for name in names):
        metric_names_refresh()
    found = {name: _metric_ids[name] for name in names if name in _metric_ids}
    return found, [name for name in names if name not in _metric_ids]


def metric_name(metric_id: int) -> str:
    name = _metric_names.get(metric_id)
    if name is None:
        metric_names_refresh()
        name = _metric_names.get(metric_id, str(metric_id))
    return name


def metric_names_by_id() -> dict[int, str]:
    """This process's id → name map (a miss in it is resolved by metric_name)."""
    return _metric_names


def metric_names_known() -> list[str]:
    if not _metric_ids:
        metric_names_refresh()
    return sorted(_metric_ids)


# --- One GPU's raw samples, keyset-paginated ---


@dataclass(frozen=True)
class Position:
    """A place in one GPU's (timestamp, metric) order: the key of the row a page ended or started at."""

    timestamp: datetime
    metric_id: int


def gpu_telemetry_window(
    *,
    gpu_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    metric_ids: list[int] | None = None,
    order: Order = "asc",
    after: Position | None = None,
    before: Position | None = None,
    limit: int = 1000,
) -> list[tuple[str, int, float]]:
    """(time as RFC 3339 text in UTC, metric_id, value) rows of one GPU in [start, end], in `order`.

    `after` keeps rows that come after that position in `order`; `before` keeps rows that come
    before it, and returns them nearest-first (reverse of `order`), so the caller can take the
    `limit` rows just before a page. On PostgreSQL it is one range scan of the (gpu, timestamp,
    metric) index, and the database formats the times: parsing a datetime per row in Python
    cost more than the query itself (see the README's measurements).
    """
    ascending = order == "asc"
    walk_ascending = ascending if before is None else not ascending
    if connection.vendor == "postgresql":
        return _window_postgresql(gpu_id, start, end, metric_ids, ascending, walk_ascending, after, before, limit)
    rows = Sample.objects.filter(gpu_id=gpu_id)
    if start is not None:
        rows = rows.filter(timestamp__gte=start)
    if end is not None:
        rows = rows.filter(timestamp__lte=end)
    if metric_ids:
        rows = rows.filter(metric_id__in=metric_ids)
    if after is not None:
        rows = rows.filter(_beyond(after, forward=ascending))
    if before is not None:
        rows = rows.filter(_beyond(before, forward=not ascending))
    ordering = ("timestamp", "metric_id") if walk_ascending else ("-timestamp", "-metric_id")
    return [
        (time_text(ts), metric_id, value)
        for ts, metric_id, value in rows.order_by(*ordering).values_list("timestamp", "metric_id", "value")[:limit]
    ]


# RFC 3339 in UTC with the fraction's trailing zeros (and a bare dot) trimmed: 20:42:34Z, 20:42:34.5Z.
_TIME_TEXT_SQL = """rtrim(rtrim(to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.') || 'Z'"""


def _window_postgresql(gpu_id, start, end, metric_ids, ascending, walk_ascending, after, before, limit):
    where, params = ["gpu_id = %s"], [gpu_id]
    if start is not None:
        where.append('"timestamp" >= %s')
        params.append(start)
    if end is not None:
        where.append('"timestamp" <= %s')
        params.append(end)
    if metric_ids:
        where.append("metric_id = ANY(%s)")
        params.append(list(metric_ids))
    for position, forward in ((after, ascending), (before, not ascending)):
        if position is not None:
            # A row comparison on the index's own columns: the scan starts right at the position.
            where.append(f'("timestamp", metric_id) {">" if forward else "<"} (%s, %s)')
            params += [position.timestamp, position.metric_id]
    direction = "ASC" if walk_ascending else "DESC"
    sql = (
        f"SELECT {_TIME_TEXT_SQL}, metric_id, value FROM telemetry_sample WHERE {' AND '.join(where)} "
        f'ORDER BY "timestamp" {direction}, metric_id {direction} LIMIT %s'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return cursor.fetchall()


def time_text(moment: datetime) -> str:
    """RFC 3339 in UTC, as the PostgreSQL path formats it."""
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def time_parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _beyond(position: Position, *, forward: bool) -> Q:
    # (timestamp, metric) > position, written so that the plain timestamp bound stays an index condition.
    t, m = position.timestamp, position.metric_id
    if forward:
        return Q(timestamp__gte=t) & (Q(timestamp__gt=t) | Q(metric_id__gt=m))
    return Q(timestamp__lte=t) & (Q(timestamp__lt=t) | Q(metric_id__lt=m))


# --- Time-bucketed summary ---


_SQL_AGGREGATES = {
    "avg": "avg(value)",
    "min": "min(value)",
    "max": "max(value)",
    "sum": "sum(value)",
    "count": "count(*)",
    # The value at the oldest / newest time: min/max of [epoch, value] pairs needs no per-bucket
    # sort (array_agg(… ORDER BY) forced one and took twice as long over a day of samples).
    "first": "(min(ARRAY[date_part('epoch', \"timestamp\"), value]))[2]",
    "last": "(max(ARRAY[date_part('epoch', \"timestamp\"), value]))[2]",
}


def gpu_telemetry_summary(
    *,
    gpu_id: int,
    start: datetime,
    end: datetime,
    bucket_seconds: int,
    aggregates: list[str],
    metric_ids: list[int] | None = None,
) -> list[tuple[int, str]]:
    """Aggregates of one GPU's samples in [start, end] per metric and bucket (aligned to the epoch).

    Returns (metric_id, points) per metric, points being a JSON array of
    {"time": RFC 3339, <aggregate>: value, …} oldest first. On PostgreSQL the database groups
    (`date_bin`, `GROUP BY`) and writes the JSON too: formatting a day of one-minute buckets
    in Python took a quarter of the request's time.
    """
    if connection.vendor == "postgresql":
        return _summary_postgresql(gpu_id, start, end, bucket_seconds, aggregates, metric_ids)
    return _summary_portable(gpu_id, start, end, bucket_seconds, aggregates, metric_ids)


def _summary_postgresql(gpu_id, start, end, bucket_seconds, aggregates, metric_ids) -> list[tuple[int, str]]:
    columns = ", ".join(f"{_SQL_AGGREGATES[name]} AS {name}" for name in aggregates)
    fields = ", ".join(f"'{name}', {name}" for name in aggregates)
    where_metric = "AND metric_id = ANY(%s)" if metric_ids else ""
    # Group on the bucket's time and format it once per bucket afterwards, not once per sample.
    sql = (
        "SELECT metric_id, json_agg(json_build_object('time', "
        "to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
        f"{fields}) ORDER BY bucket)::text FROM ("
        "SELECT metric_id, date_bin(make_interval(secs => %s), \"timestamp\", timestamptz 'epoch') AS bucket, "
        f"{columns} "
        f'FROM telemetry_sample WHERE gpu_id = %s AND "timestamp" >= %s AND "timestamp" <= %s {where_metric} '
        "GROUP BY 1, 2) AS buckets GROUP BY metric_id"
    )
    params: list = [bucket_seconds, gpu_id, start, end]
    if metric_ids:
        params.append(list(metric_ids))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _summary_portable(gpu_id, start, end, bucket_seconds, aggregates, metric_ids) -> list[tuple[int, str]]:
    # The embedded SQLite mode: the same result computed in Python over one ordered index scan.
    rows = gpu_telemetry_window(gpu_id=gpu_id, start=start, end=end, metric_ids=metric_ids, limit=10**9)
    groups: dict[int, dict[str, list[float]]] = {}
    step = timedelta(seconds=bucket_seconds)
    for ts, metric_id, value in rows:
        bucket_start = time_text(EPOCH + step * ((time_parse(ts) - EPOCH) // step))
        groups.setdefault(metric_id, {}).setdefault(bucket_start, []).append(value)
    result = []
    for metric_id, buckets in groups.items():
        points = []
        for bucket_start, values in sorted(buckets.items()):
            computed = {
                "avg": sum(values) / len(values), "min": min(values), "max": max(values), "sum": sum(values),
                "count": len(values), "first": values[0], "last": values[-1],
            }
            points.append({"time": bucket_start, **{name: computed[name] for name in aggregates}})
        result.append((metric_id, json.dumps(points)))
    return result


# --- Latest value of each metric ---

_LATEST_SQL = """
SELECT m.id, s."timestamp", s.value
FROM telemetry_metric AS m
CROSS JOIN LATERAL (
    SELECT "timestamp", value FROM telemetry_sample
    WHERE gpu_id = %s AND metric_id = m.id
    ORDER BY "timestamp" DESC LIMIT 1
) AS s
ORDER BY m.name
"""


def gpu_latest_values(*, gpu_id: int) -> list[tuple[int, datetime, float]]:
    """(metric_id, timestamp, value) of the newest sample of each metric the GPU reported.

    One backward index probe per metric; a metric the GPU never reported costs a walk over that
    GPU's rows, which the collector bounds (COLLECTOR_MAX_ENTRIES_PER_GPU).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_LATEST_SQL, [gpu_id])
            return cursor.fetchall()
    wanted = set(Metric.objects.values_list("id", flat=True))
    latest: dict[int, tuple[int, datetime, float]] = {}
    for ts, metric_id, value in Sample.objects.filter(gpu_id=gpu_id).order_by("-timestamp", "-metric_id").values_list(
        "timestamp", "metric_id", "value"
    ).iterator(chunk_size=2000):
        latest.setdefault(metric_id, (metric_id, ts, value))
        if len(latest) == len(wanted):
            break
    return sorted(latest.values(), key=lambda row: metric_name(row[0]))


# --- Metric totals (count, first, last) ---

METRICS_CACHE_KEY = "telemetry:api:metric-totals:v1"


def metric_totals(*, max_age: int | None = None) -> list[dict]:
    """Each metric's sample count and first and last time.

    Counting is a scan of the whole sample table, so the result is cached for `max_age` seconds
    (API_METRICS_CACHE_SECONDS) in Django's cache: Redis when REDIS_URL is set, so every API
    process shares one computation, else process memory.
    """
    max_age = settings.API_METRICS_CACHE_SECONDS if max_age is None else max_age
    if max_age:
        cached = _cache_call(cache.get, METRICS_CACHE_KEY)
        if cached is not None:
            return cached
    per_metric = {
        row["metric_id"]: row
        for row in Sample.objects.order_by().values("metric_id").annotate(
            sample_count=Count("*"), first=Min("timestamp"), last=Max("timestamp")
        )
    }
    totals = []
    for metric_id, name in Metric.objects.order_by("name").values_list("id", "name"):
        row = per_metric.get(metric_id, {})
        totals.append(
            {"name": name, "sample_count": row.get("sample_count", 0), "first": row.get("first"), "last": row.get("last")}
        )
    if max_age:
        _cache_call(cache.set, METRICS_CACHE_KEY, totals, max_age)
    return totals


def _cache_call(method, *args):
    # The cache only saves work: an unreachable Redis must not fail the request.
    try:
        return method(*args)
    except Exception:  # redis-py's ConnectionError/TimeoutError, or any other backend's error
        logger.warning("cache unavailable for %s", METRICS_CACHE_KEY, exc_info=True)
        return None


def ingest_newest_sample_time() -> datetime | None:
    """Time of the newest stored sample: the newest of the GPUs' last_seen (a scan of the small GPU table)."""
    return Gpu.objects.aggregate(newest=Max("last_seen"))["newest"]


def hosts_summary():
    """One row per host: its name, GPU count and newest sample time."""
    return (
        Gpu.objects.order_by().values("hostname").annotate(gpu_count=Count("id"), last_seen=Max("last_seen"))
        .order_by("hostname")
    )
