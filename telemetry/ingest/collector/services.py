"""The collector's service: store batches idempotently, trim each device to its newest N samples.

A worker stores a group of batches (many streamers' small ones) as one: one transaction, one
COPY, one insert statement that also sets each device's attributes and bookkeeping, and the
counters, so a group costs about as many round trips as one batch. Ids of devices, metrics and
label sets are remembered per process (`References`); only keys not seen before are looked up.

A device is a whole GPU or one MIG GPU instance of it, stored as a Gpu row of its own keyed by
(uuid, mig_instance): readings, sample counts and trimming are per device.

Samples are stored as readings, one row per (GPU, time) with the values in an array by metric
id. A reading that arrives in parts (a time step's metrics split between batches) is merged
into its row; a sample already stored is never overwritten, so a replay stores nothing.

The write path: COPY the group's readings into a temporary staging table, then one ordered
`INSERT … SELECT … ON CONFLICT DO NOTHING` that also trims and updates each GPU row once; only
when some readings already had a row, one ordered merge of those; and for GPUs still over the
limit, the exact trim pass. Ordering keeps two workers that got the same batch (a redelivery)
from deadlocking. GPU rows are locked last, by the statement that writes them, so concurrent
workers serialise on nothing but the short per-GPU bookkeeping and trim.

Each statement is whole in sql/<name>.sql; the trim that the insert statement and the exact pass
share is a pair of SQL functions (migration 0006).
"""
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING

from django.db import IntegrityError, connection, transaction

from telemetry.history import packing, partitions
from telemetry.ingest.wire import NO_LABELS, Batch, GpuInfo, Labels
from telemetry.models import Gpu, IngestCounter, LabelSet, Metric
from telemetry.sql import sql_statement
from telemetry.times import to_datetime, to_microseconds

if TYPE_CHECKING:  # numpy's module: only backfill loads it
    from telemetry.ingest.columns import ColumnBatch, StagedReadings

logger = logging.getLogger(__name__)


def _sql(name: str) -> str:
    return sql_statement(__file__, name)


_COUNTERS_ADD = _sql("counters_add")
_GPUS_KNOWN = _sql("gpus_known")
_GPUS_CREATE = _sql("gpus_create")
_STAGING_CREATE = _sql("staging_create")
_STAGING_CLEAR = _sql("staging_clear")
_STAGING_COPY = _sql("staging_copy")
_STAGING_COPY_BINARY = _sql("staging_copy_binary")
_READINGS_INSERT = _sql("readings_insert")
_READINGS_MERGE = _sql("readings_merge")
_GPUS_LOCK = _sql("gpus_lock")
_TRIM_OLDEST = _sql("trim_oldest")
_TRIM_PACKED = _sql("trim_packed")
_GPUS_RECOUNT = _sql("gpus_recount")
_READINGS_DELETE_OLDER = _sql("readings_delete_older")
_STAGED_DEVICES_LOCK = _sql("staged_devices_lock")
_STAGED_HOURS_PACKED = _sql("staged_hours_packed")


@dataclass(frozen=True)
class PersistResult:
    received: int
    stored: int
    duplicates: int
    trimmed: int


def label_digest(labels: Labels) -> str:
    canonical = json.dumps([labels.container, labels.pod, labels.namespace, list(labels.extra)], separators=(",", ":"))
    return hashlib.md5(canonical.encode(), usedforsecurity=False).hexdigest()


def samples_persist(*, batch: "Batch | ColumnBatch", max_per_gpu: int) -> PersistResult:
    """Store one batch (see `batches_persist`); a ColumnBatch (backfill's) is written by one binary COPY."""
    if isinstance(batch, Batch):
        return batches_persist([batch], max_per_gpu=max_per_gpu)
    return _persist(lambda: column_readings_of(batch), len(batch), batch.rejected, max_per_gpu)


def batches_persist(batches: list[Batch], *, max_per_gpu: int) -> PersistResult:
    """Store batches as one: upsert their devices, insert their samples (duplicates ignored), trim
    touched devices and add to the counters, all in one transaction."""
    received = sum(map(len, batches))
    rejected = sum(batch.rejected for batch in batches)
    return _persist(lambda: readings_of(batches), received, rejected, max_per_gpu)


