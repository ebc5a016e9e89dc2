"""Read queries behind the API and the admin: one GPU's samples, summaries, latest values, metric totals.

Samples are stored as readings: one row per GPU and time, its values in an array by metric id
(values[i] is metric id i + 1, null where that metric has no value). Every time-series query is
one range scan of the (gpu, timestamp) unique index over the readings in range, each turned into
its samples in the database (`unnest … WITH ORDINALITY`, or just the elements of the metrics
asked for); nothing here counts a GPU's rows or builds a model instance per sample. The embedded
SQLite mode (JSON arrays) computes the same answers in Python from the same readings.
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
from django.db.models import Count, Max

from telemetry.models import Gpu, Metric, Reading

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
    """A place in one GPU's (timestamp, metric) order: the key of the sample a page ended or started at."""

    timestamp: datetime
    metric_id: int


# A reading's samples as rows: (value, metric_id) of each element, metric_id being its 1-based position.
_UNNEST = 'CROSS JOIN LATERAL unnest(r."values") WITH ORDINALITY AS u(value, metric_id)'


def _samples_join(metric_ids: list[int] | None) -> tuple[str, list[int]]:
    """The join that turns each reading `r` into its samples `u(metric_id, value)`, nulls included, and its parameters.

    All of them: the array unnested. Only some metrics: just those elements, `values[id]` (a
    VALUES list per reading took half the time of unnesting ten values and filtering them).
    """
    if not metric_ids:
        return _UNNEST, []
    ids = sorted(set(metric_ids))
    rows = ", ".join(['(%s, r."values"[%s])'] * len(ids))
    return f"CROSS JOIN LATERAL (VALUES {rows}) AS u(metric_id, value)", [item for i in ids for item in (i, i)]


def gpu_telemetry_window(
    *,
    gpu_id: int | None = None,
    gpu_uuid: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    metric_ids: list[int] | None = None,
    order: Order = "asc",
    after: Position | None = None,
    before: Position | None = None,
    limit: int = 1000,
) -> list[tuple[str, int, float]]:
    """(time as RFC 3339 text in UTC, metric_id, value) samples of one GPU in [start, end], in `order`.

    Samples are ordered by (timestamp, metric_id). `after` keeps samples that come after that
    position in `order`; `before` keeps samples that come before it, and returns them
    nearest-first (reverse of `order`), so the caller can take the `limit` samples just before a
    page. On PostgreSQL it is one range scan of the (gpu, timestamp) index over readings, each
    reading unnested into its samples, and the database formats the times: parsing a datetime
    per row in Python cost more than the query itself (see the README's measurements).

    The GPU is `gpu_id`, or `gpu_uuid` looked up in the same query (a round trip less for the API,
    which tells a missing GPU from an empty window only when no sample comes back).
    """
    if (gpu_id is None) == (gpu_uuid is None):
        raise TypeError("give exactly one of gpu_id and gpu_uuid")
    gpu = gpu_uuid if gpu_id is None else gpu_id
    ascending = order == "asc"
    walk_ascending = ascending if before is None else not ascending
    if connection.vendor == "postgresql":
        return _window_postgresql(gpu, start, end, metric_ids, ascending, walk_ascending, after, before, limit)
    return _window_portable(gpu, start, end, metric_ids, ascending, walk_ascending, after, before, limit)


# RFC 3339 in UTC with the fraction's trailing zeros (and a bare dot) trimmed: 20:42:34Z, 20:42:34.5Z.
_TIME_TEXT_SQL = """rtrim(rtrim(to_char(r."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.') || 'Z'"""


def _window_postgresql(gpu: int | str, start, end, metric_ids, ascending, walk_ascending, after, before, limit):
    samples, samples_params = _samples_join(metric_ids)
    where = ["r.gpu_id = %s" if isinstance(gpu, int) else "r.gpu_id = (SELECT id FROM telemetry_gpu WHERE uuid = %s)"]
    params: list = [gpu]
    if start is not None:
        where.append('r."timestamp" >= %s')
        params.append(start)
    if end is not None:
        where.append('r."timestamp" <= %s')
        params.append(end)
    for position, forward in ((after, ascending), (before, not ascending)):
        if position is not None:
            # The plain time bound is the index condition (the scan starts right at the position);
            # the row comparison, on the unnested samples, drops the position's own time step up
            # to and including its metric.
            where.append(f'r."timestamp" {">=" if forward else "<="} %s')
            where.append(f'(r."timestamp", u.metric_id) {">" if forward else "<"} (%s, %s)')
            params += [position.timestamp, position.timestamp, position.metric_id]
    where.append("u.value IS NOT NULL")
    direction = "ASC" if walk_ascending else "DESC"
    # The index gives the readings in time order and unnesting keeps each one's elements
    # together, so the sort is an incremental one within each time step, stopped by the LIMIT.
    # The time is formatted once per reading (the OFFSET 0 keeps that subquery from being
    # flattened into a to_char per sample, which cost 40 % of the query).
    sql = (
        f"SELECT t.text, u.metric_id, u.value FROM telemetry_reading AS r "
        f"CROSS JOIN LATERAL (SELECT {_TIME_TEXT_SQL} AS text OFFSET 0) AS t {samples} "
        f'WHERE {" AND ".join(where)} ORDER BY r."timestamp" {direction}, u.metric_id {direction} LIMIT %s'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*samples_params, *params, limit])
        return cursor.fetchall()


