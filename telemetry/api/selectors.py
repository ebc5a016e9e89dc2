"""Read queries behind the API and the admin: GPUs, one GPU's samples, summaries, latest values, totals.

Samples are stored as readings: one row per GPU and time, its values in an array by metric id
(values[i] is metric id i, null where that metric has no value). Every time-series query is one
range scan of the (gpu, timestamp) unique index over the readings in range, each turned into its
samples in the database; nothing here counts a GPU's rows or builds a model instance per sample.
Each such query is a whole statement in telemetry/api/sql/, its parameters passed by name.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Literal, NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max, QuerySet
from django.http import Http404

from telemetry.models import Gpu, IngestCounter, Metric
from telemetry.sql import sql_statement

logger = logging.getLogger(__name__)

Order = Literal["asc", "desc"]
# A sample as the window query returns it: (time as RFC 3339 text in UTC, metric id, value).
Sample = tuple[str, int, float]

# The aggregates a summary computes, each a column of summary.sql.
AGGREGATES: tuple[str, ...] = ("avg", "min", "max", "first", "last", "count", "sum")


def _fetchall(name: str, params: dict | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql_statement(__file__, name), params)
        return cursor.fetchall()


# --- GPUs and hosts ---


@dataclass(frozen=True)
class GpuSpan:
    """A GPU's id and the times of its oldest and newest stored samples."""

    id: int
    first_seen: datetime
    last_seen: datetime


def _no_such_gpu(uuid: str) -> Http404:
    return Http404(f"No GPU with UUID {uuid!r}.")


def gpu_uuid_check(uuid: str) -> None:
    """A 404 for a UUID no GPU can have: PostgreSQL text cannot hold a NUL character."""
    if "\x00" in uuid:
        raise _no_such_gpu(uuid)


def gpu_span(*, uuid: str) -> GpuSpan:
    """The GPU's id, first and last seen, or a 404 (plain SQL: it runs before most telemetry reads)."""
    gpu_uuid_check(uuid)
    rows = _fetchall("gpu_by_uuid", {"uuid": uuid})
    if not rows:
        raise _no_such_gpu(uuid)
    return GpuSpan(*rows[0])


def gpu_get(*, uuid: str) -> Gpu:
    gpu_uuid_check(uuid)
    gpu = Gpu.objects.filter(uuid=uuid).first()
    if gpu is None:
        raise _no_such_gpu(uuid)
    return gpu


def host_gpus(*, hostname: str) -> QuerySet[Gpu]:
    """The host's GPUs by index, or a 404 when it has none."""
    gpus = Gpu.objects.filter(hostname=hostname).order_by("index", "id") if "\x00" not in hostname else Gpu.objects.none()
    if not gpus.exists():
        raise Http404(f"No GPUs on host {hostname!r}.")
    return gpus


def hosts_summary():
    """One row per host: its name, GPU count and newest sample time."""
    return (
        Gpu.objects.order_by().values("hostname").annotate(gpu_count=Count("id"), last_seen=Max("last_seen"))
        .order_by("hostname")
    )


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


@dataclass(frozen=True)
class SampleWindow:
    """One GPU's samples in [start, end] (open where None), of some metrics (None: all), in an order."""

    gpu_uuid: str
    start: datetime | None = None
    end: datetime | None = None
    metric_ids: list[int] | None = None
    order: Order = "asc"

    def samples(self, *, after: Position | None = None, before: Position | None = None, limit: int) -> list[Sample]:
        """The window's samples after or before a position, as gpu_telemetry_window returns them."""
        return gpu_telemetry_window(
            gpu_uuid=self.gpu_uuid, start=self.start, end=self.end, metric_ids=self.metric_ids, order=self.order,
            after=after, before=before, limit=limit,
        )


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
) -> list[Sample]:
    """(time as RFC 3339 text in UTC, metric_id, value) samples of one GPU in [start, end], in `order`.

    Samples are ordered by (timestamp, metric_id). `after` keeps the samples that come after that
    position in `order`; `before` keeps those that come before it and returns them nearest-first
    (reverse of `order`), so the caller can take the `limit` samples just before a page. The
    database formats the times: parsing a datetime per row in Python cost more than the query.

    The GPU is `gpu_id`, or `gpu_uuid` looked up in the same query (a round trip less for the
    API). With `gpu_uuid`, a window without samples raises Http404 when no GPU has that UUID.
    """
    if (gpu_id is None) == (gpu_uuid is None):
        raise TypeError("give exactly one of gpu_id and gpu_uuid")
    if after is not None and before is not None:
        raise TypeError("give at most one of after and before")
    if gpu_uuid is not None:
        gpu_uuid_check(gpu_uuid)
    # Samples before a position are collected walking against `order`; either way the walk starts after it.
    ascending = (order == "asc") == (before is None)
    position = after or before
    rows = _fetchall("samples_ascending" if ascending else "samples_descending", {
        "gpu_id": gpu_id,
        "gpu_uuid": gpu_uuid,
        "start": start,
        "end": end,
        "metric_ids": sorted(set(metric_ids)) if metric_ids else None,
        "after_time": position.timestamp if position else None,
        "after_metric": position.metric_id if position else None,
        "limit": limit,
    })
    if not rows and gpu_uuid is not None and not Gpu.objects.filter(uuid=gpu_uuid).exists():
        raise _no_such_gpu(gpu_uuid)
    return rows


