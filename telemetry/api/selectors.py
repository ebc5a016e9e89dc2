"""Read queries behind the API and the admin: devices, one device's samples, summaries, latest values, totals.

A device is a whole GPU or one MIG GPU instance of it (a `Gpu` row). Samples are stored as
readings: one row per device and time, its values in an array by metric id (values[i] is metric
id i, null where that metric has no value). Every time-series query is one range scan of the
(gpu, timestamp) unique index over the readings in range, each turned into its samples in the
database; nothing here counts a device's rows or builds a model instance per sample.
Each such query is a whole statement in telemetry/api/sql/, its parameters passed by name.
"""
from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Iterable, Literal, NamedTuple

import psycopg
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, FilteredRelation, Max, Q, QuerySet, Value
from django.db.models.functions import NullIf
from django.http import Http404

from telemetry.models import MIG_ID_SEPARATOR, Gpu, IngestCounter, Metric, device_key
from telemetry.sql import sql_statement
from telemetry.times import to_datetime, to_microseconds

if TYPE_CHECKING:
    from telemetry.api import buckets, hour_rollups, window

logger = logging.getLogger(__name__)

Order = Literal["asc", "desc"]
# A sample as a window lists it: (time as RFC 3339 text in UTC, metric id, value).
Sample = tuple[str, int, float]

# The aggregates a summary computes (buckets.summary_points).
AGGREGATES: tuple[str, ...] = ("avg", "min", "max", "first", "last", "count", "sum")
# window.py and buckets.py (numpy) are imported by the functions that use them: the streamer sets
# Django up, and with it the admin and this module, and must not carry numpy (bench/README.md).
# A device's key: its (parent) GPU's UUID and its MIG GPU instance id, None for a whole GPU.
DeviceKey = tuple[str, int | None]
# The exporter's attribution of a reading (its label set's columns), which the API filters on.
ATTRIBUTIONS: tuple[str, ...] = ("namespace", "pod", "container")


@dataclass(frozen=True)
class Attribution:
    """Readings whose label set has each attribution given (None: any)."""

    namespace: str | None = None
    pod: str | None = None
    container: str | None = None

    def params(self) -> dict[str, str | None]:
        return {"namespace": self.namespace, "pod": self.pod, "container": self.container}


ANY_ATTRIBUTION = Attribution()


# Statements run prepared (DATABASE_PREPARED_STATEMENTS), so that a request does not plan them
# again: each plan, made without the parameters' values, was checked to hold for any of them.
PREPARED = frozenset({"window_readings", "summary_hours", "summary_minutes", "summary_readings", "gpu_by_key"})


class _PreparingCursor(psycopg.Cursor):
    """Parameters bound by the server, and each statement prepared on the connection the first time it runs."""

    def execute(self, query, params=None, **kwargs):
        return super().execute(query, params, prepare=True, **kwargs)


def _cursor(name: str):
    # Where statements are logged (DEBUG, a test capturing them) they run unprepared: Django cannot
    # show a prepared statement's text.
    if name not in PREPARED or not settings.DATABASE_PREPARED_STATEMENTS or connection.queries_logged:
        return connection.cursor()
    connection.ensure_connection()
    return connection.make_cursor(_PreparingCursor(connection.connection))


def _fetchall(name: str, params: dict | None = None) -> list[tuple]:
    with _cursor(name) as cursor:
        cursor.execute(sql_statement(__file__, name), params)
        return cursor.fetchall()


# --- Devices (whole GPUs and MIG instances) and hosts ---


@dataclass(frozen=True)
class GpuSpan:
    """A device's id and the times of its oldest and newest stored samples."""

    id: int
    first_seen: datetime
    last_seen: datetime


# The largest GPU instance id a device can have (the column is a PostgreSQL smallint).
MIG_INSTANCE_MAX = 32767


def _no_such_gpu(device_id: str) -> Http404:
    return Http404(f"No GPU or MIG instance with id {device_id!r}.")