def _persist(group_of: Callable[[], "Group"], received: int, rejected: int, max_per_gpu: int) -> PersistResult:
    if not received:
        counters_add({IngestCounter.ROWS_REJECTED: rejected})
        return PersistResult(0, 0, 0, 0)
    try:
        stored, trimmed = _group_store(group_of, received, rejected, max_per_gpu)
    except ReferencesGone as exc:
        logger.warning("%s; looking every reference up again", exc)
        references.clear()
        stored, trimmed = _group_store(group_of, received, rejected, max_per_gpu)
    except IntegrityError as exc:
        if not _partition_missing(exc):
            raise
        # A day this worker remembered was dropped since (retention) and a late sample needs it again.
        logger.warning("a remembered partition is gone (%s); creating it again", exc)
        partitions.known.clear()
        stored, trimmed = _group_store(group_of, received, rejected, max_per_gpu)
    return PersistResult(received, stored, received - stored, trimmed)


def _group_store(group_of: Callable[[], "Group"], received: int, rejected: int, max_per_gpu: int) -> tuple[int, int]:
    group = group_of()
    with transaction.atomic(), connection.cursor() as cursor:
        stored, trimmed = _readings_store(cursor, group, max_per_gpu)
        _counters_add(cursor, {IngestCounter.SAMPLES_STORED: stored, IngestCounter.SAMPLES_DUPLICATE: received - stored,
                               IngestCounter.ROWS_REJECTED: rejected})
    return stored, trimmed


