"""The collector's service: store a batch idempotently, trim each GPU to its newest N samples.

Two write paths store exactly the same rows:
- `copy` (PostgreSQL): COPY the batch into a temporary staging table, then one ordered
  `INSERT … SELECT … ON CONFLICT DO NOTHING`. Ordering the insert keeps two workers that got the
  same batch (a redelivery) from deadlocking.
- `orm` (any database Django supports, the embedded SQLite default): `bulk_create` with
  `ignore_conflicts`.
GPU rows are locked only at the end of the transaction, in id order, so concurrent workers
serialise on nothing but the short per-GPU bookkeeping.
"""
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from django.db import connection, transaction
from django.db.models import Count, Max, Min, OuterRef, Subquery
from django.db.models.functions import Coalesce

from telemetry.ingest.batch import NO_LABELS, Batch, GpuInfo, Labels
from telemetry.models import Gpu, IngestCounter, LabelSet, Metric, Sample

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
Writer = Literal["copy", "orm"]

# Counter names, shared with the API's /metrics.
SAMPLES_STORED = "samples_stored"
SAMPLES_DUPLICATE = "samples_duplicate"
ROWS_REJECTED = "rows_rejected"
BATCHES_DEAD_LETTERED = "batches_dead_lettered"


@dataclass(frozen=True)
class PersistResult:
    received: int
    stored: int
    duplicates: int
    trimmed: int


def to_datetime(timestamp_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=timestamp_us)


def label_digest(labels: Labels) -> str:
    canonical = json.dumps([labels.container, labels.pod, labels.namespace, list(labels.extra)], separators=(",", ":"))
    return hashlib.md5(canonical.encode(), usedforsecurity=False).hexdigest()


def default_writer() -> Writer:
    return "copy" if connection.vendor == "postgresql" else "orm"


def samples_persist(*, batch: Batch, max_per_gpu: int, writer: Writer | None = None) -> PersistResult:
    """Store a batch: upsert its GPUs, insert its samples (duplicates ignored), trim touched GPUs."""
    if not len(batch):
        counters_add({ROWS_REJECTED: batch.rejected})
        return PersistResult(0, 0, 0, 0)
    writer = writer or default_writer()
    if writer == "copy":
        stored, trimmed = _persist_copy(batch, max_per_gpu)
    else:
        stored, trimmed = _persist_orm(batch, max_per_gpu)
    result = PersistResult(len(batch), stored, len(batch) - stored, trimmed)
    counters_add({SAMPLES_STORED: result.stored, SAMPLES_DUPLICATE: result.duplicates, ROWS_REJECTED: batch.rejected})
    return result


def counters_add(deltas: dict[str, int]) -> None:
    """Add to the shared counters in their own short transaction (never inside the batch's)."""
    rows = sorted((name, delta) for name, delta in deltas.items() if delta)
    if not rows:
        return
    table = connection.ops.quote_name(IngestCounter._meta.db_table)
    placeholders = ", ".join(["(%s, %s)"] * len(rows))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (name, value) VALUES {placeholders} "
            f"ON CONFLICT (name) DO UPDATE SET value = {table}.value + excluded.value",
            [item for row in rows for item in row],
        )


# --- Reference tables (GPUs, metrics, label sets) ---


_GPU_ATTRIBUTES = ("hostname", "index", "device", "model_name")


def _gpus_known(uuids: list[str]) -> dict[str, tuple]:
    """uuid → (id, hostname, index, device, model_name) of the GPUs already stored."""
    if connection.vendor == "postgresql":
        # One array parameter instead of thousands of IN placeholders (a fleet batch names 8,000 GPUs).
        with connection.cursor() as cursor:
            cursor.execute(
                'SELECT uuid, id, hostname, "index", device, model_name FROM telemetry_gpu WHERE uuid = ANY(%s)', [uuids]
            )
            return {row[0]: row[1:] for row in cursor.fetchall()}
    return {row[0]: row[1:] for row in Gpu.objects.filter(uuid__in=uuids).values_list("uuid", "id", *_GPU_ATTRIBUTES)}