def _window_portable(gpu: int | str, start, end, metric_ids, ascending, walk_ascending, after, before, limit):
    # The embedded SQLite mode: the same rows from readings in time order, unnested in Python.
    readings = Reading.objects.filter(**{"gpu_id" if isinstance(gpu, int) else "gpu__uuid": gpu})
    if start is not None:
        readings = readings.filter(timestamp__gte=start)
    if end is not None:
        readings = readings.filter(timestamp__lte=end)
    bounds = []  # (position, keep samples greater than it)
    for position, forward in ((after, ascending), (before, not ascending)):
        if position is not None:
            readings = readings.filter(**{"timestamp__gte" if forward else "timestamp__lte": position.timestamp})
            bounds.append(((position.timestamp, position.metric_id), forward))
    wanted = set(metric_ids) if metric_ids else None
    readings = readings.order_by("timestamp" if walk_ascending else "-timestamp").values_list("timestamp", "values")
    rows: list[tuple[str, int, float]] = []
    if limit <= 0:
        return rows
    for ts, values in readings.iterator(chunk_size=2000):
        samples = [(i + 1, value) for i, value in enumerate(values or ()) if value is not None]
        if not walk_ascending:
            samples.reverse()
        text = None
        for metric_id, value in samples:
            if wanted is not None and metric_id not in wanted:
                continue
            if not all(_beyond((ts, metric_id), key, forward) for key, forward in bounds):
                continue
            if text is None:
                text = time_text(ts)
            rows.append((text, metric_id, value))
            if len(rows) >= limit:
                return rows
    return rows


def _beyond(key: tuple[datetime, int], position: tuple[datetime, int], forward: bool) -> bool:
    return key > position if forward else key < position


def time_text(moment: datetime) -> str:
    """RFC 3339 in UTC, as the PostgreSQL path formats it."""
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def time_parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- Time-bucketed summary ---