# --- Time-bucketed summary ---


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

    Returns (metric_id, points) per metric that has samples, points being a JSON array of
    {"time": RFC 3339, <aggregate>: value, …} oldest first, the aggregates in the order given.
    The database groups (`date_bin`, `GROUP BY`) and writes the JSON too.
    """
    unknown = [name for name in aggregates if name not in AGGREGATES]
    if unknown or not aggregates:
        raise ValueError(f"aggregates must be some of {AGGREGATES}, not {aggregates!r}")
    params = {"gpu_id": gpu_id, "start": start, "end": end, "bucket_seconds": bucket_seconds, "aggregates": list(aggregates)}
    if metric_ids:
        return _fetchall("summary_of_metrics", {**params, "metric_ids": sorted(set(metric_ids))})
    return _fetchall("summary", params)


# --- Latest value of each metric ---


class MetricValue(NamedTuple):
    metric: str
    timestamp: datetime
    value: float


def gpu_latest_values(*, gpu_id: int) -> list[MetricValue]:
    """The newest sample of each metric the GPU reported, by metric name."""
    return [MetricValue(*row) for row in _fetchall("latest", {"gpu_id": gpu_id})]


# --- Metric totals (count, first, last) ---

METRICS_CACHE_KEY = "telemetry:api:metric-totals:v1"


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
    per_metric = metric_totals_by_id()
    totals = []
    for metric_id, name in Metric.objects.order_by("name").values_list("id", "name"):
        count, first, last = per_metric.get(metric_id, (0, None, None))
        totals.append({"name": name, "sample_count": count, "first": first, "last": last})
    if max_age:
        _cache_call(cache.set, METRICS_CACHE_KEY, totals, max_age)
    return totals


def metric_totals_by_id() -> dict[int, tuple[int, datetime, datetime]]:
    """metric_id → (sample count, first time, last time) of every metric with samples, uncached."""
    return {metric_id: (int(count), first, last) for metric_id, count, first, last in _fetchall("metric_totals")}


def _cache_call(method, *args):
    # The cache only saves work: an unreachable Redis must not fail the request.
    try:
        return method(*args)
    except Exception:  # redis-py's ConnectionError/TimeoutError, or any other backend's error
        logger.warning("cache unavailable for %s", METRICS_CACHE_KEY, exc_info=True)
        return None


# --- Ingest status ---


def ingest_counters() -> dict[str, int]:
    """The collectors' shared counters by name (IngestCounter.SAMPLES_STORED, …); a counter never written is 0."""
    names = (
        IngestCounter.SAMPLES_STORED, IngestCounter.SAMPLES_DUPLICATE,
        IngestCounter.ROWS_REJECTED, IngestCounter.BATCHES_DEAD_LETTERED,
    )
    stored = dict(IngestCounter.objects.values_list("name", "value"))
    return {name: stored.get(name, 0) for name in names}


def ingest_newest_sample_time() -> datetime | None:
    """Time of the newest stored sample: the newest of the GPUs' last_seen (a scan of the small GPU table)."""
    return Gpu.objects.aggregate(newest=Max("last_seen"))["newest"]