def _gpus_upsert(gpus: list[GpuInfo], placeholder_time: datetime) -> list[int]:
    """Database ids of the batch's GPUs, in batch order; new GPUs are created, moved ones updated.

    A new GPU starts with no samples and `placeholder_time` as first and last seen; storing its
    samples replaces both (see `sample_count = 0` in the bookkeeping).
    """
    by_uuid = {gpu.uuid: gpu for gpu in gpus}
    known = _gpus_known(list(by_uuid))
    new_gpus, moved = [], []
    for uuid, info in sorted(by_uuid.items()):
        row = known.get(uuid)
        attributes = (info.hostname, info.index, info.device, info.model_name)
        if row is None:
            new_gpus.append(Gpu(uuid=uuid, **dict(zip(_GPU_ATTRIBUTES, attributes)),
                                first_seen=placeholder_time, last_seen=placeholder_time))
        elif row[1:] != attributes:
            moved.append(Gpu(id=row[0], uuid=uuid, **dict(zip(_GPU_ATTRIBUTES, attributes))))
    if moved:
        Gpu.objects.bulk_update(moved, list(_GPU_ATTRIBUTES))
        logger.info("GPU attributes changed for %d GPU(s)", len(moved))
    ids = {uuid: row[0] for uuid, row in known.items()}
    if new_gpus:
        Gpu.objects.bulk_create(new_gpus, ignore_conflicts=True)
        ids = dict(Gpu.objects.filter(uuid__in=by_uuid).values_list("uuid", "id"))
    return [ids[gpu.uuid] for gpu in gpus]


def _metrics_upsert(names: list[str]) -> list[int]:
    ids = dict(Metric.objects.filter(name__in=names).values_list("name", "id"))
    missing = sorted(set(names) - set(ids))
    if missing:
        Metric.objects.bulk_create([Metric(name=name) for name in missing], ignore_conflicts=True)
        ids = dict(Metric.objects.filter(name__in=names).values_list("name", "id"))
    return [ids[name] for name in names]


def _label_sets_upsert(label_sets: list[Labels]) -> list[int]:
    digests = [label_digest(labels) for labels in label_sets]
    ids = dict(LabelSet.objects.filter(digest__in=digests).values_list("digest", "id"))
    missing = sorted((d, lab) for d, lab in zip(digests, label_sets) if d not in ids)
    if missing:
        LabelSet.objects.bulk_create(
            [LabelSet(digest=d, container=lab.container, pod=lab.pod, namespace=lab.namespace, labels=dict(lab.extra))
             for d, lab in missing],
            ignore_conflicts=True,
        )
        ids = dict(LabelSet.objects.filter(digest__in=digests).values_list("digest", "id"))
    return [ids[d] for d in digests]


def _reference_ids(batch: Batch) -> tuple[list[int], list[int], list[int]]:
    # Committed before the samples are written, in a short transaction of its own: a GPU row is
    # locked here only when it is created or moved, never while a large batch is written.
    with transaction.atomic():
        gpu_ids = _gpus_upsert(batch.gpus, to_datetime(min(batch.ts)))
        metric_ids = _metrics_upsert(batch.metrics)
        label_ids = _label_sets_upsert(batch.labels) if batch.labels else []
    return gpu_ids, metric_ids, label_ids


# --- PostgreSQL: COPY into staging, one ordered INSERT … ON CONFLICT DO NOTHING ---