_SQL_AGGREGATES = {
    "avg": "avg(u.value)",
    "min": "min(u.value)",
    "max": "max(u.value)",
    "sum": "sum(u.value)",
    "count": "count(*)",
    # The value at the oldest / newest time: min/max of [epoch, value] pairs needs no per-bucket
    # sort (array_agg(… ORDER BY) forced one and took twice as long over a day of samples).
    "first": "(min(ARRAY[date_part('epoch', r.\"timestamp\"), u.value]))[2]",
    "last": "(max(ARRAY[date_part('epoch', r.\"timestamp\"), u.value]))[2]",
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
    # Each point's JSON is written as text: every field but the time is a number (an aggregate of
    # finite values, never null in a bucket that has samples), and concatenating took a quarter
    # less time than json_build_object and json_agg (the same parsed answer; a test compares).
    fields = " || ".join(f"',\"{name}\":' || {name}" for name in aggregates)
    samples, samples_params = _samples_join(metric_ids)
    # One range scan of the (gpu, timestamp) index, each reading unnested into its samples;
    # group on the bucket's time and format it once per bucket afterwards, not once per sample.
    sql = (
        "SELECT metric_id, '[' || string_agg('{\"time\":\"' || "
        "to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || '\"' || "
        f"{fields} || '}}', ',' ORDER BY bucket) || ']' FROM ("
        "SELECT u.metric_id, date_bin(make_interval(secs => %s), r.\"timestamp\", timestamptz 'epoch') AS bucket, "
        f"{columns} FROM telemetry_reading AS r {samples} "
        'WHERE r.gpu_id = %s AND r."timestamp" >= %s AND r."timestamp" <= %s AND u.value IS NOT NULL '
        "GROUP BY 1, 2) AS buckets GROUP BY metric_id"
    )
    params = [bucket_seconds, *samples_params, gpu_id, start, end]
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

# One backward walk of the (gpu, timestamp) index per metric, stopping at the first reading that
# holds it: the newest reading, as a rule.
_LATEST_SQL = """
SELECT m.id, r."timestamp", r."values"[m.id]
FROM telemetry_metric AS m
CROSS JOIN LATERAL (
    SELECT "timestamp", "values" FROM telemetry_reading
    WHERE gpu_id = %s AND "values"[m.id] IS NOT NULL
    ORDER BY "timestamp" DESC LIMIT 1
) AS r
ORDER BY m.name
"""


def gpu_latest_values(*, gpu_id: int) -> list[tuple[int, datetime, float]]:
    """(metric_id, timestamp, value) of the newest sample of each metric the GPU reported, by metric name.

    Usually one index probe per metric, answered by the newest reading; a metric the GPU never
    reported costs a walk over that GPU's readings, which the collector bounds
    (COLLECTOR_MAX_ENTRIES_PER_GPU).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_LATEST_SQL, [gpu_id])
            return cursor.fetchall()
    return _latest_portable(gpu_id)


def _latest_portable(gpu_id: int) -> list[tuple[int, datetime, float]]:
    # The embedded SQLite mode: the GPU's readings newest first until every metric has a value.
    wanted = set(Metric.objects.values_list("id", flat=True))
    latest: dict[int, tuple[int, datetime, float]] = {}
    readings = Reading.objects.filter(gpu_id=gpu_id).order_by("-timestamp").values_list("timestamp", "values")
    for ts, values in readings.iterator(chunk_size=64):
        for i, value in enumerate(values or ()):
            if value is not None:
                latest.setdefault(i + 1, (i + 1, ts, value))
        if wanted <= latest.keys():
            break
    return sorted(latest.values(), key=lambda row: metric_name(row[0]))


# --- Metric totals (count, first, last) ---

METRICS_CACHE_KEY = "telemetry:api:metric-totals:v1"

# Readings grouped by shape first (their length and which elements are null: nearly all share one
# or a few), so the per-metric step runs over a handful of groups instead of every sample; a third
# of the time of unnesting every reading.
_TOTALS_SQL = """
SELECT m.metric_id, sum(shapes.readings), min(shapes.first), max(shapes.last)
FROM (
    SELECT cardinality("values") AS length, array_positions("values", NULL) AS nulls,
           count(*) AS readings, min("timestamp") AS first, max("timestamp") AS last
    FROM telemetry_reading GROUP BY 1, 2
) AS shapes
CROSS JOIN LATERAL generate_series(1, shapes.length) AS m(metric_id)
WHERE m.metric_id <> ALL (shapes.nulls)
GROUP BY m.metric_id
"""


def metric_totals(*, max_age: int | None = None) -> list[dict]:
    """Each metric's sample count (its non-null values over all readings) and first and last time.

    Counting is a scan of the whole reading table, so the result is cached for `max_age` seconds
    (API_METRICS_CACHE_SECONDS) in Django's cache: Redis when REDIS_URL is set, so every API
    process shares one computation, else process memory.
    """
    max_age = settings.API_METRICS_CACHE_SECONDS if max_age is None else max_age
    if max_age:
        cached = _cache_call(cache.get, METRICS_CACHE_KEY)
        if cached is not None:
            return cached
    per_metric = _totals_postgresql() if connection.vendor == "postgresql" else _totals_portable()
    totals = []
    for metric_id, name in Metric.objects.order_by("name").values_list("id", "name"):
        count, first, last = per_metric.get(metric_id, (0, None, None))
        totals.append({"name": name, "sample_count": count, "first": first, "last": last})
    if max_age:
        _cache_call(cache.set, METRICS_CACHE_KEY, totals, max_age)
    return totals


def _totals_postgresql() -> dict[int, tuple[int, datetime, datetime]]:
    with connection.cursor() as cursor:
        cursor.execute(_TOTALS_SQL)
        return {metric_id: (int(count), first, last) for metric_id, count, first, last in cursor.fetchall()}


def _totals_portable() -> dict[int, tuple[int, datetime, datetime]]:
    # The embedded SQLite mode: one pass over the readings in Python.
    per_metric: dict[int, tuple[int, datetime, datetime]] = {}
    for ts, values in Reading.objects.order_by().values_list("timestamp", "values").iterator(chunk_size=5000):
        for i, value in enumerate(values or ()):
            if value is not None:
                count, first, last = per_metric.get(i + 1, (0, ts, ts))
                per_metric[i + 1] = (count + 1, min(first, ts), max(last, ts))
    return per_metric


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