def device_lookup(device_id: str) -> DeviceKey:
    """(uuid, mig_instance) of an API device id, or a 404 for an id no device can have.

    Only a device's own id is accepted (`GPU-…:mig1`, not `:mig01`), so each device has one URL;
    PostgreSQL text cannot hold a NUL character, nor a smallint a larger instance id.
    """
    if "\x00" in device_id:
        raise _no_such_gpu(device_id)
    try:
        uuid, instance = device_key(device_id)
    except ValueError:  # digits int() does not read, such as superscripts
        raise _no_such_gpu(device_id) from None
    if instance is not None and (instance > MIG_INSTANCE_MAX or f"{uuid}{MIG_ID_SEPARATOR}{instance}" != device_id):
        raise _no_such_gpu(device_id)
    return uuid, instance


def gpu_span(*, device_id: str) -> GpuSpan:
    """The device's row id, first and last seen, or a 404 (plain SQL: it runs before most telemetry reads)."""
    uuid, instance = device_lookup(device_id)
    rows = _fetchall("gpu_by_key", {"uuid": uuid, "mig_instance": instance})
    if not rows:
        raise _no_such_gpu(device_id)
    return GpuSpan(*rows[0])


def devices() -> QuerySet[Gpu]:
    """Every device with the attribution of its newest reading: `namespace`, `pod`, `container` (None: none).

    `newest` is the device's reading at last_seen: one join, at most one row, the (gpu, timestamp)
    key being unique.
    """
    newest = FilteredRelation("readings", condition=Q(readings__timestamp=F("last_seen")))
    return Gpu.objects.annotate(newest=newest).annotate(**{
        # The collector stores a missing label as empty text.
        name: NullIf(F(f"newest__label_set__{name}"), Value("")) for name in ATTRIBUTIONS
    })


def gpu_get(*, device_id: str) -> Gpu:
    uuid, instance = device_lookup(device_id)
    gpu = devices().filter(uuid=uuid, mig_instance=instance).first()
    if gpu is None:
        raise _no_such_gpu(device_id)
    return gpu


def host_gpus(*, hostname: str) -> QuerySet[Gpu]:
    """The host's devices by index, each whole GPU before its MIG instances, or a 404 when it has none."""
    gpus = devices().filter(hostname=hostname) if "\x00" not in hostname else Gpu.objects.none()
    if not gpus.exists():
        raise Http404(f"No GPUs on host {hostname!r}.")
    return gpus.order_by("index", F("mig_instance").asc(nulls_first=True), "id")


def hosts_summary():
    """One row per host: its name, device count (whole GPUs and MIG instances) and newest sample time."""
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


# --- One device's raw samples, keyset-paginated ---


@dataclass(frozen=True)
class Position:
    """A place in one device's (timestamp, metric) order: the key of the sample a page ended or started at."""

    timestamp: datetime
    metric_id: int


@dataclass(frozen=True)
class SampleWindow:
    """One device's samples in [start, end] (open where None), of some metrics (None: all), in an order."""

    device_id: str
    start: datetime | None = None
    end: datetime | None = None
    metric_ids: list[int] | None = None
    order: Order = "asc"
    attribution: Attribution = ANY_ATTRIBUTION

    def samples(self, *, after: Position | None = None, before: Position | None = None, limit: int) -> window.Samples:
        """The window's samples after or before a position, as gpu_telemetry_samples returns them."""
        return gpu_telemetry_samples(
            device_id=self.device_id, start=self.start, end=self.end, metric_ids=self.metric_ids, order=self.order,
            attribution=self.attribution, after=after, before=before, limit=limit,
        )