_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS sample_staging "
    "(gpu_id integer, metric_id smallint, ts_us bigint, value double precision, label_set_id integer) "
    "ON COMMIT DELETE ROWS"
)
# One statement: insert the new samples (ordered, so two workers holding the same batch cannot
# deadlock), then update the bookkeeping of every GPU that got samples, and return only what the
# caller needs: how many were stored, and the GPUs now over the per-GPU limit with their excess.
# GPU rows are locked by the UPDATE, the statement's last step, until the commit that follows;
# should two workers ever deadlock on them, the loser rolls back and its batch is retried.
_STORE_FROM_STAGING = """
WITH inserted AS (
    INSERT INTO telemetry_sample (gpu_id, metric_id, "timestamp", value, label_set_id)
    SELECT gpu_id, metric_id, timestamptz 'epoch' + ts_us * interval '1 microsecond', value, label_set_id
    FROM sample_staging
    ORDER BY gpu_id, ts_us, metric_id
    ON CONFLICT DO NOTHING
    RETURNING gpu_id, "timestamp"
), per_gpu AS (
    SELECT gpu_id, count(*) AS n, min("timestamp") AS oldest, max("timestamp") AS newest
    FROM inserted GROUP BY gpu_id ORDER BY gpu_id
), counted AS (
    UPDATE telemetry_gpu AS g
    SET sample_count = g.sample_count + c.n,
        first_seen = CASE WHEN g.sample_count = 0 THEN c.oldest ELSE LEAST(g.first_seen, c.oldest) END,
        last_seen = CASE WHEN g.sample_count = 0 THEN c.newest ELSE GREATEST(g.last_seen, c.newest) END
    FROM per_gpu AS c
    WHERE g.id = c.gpu_id
    RETURNING g.id, g.sample_count, c.n
)
SELECT coalesce(sum(n), 0),
       coalesce(array_agg(id ORDER BY id) FILTER (WHERE %(limit)s > 0 AND sample_count > %(limit)s), '{}'),
       coalesce(array_agg(sample_count - %(limit)s ORDER BY id) FILTER (WHERE %(limit)s > 0 AND sample_count > %(limit)s), '{}')
FROM counted
"""
_LOCK_GPUS = "SELECT 1 FROM telemetry_gpu WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
# Deletes each GPU's `excess` oldest samples: found by walking the (gpu, timestamp, metric) index
# from its old end, deleted by their row addresses (a TID scan), so the cost is the number
# deleted, never a scan of the table. The GPU rows are already locked by this transaction.
_TRIM_OLDEST = """
WITH gone AS (
    DELETE FROM telemetry_sample
    WHERE ctid = ANY(ARRAY(
        SELECT oldest.ctid
        FROM unnest(%s::integer[], %s::bigint[]) AS c(id, excess)
        CROSS JOIN LATERAL (
            SELECT s.ctid FROM telemetry_sample AS s
            WHERE s.gpu_id = c.id ORDER BY s."timestamp", s.metric_id LIMIT c.excess
        ) AS oldest
    ))
    RETURNING gpu_id
), removed AS (
    SELECT gpu_id, count(*) AS n FROM gone GROUP BY gpu_id
)
UPDATE telemetry_gpu AS g SET sample_count = g.sample_count - removed.n
FROM removed WHERE g.id = removed.gpu_id
RETURNING removed.n
"""


def _copy_text(batch: Batch, gpu_ids: list[int], metric_ids: list[int], label_ids: list[int]) -> str:
    labels = [str(i) for i in label_ids]
    return "".join(
        f"{gpu_ids[g]}\t{metric_ids[m]}\t{t}\t{v!r}\t{labels[lab] if lab != NO_LABELS else chr(92) + 'N'}\n"
        for g, m, lab, t, v in zip(batch.gpu, batch.metric, batch.label, batch.ts, batch.value)
    )


def _persist_copy(batch: Batch, max_per_gpu: int) -> tuple[int, int]:
    gpu_ids, metric_ids, label_ids = _reference_ids(batch)
    rows = _copy_text(batch, gpu_ids, metric_ids, label_ids)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_STAGING_DDL)
        with cursor.copy("COPY sample_staging (gpu_id, metric_id, ts_us, value, label_set_id) FROM STDIN") as copy:
            copy.write(rows)
        cursor.execute(_STORE_FROM_STAGING, {"limit": max_per_gpu})
        stored, over_ids, excesses = cursor.fetchone()
        trimmed = _trim_copy(cursor, list(zip(over_ids, excesses)))
    return stored, trimmed