def _partition_missing(exc: IntegrityError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == "23514" and "no partition" in str(exc)


def counters_add(deltas: dict[str, int]) -> None:
    """Add to the shared counters in a short transaction of their own (a batch adds in its own)."""
    with transaction.atomic(), connection.cursor() as cursor:
        _counters_add(cursor, deltas)


def _counters_add(cursor, deltas: dict[str, int]) -> None:
    rows = sorted((name, delta) for name, delta in deltas.items() if delta)
    if rows:
        cursor.execute(_COUNTERS_ADD, {"names": [name for name, _ in rows], "deltas": [delta for _, delta in rows]})


# --- Reference tables (GPUs, metrics, label sets), remembered by each worker ---


DeviceKey = tuple[str, int | None]


class References:
    """The ids of the devices, metrics and label sets this process has seen committed.

    Rules that keep it correct with many workers:
    - an id enters only once the transaction that read or created it has committed, so a
      rolled-back creation is never remembered;
    - a key not remembered is looked up, and created if missing, with ON CONFLICT DO NOTHING
      and a second look-up, so a row another worker created is found, never duplicated;
    - reference rows are never deleted or renumbered by the product (the admin is read-only,
      retention deletes readings only); should some be gone all the same (tables emptied by
      hand), the insert statement counts the ids it was given that have no row, and the write
      rolls back, forgets everything (`clear()`) and runs again;
    - a device's attributes (host, index, …) are not remembered: each write sets them.
    """

    MAX_ENTRIES = 200_000  # per table; past it the table's entries are forgotten (pods come and go)

    def __init__(self) -> None:
        self.devices: dict[DeviceKey, int] = {}
        self.metrics: dict[str, int] = {}
        self.label_sets: dict[Labels, int] = {}

    def clear(self) -> None:
        for table in (self.devices, self.metrics, self.label_sets):
            table.clear()

    def remember(self, devices: dict[DeviceKey, int], metrics: dict[str, int], label_sets: dict[Labels, int]) -> None:
        for table, found in ((self.devices, devices), (self.metrics, metrics), (self.label_sets, label_sets)):
            if len(table) + len(found) > self.MAX_ENTRIES:
                table.clear()
            table.update(found)


references = References()


def int_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of integers, passed as one text parameter.

    psycopg adapts a list parameter element by element in Python; a literal is one string.
    """
    return "{" + ",".join(map(str, map(int, values))) + "}"


def nullable_int_array(values: Iterable[int | None]) -> str:
    """`int_array` with None as NULL (a whole GPU's MIG instance)."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of strings (each quoted, `\\` and `"` escaped), as `int_array`."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def device_order(key: DeviceKey) -> tuple[str, int]:
    """A sort key of device keys: by UUID, a whole GPU (no instance) before its MIG instances."""
    uuid, instance = key
    return uuid, -1 if instance is None else instance


ReferenceIds = tuple[dict[DeviceKey, int], dict[str, int], dict[Labels, int]]


def _reference_ids(batches: list[Batch]) -> ReferenceIds:
    """The ids of every device, metric and label set of `batches`: remembered ones, the rest looked
    up or created in a short transaction of its own, committed before the samples are written (a
    device row is locked here only when it is created, never while a group is written)."""
    gpus = {(gpu.uuid, gpu.mig_instance): gpu for batch in batches for gpu in batch.gpus}
    devices = {key: references.devices[key] for key in gpus if key in references.devices}
    metrics = {name: references.metrics[name] for batch in batches for name in batch.metrics if name in references.metrics}
    label_sets = {labels: references.label_sets[labels] for batch in batches for labels in batch.labels
                  if labels in references.label_sets}
    new_devices = [gpu for key, gpu in gpus.items() if key not in devices]
    new_metrics = sorted({name for batch in batches for name in batch.metrics} - metrics.keys())
    new_labels = list({labels for batch in batches for labels in batch.labels} - label_sets.keys())
    if new_devices or new_metrics or new_labels:
        with transaction.atomic():
            placeholder = to_datetime(min(min(batch.ts) for batch in batches if batch.ts))
            found = (_devices_find(new_devices, placeholder), _metrics_find(new_metrics), _label_sets_find(new_labels))
            transaction.on_commit(lambda: references.remember(*found))
        for known, more in zip((devices, metrics, label_sets), found):
            known.update(more)
    return devices, metrics, label_sets


def _devices_known(keys: list[DeviceKey]) -> dict[DeviceKey, int]:
    with connection.cursor() as cursor:
        cursor.execute(_GPUS_KNOWN, {
            "uuids": text_array(uuid for uuid, _ in keys), "instances": nullable_int_array(i for _, i in keys),
        })
        return {(uuid, instance): gpu_id for uuid, instance, gpu_id in cursor.fetchall()}


def _devices_find(gpus: list[GpuInfo], placeholder_time: datetime) -> dict[DeviceKey, int]:
    """Ids of these devices, creating those not stored yet.

    A device is a whole GPU or one MIG instance of it, keyed by (uuid, mig_instance): the instances
    of one GPU share its UUID. A new device starts with no samples and `placeholder_time` as first
    and last seen; storing its samples replaces both (see `sample_count = 0` in readings_insert.sql).
    """
    if not gpus:
        return {}
    ids = _devices_known([(gpu.uuid, gpu.mig_instance) for gpu in gpus])
    missing = sorted((gpu for gpu in gpus if (gpu.uuid, gpu.mig_instance) not in ids),
                     key=lambda gpu: device_order((gpu.uuid, gpu.mig_instance)))
    if missing:
        _devices_create(missing, placeholder_time)
        ids.update(_devices_known([(gpu.uuid, gpu.mig_instance) for gpu in missing]))
    return ids


def _devices_create(gpus: list[GpuInfo], placeholder_time: datetime) -> None:
    """Store new devices (one another worker created meanwhile is left as it is).

    One INSERT from array literals: the ORM's bulk_create spends its time building model instances,
    a large part of a backfill's first batches.
    """
    with connection.cursor() as cursor:
        cursor.execute(_GPUS_CREATE, {
            "time": placeholder_time, "uuid": text_array(g.uuid for g in gpus),
            "instance": nullable_int_array(g.mig_instance for g in gpus),
            "profile": text_array(g.mig_profile for g in gpus),
            "hostname": text_array(g.hostname for g in gpus), "index": int_array(g.index for g in gpus),
            "device": text_array(g.device for g in gpus), "model": text_array(g.model_name for g in gpus),
        })


def _metrics_find(names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    ids = dict(Metric.objects.filter(name__in=names).values_list("name", "id"))
    missing = sorted(set(names) - set(ids))
    if missing:
        Metric.objects.bulk_create([Metric(name=name) for name in missing], ignore_conflicts=True)
        ids = dict(Metric.objects.filter(name__in=names).values_list("name", "id"))
    return ids


def _label_sets_find(label_sets: list[Labels]) -> dict[Labels, int]:
    if not label_sets:
        return {}
    by_digest = {label_digest(labels): labels for labels in label_sets}
    ids = dict(LabelSet.objects.filter(digest__in=by_digest).values_list("digest", "id"))
    missing = sorted((d, lab) for d, lab in by_digest.items() if d not in ids)
    if missing:
        LabelSet.objects.bulk_create(
            [LabelSet(digest=d, container=lab.container, pod=lab.pod, namespace=lab.namespace, labels=dict(lab.extra))
             for d, lab in missing],
            ignore_conflicts=True,
        )
        ids = dict(LabelSet.objects.filter(digest__in=by_digest).values_list("digest", "id"))
    return {by_digest[digest]: label_id for digest, label_id in ids.items()}


# --- A batch as rows: one per (GPU, time), values by metric id ---

# (GPU id, time in µs) → (label set id, values); values[i] is metric id i + 1's value or None.
ReadingRows = dict[tuple[int, int], tuple[int | None, list[float | None]]]
_NULL = "\\N"


@dataclass
class Group:
    """Batches as the rows to store: readings, each device's attributes as its last batch gives
    them, and the metric and label set ids the readings refer to."""
    rows: "ReadingRows | StagedReadings"  # StagedReadings: a ColumnBatch's, iterated as (GPU id, time) too
    attributes: dict[int, GpuInfo]
    metric_ids: set[int]
    label_set_ids: set[int]
    oldest_us: int  # the oldest reading's time


class ReferencesGone(RuntimeError):
    """Remembered ids of devices, metrics or label sets whose rows are no longer stored."""


def readings_of(batches: list[Batch]) -> Group:
    devices, metrics, label_sets = _reference_ids(batches)
    group = Group({}, {}, set(metrics.values()), set(label_sets.values()),
                  min((min(batch.ts) for batch in batches if batch.ts), default=0))
    for batch in batches:
        gpu_ids = [devices[gpu.uuid, gpu.mig_instance] for gpu in batch.gpus]
        readings_by_key(batch, gpu_ids, [metrics[name] for name in batch.metrics],
                        [label_sets[labels] for labels in batch.labels], group.rows)
        group.attributes.update(zip(gpu_ids, batch.gpus))
    return group


def column_readings_of(batch: "ColumnBatch") -> Group:
    """A ColumnBatch's readings as staging rows (one per (device, time) already), with their ids."""
    devices, metrics, label_sets = _reference_ids([batch.tables()])
    gpu_ids = [devices[gpu.uuid, gpu.mig_instance] for gpu in batch.gpus]
    metric_ids = [metrics[name] for name in batch.metrics]
    label_ids = [label_sets[labels] for labels in batch.labels]
    return Group(batch.staged(gpu_ids, metric_ids, label_ids), dict(zip(gpu_ids, batch.gpus)), set(metric_ids),
                 set(label_ids), int(batch.ts.min()) if len(batch.ts) else 0)


def readings_by_key(batch: Batch, gpu_ids: list[int], metric_ids: list[int], label_ids: list[int],
                    rows: ReadingRows | None = None) -> ReadingRows:
    """The batch's readings keyed by (GPU id, time), added to `rows`: parts of one reading are
    joined, and of two values of one sample the first is kept, as the table keeps the first ever stored."""
    rows = {} if rows is None else rows
    positions = [metric_id - 1 for metric_id in metric_ids]
    # Readings mostly list the same metrics in the same order: for each such list, one itemgetter
    # (in C) puts a reading's values in metric-id order, instead of a Python loop per sample.
    orders: dict[tuple[int, ...], itemgetter | None] = {}
    for g, ts, lab, metrics, values in batch.readings():
        key = (gpu_ids[g], ts)
        row = rows.get(key)
        if row is None:
            layout = tuple(metrics)
            if layout not in orders:
                orders[layout] = _slot_order(layout, positions)
            order = orders[layout]
            if order is not None:
                rows[key] = (label_ids[lab] if lab != NO_LABELS else None, list(order(values)))
                continue
            row = rows[key] = (label_ids[lab] if lab != NO_LABELS else None, [])
        slots = row[1]
        for m, value in zip(metrics, values):
            i = positions[m]
            if i >= len(slots):
                slots.extend([None] * (i + 1 - len(slots)))
            if slots[i] is None:
                slots[i] = value
    return rows


def _slot_order(metrics: tuple[int, ...], positions: list[int]) -> itemgetter | None:
    """A getter of a reading's values in slot order, when its metrics fill slots 0…n-1 once each."""
    slots = [positions[m] for m in metrics]
    if sorted(slots) != list(range(len(slots))):
        return None
    by_slot = [0] * len(slots)
    for j, slot in enumerate(slots):
        by_slot[slot] = j
    # itemgetter of one index gives the value itself, not a tuple: a slice keeps the result a sequence.
    return itemgetter(*by_slot) if len(by_slot) > 1 else itemgetter(slice(None))


def values_count(values: list[float | None]) -> int:
    return sum(value is not None for value in values)


# --- COPY into staging, one ordered INSERT … ON CONFLICT DO NOTHING, merges if any, exact trim ---


def _copy_text(rows: ReadingRows) -> str:
    # A list's str() is its values' repr, joined in C: an array literal once None reads NULL.
    return "".join(
        f"{gpu_id}\t{ts}\t{_NULL if label is None else label}\t"
        f"{{{str(values)[1:-1].replace('None', 'NULL')}}}\n"
        for (gpu_id, ts), (label, values) in rows.items()
    )


def _readings_store(cursor, group: Group, max_per_gpu: int) -> tuple[int, int]:
    """Stage the group's rows, insert the new ones (setting each device's attributes), merge parts
    into rows already stored, trim; returns (samples stored, samples trimmed)."""
    rows = group.rows
    partitions.partitions_ensure(cursor, partitions.READINGS, partitions.days_of(ts for _, ts in rows))
    cursor.execute(_STAGING_CREATE)
    cursor.execute(_STAGING_CLEAR)
    if isinstance(rows, dict):
        with cursor.copy(_STAGING_COPY) as copy:
            copy.write(_copy_text(rows))
    else:
        with cursor.copy(_STAGING_COPY_BINARY) as copy:
            copy.write(rows.copy_binary())
    _late_hours_unpack(cursor, group.oldest_us)
    ids = sorted(group.attributes)
    devices = [group.attributes[gpu_id] for gpu_id in ids]
    cursor.execute(_READINGS_INSERT, {
        "limit": max_per_gpu, "ids": int_array(ids), "hostname": text_array(d.hostname for d in devices),
        "index": int_array(d.index for d in devices), "device": text_array(d.device for d in devices),
        "model": text_array(d.model_name for d in devices), "profile": text_array(d.mig_profile for d in devices),
        "metric_ids": int_array(sorted(group.metric_ids)), "label_set_ids": int_array(sorted(group.label_set_ids)),
    })
    stored, inserted, trimmed, over_ids, excesses, gone = cursor.fetchone()
    if gone:
        raise ReferencesGone(f"{gone} device, metric or label set row(s) this worker remembered are gone")
    over = dict(zip(over_ids, excesses))
    if inserted < len(rows):
        cursor.execute(_READINGS_MERGE, {"limit": max_per_gpu})
        merged, _, _, over_ids, excesses = cursor.fetchone()
        stored += merged
        over.update(zip(over_ids, excesses))  # the later count of a GPU both statements touched
    narrowest = (_narrowest_readings(rows) if isinstance(rows, dict) else rows.narrowest()) if over else None
    trimmed += _trim_exact(cursor, sorted(over.items()), narrowest)
    return stored, trimmed


def _late_hours_unpack(cursor, oldest_us: int) -> None:
    """Unpack the packed hours that staged readings fall in (a late sample's), under the devices'
    packing lock; a group whose readings are all too young to be in one skips the look."""
    horizon_us = to_microseconds(packing.packing_boundary() + packing.UNPACK_MARGIN)
    if oldest_us >= horizon_us:
        return
    cursor.execute(_STAGED_DEVICES_LOCK, {"namespace": packing.LOCK_NAMESPACE, "horizon": horizon_us})
    cursor.execute(_STAGED_HOURS_PACKED, {"horizon": horizon_us})
    ids, hours = cursor.fetchone()
    if ids:
        packing.hours_unpack(cursor, list(zip(ids, hours)))


def _narrowest_readings(rows: ReadingRows) -> dict[int, int]:
    """GPU id → samples in its narrowest reading of the batch."""
    widths: dict[int, int] = {}
    for (gpu_id, _), (_, values) in rows.items():
        width = values_count(values)
        if width < widths.get(gpu_id, width + 1):
            widths[gpu_id] = width
    return widths


def _trim_exact(cursor, over: list[tuple[int, int]], widths: dict[int, int] | None = None) -> int:
    """The exact pass: remove each (GPU, excess)'s `excess` oldest samples, the GPU rows locked.

    After a batch it runs only for the GPUs that the insert statement's own trim left over the
    limit: another worker changed them meanwhile, the batch is older than what is stored, a
    merge added samples, or the GPU has packed hours, its oldest samples (`_trim_packed`). Reading
    rows walked per GPU cost most of the trim, so the first pass reads only as many as `widths`
    (samples per reading, as in the batch just stored) says are needed; a GPU whose old readings
    are narrower than that gets another pass for the rest.
    """
    trimmed, over = _trim_packed(cursor, over) if over else (0, over)
    pending = dict(over)
    fetch = {gpu_id: -(-excess // max((widths or {}).get(gpu_id, 1), 1)) for gpu_id, excess in over}
    while pending:
        ids = sorted(pending)
        cursor.execute(_TRIM_OLDEST, {
            "ids": int_array(ids), "excesses": int_array(pending[i] for i in ids), "rows_read": int_array(fetch[i] for i in ids),
        })
        removed = dict(cursor.fetchall())
        trimmed += sum(removed.values())
        # Each reading holds at least one sample, so `excess` rows are always enough for the rest.
        pending = {i: pending[i] - removed[i] for i in ids if removed.get(i, 0) and pending[i] > removed[i]}
        fetch = pending
    return trimmed


def _trim_packed(cursor, over: list[tuple[int, int]]) -> tuple[int, list[tuple[int, int]]]:
    """Trim the packed hours that hold each GPU's oldest samples: those the excess covers whole are
    deleted, and the next one, when the excess takes part of it, is unpacked into readings for the
    reading trim. Returns (samples removed, the excesses left)."""
    cursor.execute(_TRIM_PACKED, {"ids": int_array(gpu_id for gpu_id, _ in over),
                                  "excesses": int_array(excess for _, excess in over)})
    walked = {gpu_id: (removed, next_hour) for gpu_id, removed, next_hour in cursor.fetchall()}
    left = [(gpu_id, excess - walked[gpu_id][0]) for gpu_id, excess in over if excess > walked[gpu_id][0]]
    partly = [(gpu_id, walked[gpu_id][1]) for gpu_id, _ in left if walked[gpu_id][1] is not None]
    if partly:
        packing.hours_unpack(cursor, partly)
    return sum(removed for removed, _ in walked.values()), left


# --- Retention (manage.py trim) ---


def gpus_recount() -> None:
    """Set every GPU's sample_count from the table itself (after deletes outside the collector)."""
    with connection.cursor() as cursor:
        cursor.execute(_GPUS_RECOUNT)


def samples_trim(*, max_per_gpu: int) -> int:
    """Keep each device's newest `max_per_gpu` samples (a whole GPU and each MIG instance of it
    apart); returns how many were deleted."""
    with transaction.atomic():
        gpus_recount()
        counts = dict(Gpu.objects.filter(sample_count__gt=max_per_gpu).values_list("id", "sample_count"))
        with connection.cursor() as cursor:
            cursor.execute(_GPUS_LOCK, {"ids": int_array(sorted(counts))})
            return _trim_exact(cursor, [(gpu_id, count - max_per_gpu) for gpu_id, count in sorted(counts.items())])


def samples_delete_older_than(*, cutoff: datetime) -> int:
    """Delete every sample older than `cutoff`: whole days' partitions dropped, the rest of the
    cutoff's day row by row; returns how many samples were deleted."""
    dropped = partitions.partitions_drop_before(partitions.READINGS, cutoff, forget=partitions.READINGS_FORGET)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_READINGS_DELETE_OLDER, {"cutoff": cutoff})
        return sum(dropped.values()) + cursor.fetchone()[0]