def gpu_telemetry_samples(
    *,
    gpu_id: int | None = None,
    device_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    metric_ids: list[int] | None = None,
    order: Order = "asc",
    attribution: Attribution = ANY_ATTRIBUTION,
    after: Position | None = None,
    before: Position | None = None,
    limit: int = 1000,
) -> window.Samples:
    """The samples of one device in [start, end], in `order`, side by side (gpu_telemetry_window lists them).

    Samples are ordered by (timestamp, metric_id). `after` keeps the samples that come after that
    position in `order`; `before` keeps those that come before it and returns them nearest-first
    (reverse of `order`), so the caller can take the `limit` samples just before a page. The
    database sends blocks of readings, raw and packed alike (window_readings.sql), and
    window.py picks their samples. `attribution` keeps only the samples of readings whose label set has that namespace, pod, container.

    The device is `gpu_id` (its row), or `device_id` (its API id) looked up in the same query (a
    round trip less for the API). With `device_id`, a window without samples raises Http404 when
    no device has that id.
    """
    from telemetry.api import window

    if (gpu_id is None) == (device_id is None):
        raise TypeError("give exactly one of gpu_id and device_id")
    if after is not None and before is not None:
        raise TypeError("give at most one of after and before")
    uuid, instance = device_lookup(device_id) if device_id is not None else (None, None)
    # Samples before a position are collected walking against `order`; either way the walk starts after it.
    descending = (order == "desc") == (before is None)
    position = after or before
    start_us = window.MIN_US if start is None else to_microseconds(start)
    end_us = window.MAX_US if end is None else to_microseconds(end)
    if position is not None:
        # The walk starts at the position's time: no reading before it is read.
        at = to_microseconds(position.timestamp)
        start_us, end_us = (start_us, min(end_us, at)) if descending else (max(start_us, at), end_us)
    walk = window.Walk(
        start_us=start_us, end_us=end_us, descending=descending, metric_ids=sorted(set(metric_ids)) if metric_ids else None,
        after=None if position is None else (to_microseconds(position.timestamp), position.metric_id),
    )
    device = {"gpu_id": gpu_id, "uuid": uuid, "mig_instance": instance, **attribution.params()}

    def fetch(start, end, descending, readings, hours):
        return _fetchall("window_readings", {**device, "start": start, "end": end, "descending": descending,
                                             "readings": readings, "hours": hours})

    rows = window.window_samples(walk, limit=limit, metrics_known=len(_metric_names), fetch=fetch)
    if not len(rows) and device_id is not None and not Gpu.objects.filter(uuid=uuid, mig_instance=instance).exists():
        raise _no_such_gpu(device_id)
    return rows


def gpu_telemetry_window(**window_args) -> list[Sample]:
    """(time as RFC 3339 text in UTC, metric_id, value) of each sample gpu_telemetry_samples(**window_args) returns."""
    return gpu_telemetry_samples(**window_args).rows()


# --- Time-bucketed summary ---


def gpu_telemetry_summary(
    *,
    gpu_id: int,
    start: datetime,
    end: datetime,
    bucket_seconds: int,
    aggregates: list[str],
    metric_ids: list[int] | None = None,
    attribution: Attribution = ANY_ATTRIBUTION,
    newest: datetime | None = None,
) -> dict[int, buckets.Series]:
    """Aggregates of one device's samples in [start, end] per metric and bucket (aligned to the epoch).

    Returns, per metric id with samples, its points {"time": RFC 3339, <aggregate>: value, …}
    oldest first, the aggregates in the order given (a Series: `points()`, or `json()` to write).
    summary_partials reads the coarsest rollups
    that cover parts of the window whole (`rollup_tier`) and the samples' partials elsewhere;
    buckets.py merges them. `attribution` keeps only the samples of readings whose label set has
    that namespace, pod and container. `newest`: the device's newest sample time (its last_seen),
    after which nothing is read, where the caller knows it.
    """
    from telemetry.api import buckets

    unknown = [name for name in aggregates if name not in AGGREGATES]
    if unknown or not aggregates:
        raise ValueError(f"aggregates must be some of {AGGREGATES}, not {aggregates!r}")
    # In hour buckets, each hour rollup cell is a point: a day's points are written once and kept.
    parts = summary_partials(gpu_id=gpu_id, start=start, end=end, bucket_seconds=bucket_seconds, aggregates=aggregates,
                             attribution=attribution, newest=newest, written=bucket_seconds == 3600)
    metric_ids = sorted(set(metric_ids)) if metric_ids else None
    points = buckets.summary_points([part for part in parts if isinstance(part, buckets.Partials)],
                                    bucket_seconds=bucket_seconds, aggregates=aggregates, metric_ids=metric_ids)
    return buckets.series_merged(points, [part for part in parts if isinstance(part, buckets.WrittenDay)], metric_ids)