def _trim_copy(cursor, over: list[tuple[int, int]]) -> int:
    """Delete each (GPU, excess)'s `excess` oldest samples."""
    if not over:
        return 0
    cursor.execute(_TRIM_OLDEST, [[gpu_id for gpu_id, _ in over], [excess for _, excess in over]])
    return sum(row[0] for row in cursor.fetchall())


# --- Portable ORM path (SQLite and any other backend) ---


def _persist_orm(batch: Batch, max_per_gpu: int) -> tuple[int, int]:
    gpu_ids, metric_ids, label_ids = _reference_ids(batch)
    touched = sorted(set(gpu_ids))
    with transaction.atomic():
        before = _sample_counts(touched)
        Sample.objects.bulk_create(
            (
                Sample(
                    gpu_id=gpu_ids[g], metric_id=metric_ids[m], timestamp=to_datetime(t), value=v,
                    label_set_id=label_ids[lab] if lab != NO_LABELS else None,
                )
                for g, m, lab, t, v in zip(batch.gpu, batch.metric, batch.label, batch.ts, batch.value)
            ),
            ignore_conflicts=True,
            batch_size=500,
        )
        after = _sample_counts(touched)
        stored = after - before
        for gpu in Gpu.objects.select_for_update().filter(id__in=stored).order_by("id"):
            span = Sample.objects.filter(gpu=gpu).aggregate(oldest=Min("timestamp"), newest=Max("timestamp"))
            had_samples = gpu.sample_count > 0
            gpu.sample_count += stored[gpu.id]
            gpu.first_seen = min(gpu.first_seen, span["oldest"]) if had_samples else span["oldest"]
            gpu.last_seen = max(gpu.last_seen, span["newest"]) if had_samples else span["newest"]
            gpu.save(update_fields=["sample_count", "first_seen", "last_seen"])
        trimmed = _trim_orm({gpu_id: count for gpu_id, count in Gpu.objects.filter(id__in=touched).values_list("id", "sample_count")}, max_per_gpu)
    return sum(stored.values()), trimmed


def _sample_counts(gpu_ids: list[int]) -> Counter:
    rows = Sample.objects.filter(gpu_id__in=gpu_ids).values("gpu_id").annotate(n=Count("id")).values_list("gpu_id", "n")
    return Counter(dict(rows))


def _trim_orm(counts: dict[int, int], max_per_gpu: int) -> int:
    trimmed = 0
    for gpu_id, count in sorted(counts.items()):
        excess = count - max_per_gpu
        if not max_per_gpu or excess <= 0:
            continue
        oldest = list(
            Sample.objects.filter(gpu_id=gpu_id).order_by("timestamp", "metric_id").values_list("id", flat=True)[:excess]
        )
        deleted, _ = Sample.objects.filter(id__in=oldest).delete()
        Gpu.objects.filter(id=gpu_id).update(sample_count=count - deleted)
        trimmed += deleted
    return trimmed


# --- Retention (manage.py trim) ---


def gpus_recount() -> None:
    """Set every GPU's sample_count from the table itself (after deletes outside the collector)."""
    per_gpu = Sample.objects.filter(gpu=OuterRef("pk")).order_by().values("gpu").annotate(n=Count("id")).values("n")
    Gpu.objects.update(sample_count=Coalesce(Subquery(per_gpu), 0))


def samples_trim(*, max_per_gpu: int) -> int:
    """Keep each GPU's newest `max_per_gpu` samples; returns how many were deleted."""
    with transaction.atomic():
        gpus_recount()
        counts = dict(Gpu.objects.filter(sample_count__gt=max_per_gpu).values_list("id", "sample_count"))
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(_LOCK_GPUS, [sorted(counts)])
                return _trim_copy(cursor, [(gpu_id, count - max_per_gpu) for gpu_id, count in sorted(counts.items())])
        return _trim_orm(counts, max_per_gpu)


def samples_delete_older_than(*, cutoff: datetime) -> int:
    """Delete every sample older than `cutoff`; returns how many were deleted."""
    with transaction.atomic():
        deleted, _ = Sample.objects.filter(timestamp__lt=cutoff).delete()
        gpus_recount()
    return deleted