def summary_partials(
    *, gpu_id: int, start: datetime, end: datetime, bucket_seconds: int, aggregates: Iterable[str] = AGGREGATES,
    attribution: Attribution = ANY_ATTRIBUTION, newest: datetime | None = None, written: bool = False,
) -> list[buckets.Partials | buckets.WrittenDay]:
    """The partial aggregates a summary merges: the hour rollups' cells the window holds whole (where
    the bucket is a whole number of hours), then the rest of the window, a span at a time, from
    minute rollups (summary_minutes.sql, where the bucket is a whole number of minutes and no
    attribution is asked) and the readings they do not stand for (summary_readings.sql). Hour rollups
    already decoded by this process and not written since are not read again (hour_rollups.py); with
    `newest`, nothing after it is asked for. `written` (buckets of an hour): the days held whole come
    as their points, written as JSON."""
    from telemetry.api import buckets

    tier, parts, spans = rollup_tier(bucket_seconds), [], [(start, end)]
    if tier == "hour" and attribution == ANY_ATTRIBUTION:
        from telemetry.api import hour_rollups

        def fetch_days(held_days: list[int], held_versions: list[str]) -> list[tuple]:
            return _fetchall("summary_hours", {"gpu_id": gpu_id, "start": start, "end": end, "held_days": held_days,
                                               "held_versions": held_versions})

        start_us, end_us = to_microseconds(start), to_microseconds(end)
        parts = hour_rollups.hour_partials(_held_days(), gpu_id=gpu_id, start_us=start_us, end_us=end_us, fetch=fetch_days,
                                           written=tuple(aggregates) if written else None)
        spans = [(to_datetime(lo), to_datetime(hi))
                 for lo, hi in buckets.spans_uncovered(start_us, end_us, [part.covered_us for part in parts])]
    if newest is not None:  # a span after the device's newest sample holds none: not asked
        spans = [(lo, min(hi, newest)) for lo, hi in spans if lo <= newest]
    minutes = tier != "raw" and attribution == ANY_ATTRIBUTION
    for lo, hi in spans:
        if minutes:
            parts += [buckets.partials_of_rollup(row) for row in _fetchall("summary_minutes", {"gpu_id": gpu_id, "start": lo, "end": hi})]
        parts += [buckets.partials_of_readings(times, grid, bucket_seconds=bucket_seconds) for times, grid in _fetchall(
            "summary_readings", {"gpu_id": gpu_id, "start": lo, "end": hi, "tier": "raw" if tier == "raw" else "minute",
                                 **attribution.params()})]
    return parts


@functools.cache
def _held_days() -> hour_rollups.HeldDays:
    """This process's decoded hour rollups (telemetry/api/hour_rollups.py)."""
    from telemetry.api import hour_rollups

    return hour_rollups.HeldDays(settings.API_ROLLUP_CACHE_MB * 2**20)


def rollup_tier(bucket_seconds: int) -> str:
    """The coarsest rollup whose periods each fall in one bucket: buckets are aligned to the epoch,
    so an hour (or minute) lies in one bucket when the bucket is a whole number of them."""
    if bucket_seconds % 3600 == 0:
        return "hour"
    return "minute" if bucket_seconds % 60 == 0 else "raw"


# --- Packed history ---


class PackedHour(NamedTuple):
    hour: datetime
    readings: int
    samples: int


def gpu_packed_hours(*, gpu_id: int, limit: int) -> list[PackedHour]:
    """The device's newest `limit` packed hours (telemetry/history/), newest first."""
    return [PackedHour(*row) for row in _fetchall("packed_hours", {"gpu_id": gpu_id, "limit": limit})]


# --- Latest value of each metric ---


class MetricValue(NamedTuple):
    metric: str
    timestamp: datetime
    value: float


def gpu_latest_values(*, gpu_id: int) -> list[MetricValue]:
    """The newest sample of each metric the device reported, by metric name: whichever metrics those are."""
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
