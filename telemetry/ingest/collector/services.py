"""The collector's service: store a batch idempotently, trim each GPU to its newest N samples.

Samples are stored as readings, one row per (GPU, time) with the values in an array by metric
id. A reading that arrives in parts (a time step's metrics split between batches) is merged
into its row; a sample already stored is never overwritten, so a replay stores nothing.

Two write paths store exactly the same rows:
- `copy` (PostgreSQL): COPY the batch's readings into a temporary staging table, then one ordered
  `INSERT … SELECT … ON CONFLICT DO NOTHING` that also trims and updates each GPU row once;
  only when some readings already had a row, one ordered merge of those. Ordering keeps two
  workers that got the same batch (a redelivery) from deadlocking.
- `orm` (any database Django supports, the embedded SQLite default): the same in Python.
GPU rows are locked last, by the statement that writes them, so concurrent workers serialise on
nothing but the short per-GPU bookkeeping and trim.
"""
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Literal

from django.db import connection, transaction

from telemetry.ingest.wire import NO_LABELS, Batch, GpuInfo, Labels
from telemetry.models import Gpu, IngestCounter, LabelSet, Metric, Reading
from telemetry.times import to_datetime, to_microseconds

logger = logging.getLogger(__name__)

Writer = Literal["copy", "orm"]


@dataclass(frozen=True)
class PersistResult:
    received: int
    stored: int
    duplicates: int
    trimmed: int


def label_digest(labels: Labels) -> str:
    canonical = json.dumps([labels.container, labels.pod, labels.namespace, list(labels.extra)], separators=(",", ":"))
    return hashlib.md5(canonical.encode(), usedforsecurity=False).hexdigest()


def default_writer() -> Writer:
    return "copy" if connection.vendor == "postgresql" else "orm"


def samples_persist(*, batch: Batch, max_per_gpu: int, writer: Writer | None = None) -> PersistResult:
    """Store a batch: upsert its GPUs, insert its samples (duplicates ignored), trim touched GPUs."""
    if not len(batch):
        counters_add({IngestCounter.ROWS_REJECTED: batch.rejected})
        return PersistResult(0, 0, 0, 0)
    writer = writer or default_writer()
    if writer == "copy":
        stored, trimmed = _persist_copy(batch, max_per_gpu)
    else:
        stored, trimmed = _persist_orm(batch, max_per_gpu)
    result = PersistResult(len(batch), stored, len(batch) - stored, trimmed)
    counters_add({IngestCounter.SAMPLES_STORED: result.stored, IngestCounter.SAMPLES_DUPLICATE: result.duplicates, IngestCounter.ROWS_REJECTED: batch.rejected})
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


def int_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of integers, passed as one text parameter.

    psycopg adapts a list parameter element by element in Python: three lists of 2,000 GPU ids
    cost 4.2 ms a statement, the same arrays as literals 1 ms.
    """
    return "{" + ",".join(map(str, map(int, values))) + "}"


def text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of strings (each quoted, `\\` and `"` escaped), as `int_array`."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _gpus_known(uuids: list[str]) -> dict[str, tuple]:
    """uuid → (id, hostname, index, device, model_name) of the GPUs already stored."""
    if connection.vendor == "postgresql":
        # One array parameter instead of thousands of IN placeholders (a fleet batch names 8,000 GPUs).
        with connection.cursor() as cursor:
            cursor.execute(
                'SELECT uuid, id, hostname, "index", device, model_name FROM telemetry_gpu WHERE uuid = ANY(%s::text[])',
                [text_array(uuids)],
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
            new_gpus.append(info)
        elif row[1:] != attributes:
            moved.append(Gpu(id=row[0], uuid=uuid, **dict(zip(_GPU_ATTRIBUTES, attributes))))
    if moved:
        Gpu.objects.bulk_update(moved, list(_GPU_ATTRIBUTES))
        logger.info("GPU attributes changed for %d GPU(s)", len(moved))
    ids = {uuid: row[0] for uuid, row in known.items()}
    if new_gpus:
        _gpus_create(new_gpus, placeholder_time)
        ids.update((uuid, row[0]) for uuid, row in _gpus_known([gpu.uuid for gpu in new_gpus]).items())
    return [ids[gpu.uuid] for gpu in gpus]


# Ordered by UUID, so two workers creating the same new GPUs wait on each other's rows in one order.
_GPUS_CREATE = """
INSERT INTO telemetry_gpu (uuid, hostname, "index", device, model_name, first_seen, last_seen, sample_count)
SELECT g.uuid, g.hostname, g.index, g.device, g.model_name, %(time)s, %(time)s, 0
FROM unnest(%(uuid)s::text[], %(hostname)s::text[], %(index)s::smallint[], %(device)s::text[], %(model)s::text[])
    AS g(uuid, hostname, index, device, model_name)
ORDER BY g.uuid
ON CONFLICT (uuid) DO NOTHING
"""


def _gpus_create(gpus: list[GpuInfo], placeholder_time: datetime) -> None:
    """Store new GPUs (one another worker created meanwhile is left as it is).

    On PostgreSQL one INSERT from array literals: creating a fleet's 8,000 GPUs through the ORM's
    bulk_create took 290 ms of Python, a large part of a backfill's first batches.
    """
    if connection.vendor != "postgresql":
        Gpu.objects.bulk_create([
            Gpu(uuid=gpu.uuid, hostname=gpu.hostname, index=gpu.index, device=gpu.device, model_name=gpu.model_name,
                first_seen=placeholder_time, last_seen=placeholder_time) for gpu in gpus
        ], ignore_conflicts=True)
        return
    with connection.cursor() as cursor:
        cursor.execute(_GPUS_CREATE, {
            "time": placeholder_time, "uuid": text_array(g.uuid for g in gpus),
            "hostname": text_array(g.hostname for g in gpus), "index": int_array(g.index for g in gpus),
            "device": text_array(g.device for g in gpus), "model": text_array(g.model_name for g in gpus),
        })


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


# --- A batch as rows: one per (GPU, time), values by metric id ---

# (GPU id, time in µs) → (label set id, values); values[i] is metric id i + 1's value or None.
ReadingRows = dict[tuple[int, int], tuple[int | None, list[float | None]]]
_NULL = "\\N"


def readings_by_key(batch: Batch, gpu_ids: list[int], metric_ids: list[int], label_ids: list[int]) -> ReadingRows:
    """The batch's readings keyed by (GPU id, time): parts of one reading are joined, and of two
    values of one sample the first is kept, as the table keeps the first ever stored."""
    rows: ReadingRows = {}
    positions = [metric_id - 1 for metric_id in metric_ids]
    # Readings mostly list the same metrics in the same order: for each such list, one itemgetter
    # (in C) puts a reading's values in metric-id order; a loop per sample took 15 ms a batch.
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


def values_merge(stored: list[float | None], incoming: list[float | None]) -> tuple[list[float | None], int]:
    """`stored` with the gaps that `incoming` fills, and how many it filled (SQL: telemetry_values_merge)."""
    merged = list(stored) + [None] * (len(incoming) - len(stored))
    added = 0
    for i, value in enumerate(incoming):
        if value is not None and merged[i] is None:
            merged[i] = value
            added += 1
    return merged, added


def values_drop_first(values: list[float | None], count: int) -> list[float | None]:
    """`values` without its first `count` samples, by metric id (SQL: telemetry_values_drop)."""
    kept = list(values)
    for i, value in enumerate(kept):
        if count <= 0:
            break
        if value is not None:
            kept[i] = None
            count -= 1
    return kept


def values_count(values: list[float | None]) -> int:
    return sum(value is not None for value in values)


@dataclass
class _GpuSpan:
    """What one batch stored for one GPU: how many samples, and their oldest and newest time."""

    stored: int
    oldest: datetime
    newest: datetime

    def add(self, stored: int, oldest: datetime, newest: datetime) -> None:
        self.stored += stored
        self.oldest = min(self.oldest, oldest)
        self.newest = max(self.newest, newest)


def _spans_add(spans: dict[int, _GpuSpan], gpu_id: int, stored: int, oldest: datetime, newest: datetime) -> None:
    if gpu_id in spans:
        spans[gpu_id].add(stored, oldest, newest)
    else:
        spans[gpu_id] = _GpuSpan(stored, oldest, newest)


# --- PostgreSQL: COPY into staging, one ordered INSERT … ON CONFLICT DO NOTHING, merges if any ---

_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS reading_staging "
    "(gpu_id integer, ts_us bigint, label_set_id integer, vals double precision[]) ON COMMIT DELETE ROWS"
)
_STAGED_TIME = "timestamptz 'epoch' + s.ts_us * interval '1 microsecond'"
# Removing a GPU's oldest samples, as CTEs over `targets` (id, excess, rows_read, trimmed_through,
# before): `plan` walks each target's (gpu, timestamp) index from its `trimmed_through`, reading at
# most `rows_read` readings older than `before`, up to `excess` samples; `gone` deletes whole
# readings by row address (a TID scan, so the cost is what is removed, never a scan of the table);
# `cut` makes the reading at the boundary lose its first samples by metric id, unless another
# worker changed it since the plan was read; `removed` is what each GPU lost (RETURNING reports
# the row versions really deleted, so the count stays exact whatever the plan saw), and the
# newest reading deleted, the GPU's next `trimmed_through`.
_TRIM_CTES = """
plan AS (
    SELECT gpu_id, row_ctid, ts, n, least(n, excess - (upto - n)) AS drop_n FROM (
        SELECT t.id AS gpu_id, o.row_ctid, o.ts, o.n, t.excess, sum(o.n) OVER (PARTITION BY t.id ORDER BY o.ts) AS upto
        FROM {targets} AS t CROSS JOIN LATERAL (
            SELECT ctid AS row_ctid, "timestamp" AS ts, cardinality(array_remove("values", NULL)) AS n
            FROM telemetry_reading
            WHERE gpu_id = t.id AND "timestamp" > coalesce(t.trimmed_through, '-infinity') AND "timestamp" < t.before
            ORDER BY "timestamp" LIMIT t.rows_read
        ) AS o
    ) AS walked
    WHERE upto - n < excess
), gone AS (
    DELETE FROM telemetry_reading
    WHERE ctid = ANY(ARRAY(SELECT row_ctid FROM plan WHERE drop_n = n))
    RETURNING gpu_id, cardinality(array_remove("values", NULL)) AS n, "timestamp" AS deleted
), cut AS (
    UPDATE telemetry_reading AS r SET "values" = telemetry_values_drop(r."values", p.drop_n)
    FROM plan AS p
    WHERE r.ctid = ANY(ARRAY(SELECT row_ctid FROM plan WHERE drop_n < n))
      AND p.gpu_id = r.gpu_id AND p.ts = r."timestamp" AND cardinality(array_remove(r."values", NULL)) = p.n
    RETURNING r.gpu_id, p.drop_n AS n, NULL::timestamptz AS deleted
), removed AS (
    SELECT gpu_id, sum(n) AS n, max(deleted) AS through
    FROM (SELECT * FROM gone UNION ALL SELECT * FROM cut) AS both_kinds GROUP BY gpu_id
)"""
# What a statement stored per GPU (`per_gpu`: n samples, the narrowest reading, oldest and newest
# time), from `stored(gpu_id, "timestamp", n)`.
_PER_GPU = """
per_gpu AS (
    SELECT gpu_id, sum(n) AS n, min(n) AS narrowest, min("timestamp") AS oldest, max("timestamp") AS newest
    FROM stored GROUP BY gpu_id ORDER BY gpu_id
)"""
_SEEN_SET = """
        first_seen = CASE WHEN g.sample_count = 0 THEN c.oldest ELSE LEAST(g.first_seen, c.oldest) END,
        last_seen = CASE WHEN g.sample_count = 0 THEN c.newest ELSE GREATEST(g.last_seen, c.newest) END"""
# Returns the samples stored, the readings stored, the samples trimmed, and the GPUs still over
# the limit with their excess (for the exact pass, `_trim_copy`).
_COUNTED_SUMMARY = """
SELECT coalesce(sum(n), 0)::bigint, (SELECT count(*) FROM stored), coalesce(sum(trimmed), 0)::bigint,
       coalesce(array_agg(id ORDER BY id) FILTER (WHERE %(limit)s > 0 AND sample_count > %(limit)s), '{}'),
       coalesce(array_agg(sample_count - %(limit)s ORDER BY id) FILTER (WHERE %(limit)s > 0 AND sample_count > %(limit)s), '{}')
FROM counted
"""
# New readings, ordered so that two workers holding the same batch cannot deadlock, and in the
# same statement the GPUs' bookkeeping and their trim, so each GPU row is written once per batch
# and no per-GPU data makes a round trip through Python. The trim plan reads this statement's
# snapshot; it only removes readings older than every new one of the GPU (those the walk can
# see). Should another worker have changed the GPU since that snapshot (its row version moved),
# what it already deleted is skipped, the GPU may stay over the limit, and the exact pass that
# follows removes the rest with a fresh snapshot. GPU rows stay locked until the commit; two
# workers that deadlock on them roll back and retry.
_INSERT_READINGS = f"""
WITH stored AS (
    INSERT INTO telemetry_reading (gpu_id, "timestamp", label_set_id, "values")
    SELECT s.gpu_id, {_STAGED_TIME}, s.label_set_id, s.vals FROM reading_staging AS s
    ORDER BY s.gpu_id, s.ts_us
    ON CONFLICT DO NOTHING
    RETURNING gpu_id, "timestamp", cardinality(array_remove("values", NULL)) AS n
), {_PER_GPU}, over_limit AS (
    SELECT g.id, g.ctid AS row_version, g.sample_count + c.n - %(limit)s AS excess,
           (g.sample_count + c.n - %(limit)s + c.narrowest - 1) / c.narrowest AS rows_read,
           g.trimmed_through, c.oldest AS before
    FROM per_gpu AS c JOIN telemetry_gpu AS g ON g.id = c.gpu_id
    WHERE %(limit)s > 0 AND g.sample_count + c.n > %(limit)s
), {_TRIM_CTES.format(targets="over_limit")}, counted AS (
    UPDATE telemetry_gpu AS g
    SET sample_count = g.sample_count + c.n - coalesce(rm.n, 0),{_SEEN_SET},
        trimmed_through = CASE
            WHEN c.oldest <= g.trimmed_through THEN NULL
            WHEN rm.through IS NULL THEN g.trimmed_through
            -- Changed by another worker since the snapshot: the next walk starts from the oldest.
            WHEN g.ctid <> o.row_version THEN NULL
            ELSE GREATEST(g.trimmed_through, rm.through) END
    FROM per_gpu AS c LEFT JOIN over_limit AS o ON o.id = c.gpu_id LEFT JOIN removed AS rm ON rm.gpu_id = c.gpu_id
    WHERE g.id = c.gpu_id
    RETURNING g.id, g.sample_count, c.n, coalesce(rm.n, 0) AS trimmed
)""" + _COUNTED_SUMMARY
# Readings that already had a row and bring samples it lacks. A statement of its own, after the
# insert: it must see rows that another worker committed while the insert waited on them. The
# rows are locked in id order; FOR UPDATE re-reads a row another worker changed meanwhile, so
# `added` counts against its newest version. Rare (the reorder window keeps readings whole), so
# a GPU it takes over the limit is left to the exact pass.
_MERGE_READINGS = f"""
WITH candidates AS (
    SELECT r.id, s.vals, telemetry_values_added(r."values", s.vals) AS added
    FROM reading_staging AS s
    JOIN telemetry_reading AS r ON r.gpu_id = s.gpu_id AND r."timestamp" = {_STAGED_TIME}
    WHERE telemetry_values_added(r."values", s.vals) > 0
    ORDER BY r.id
    FOR UPDATE OF r
), stored AS (
    UPDATE telemetry_reading AS r SET "values" = telemetry_values_merge(r."values", c.vals)
    FROM candidates AS c WHERE r.id = c.id
    RETURNING r.gpu_id, r."timestamp", c.added AS n
), {_PER_GPU}, counted AS (
    UPDATE telemetry_gpu AS g
    SET sample_count = g.sample_count + c.n,{_SEEN_SET},
        trimmed_through = CASE WHEN c.oldest <= g.trimmed_through THEN NULL ELSE g.trimmed_through END
    FROM per_gpu AS c
    WHERE g.id = c.gpu_id
    RETURNING g.id, g.sample_count, c.n, 0 AS trimmed
)""" + _COUNTED_SUMMARY
_LOCK_GPUS = "SELECT 1 FROM telemetry_gpu WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
# The exact pass: removes up to `excess` oldest samples of each GPU from its `rows_read` oldest
# readings, with the GPU rows already locked by this transaction (so this statement's snapshot
# sees every committed change to their readings), and moves each GPU's count and `trimmed_through`.
_TRIM_OLDEST = f"""
WITH targets AS (
    SELECT c.id, c.excess, c.rows_read, g.trimmed_through, timestamptz 'infinity' AS before
    FROM unnest(%s::integer[], %s::bigint[], %s::bigint[]) AS c(id, excess, rows_read)
    JOIN telemetry_gpu AS g ON g.id = c.id
), {_TRIM_CTES.format(targets="targets")}
UPDATE telemetry_gpu AS g
SET sample_count = g.sample_count - removed.n, trimmed_through = GREATEST(g.trimmed_through, removed.through)
FROM removed WHERE g.id = removed.gpu_id
RETURNING g.id, removed.n
"""


def _copy_text(rows: ReadingRows) -> str:
    # A list's str() is its values' repr, joined in C: an array literal once None reads NULL.
    return "".join(
        f"{gpu_id}\t{ts}\t{_NULL if label is None else label}\t"
        f"{{{str(values)[1:-1].replace('None', 'NULL')}}}\n"
        for (gpu_id, ts), (label, values) in rows.items()
    )


def _persist_copy(batch: Batch, max_per_gpu: int) -> tuple[int, int]:
    gpu_ids, metric_ids, label_ids = _reference_ids(batch)
    rows = readings_by_key(batch, gpu_ids, metric_ids, label_ids)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_STAGING_DDL)
        # Empty at a commit, but a caller's outer transaction (a test, a script) spans several
        # batches: rows of an earlier one, since trimmed, would be stored again.
        cursor.execute("DELETE FROM reading_staging")
        with cursor.copy("COPY reading_staging (gpu_id, ts_us, label_set_id, vals) FROM STDIN") as copy:
            copy.write(_copy_text(rows))
        cursor.execute(_INSERT_READINGS, {"limit": max_per_gpu})
        stored, inserted, trimmed, over_ids, excesses = cursor.fetchone()
        over = dict(zip(over_ids, excesses))
        if inserted < len(rows):
            cursor.execute(_MERGE_READINGS, {"limit": max_per_gpu})
            merged, _, _, over_ids, excesses = cursor.fetchone()
            stored += merged
            over.update(zip(over_ids, excesses))  # the later count of a GPU both statements touched
        trimmed += _trim_copy(cursor, sorted(over.items()), _narrowest_readings(rows) if over else None)
    return stored, trimmed


def _narrowest_readings(rows: ReadingRows) -> dict[int, int]:
    """GPU id → samples in its narrowest reading of the batch."""
    widths: dict[int, int] = {}
    for (gpu_id, _), (_, values) in rows.items():
        width = values_count(values)
        if width < widths.get(gpu_id, width + 1):
            widths[gpu_id] = width
    return widths


def _trim_copy(cursor, over: list[tuple[int, int]], widths: dict[int, int] | None = None) -> int:
    """The exact pass: remove each (GPU, excess)'s `excess` oldest samples, the GPU rows locked.

    After a batch it runs only for the GPUs that the insert statement's own trim left over the
    limit: another worker changed them meanwhile, the batch is older than what is stored, or a
    merge added samples. Reading rows walked per GPU cost most of the trim, so the first pass
    reads only as many as `widths` (samples per reading, as in the batch just stored) says are
    needed; a GPU whose old readings are narrower than that gets another pass for the rest.
    """
    pending = dict(over)
    fetch = {gpu_id: -(-excess // max((widths or {}).get(gpu_id, 1), 1)) for gpu_id, excess in over}
    trimmed = 0
    while pending:
        ids = sorted(pending)
        cursor.execute(_TRIM_OLDEST, [int_array(ids), int_array(pending[i] for i in ids), int_array(fetch[i] for i in ids)])
        removed = dict(cursor.fetchall())
        trimmed += sum(removed.values())
        # Each reading holds at least one sample, so `excess` rows are always enough for the rest.
        pending = {i: pending[i] - removed[i] for i in ids if removed.get(i, 0) and pending[i] > removed[i]}
        fetch = pending
    return trimmed


# --- Portable ORM path (SQLite and any other backend) ---


def _persist_orm(batch: Batch, max_per_gpu: int) -> tuple[int, int]:
    gpu_ids, metric_ids, label_ids = _reference_ids(batch)
    rows = readings_by_key(batch, gpu_ids, metric_ids, label_ids)
    spans: dict[int, _GpuSpan] = {}
    with transaction.atomic():
        existing = _readings_existing(rows)
        new, merged = [], []
        for (gpu_id, ts), (label, values) in sorted(rows.items()):
            reading = existing.get((gpu_id, ts))
            if reading is None:
                reading = Reading(gpu_id=gpu_id, timestamp=to_datetime(ts), label_set_id=label, values=values)
                new.append(reading)
                added = values_count(values)
            else:
                reading.values, added = values_merge(reading.values, values)
                if added:
                    merged.append(reading)
            if added:
                _spans_add(spans, gpu_id, added, reading.timestamp, reading.timestamp)
        Reading.objects.bulk_create(new, batch_size=500)
        Reading.objects.bulk_update(merged, ["values"], batch_size=500)
        for gpu in Gpu.objects.select_for_update().filter(id__in=spans).order_by("id"):
            span = spans[gpu.id]
            had_samples = gpu.sample_count > 0
            gpu.sample_count += span.stored
            gpu.first_seen = min(gpu.first_seen, span.oldest) if had_samples else span.oldest
            gpu.last_seen = max(gpu.last_seen, span.newest) if had_samples else span.newest
            if gpu.trimmed_through is not None and span.oldest <= gpu.trimmed_through:
                gpu.trimmed_through = None
            gpu.save(update_fields=["sample_count", "first_seen", "last_seen", "trimmed_through"])
        counts = Gpu.objects.filter(id__in=spans, sample_count__gt=max_per_gpu).values_list("id", "sample_count")
        trimmed = _trim_orm(dict(counts), max_per_gpu) if max_per_gpu else 0
    return sum(span.stored for span in spans.values()), trimmed


def _readings_existing(rows: ReadingRows) -> dict[tuple[int, int], Reading]:
    """The stored readings among `rows`' keys, by key (one query over the batch's GPUs and time span)."""
    times = [ts for _, ts in rows]
    candidates = Reading.objects.filter(
        gpu_id__in={gpu_id for gpu_id, _ in rows},
        timestamp__gte=to_datetime(min(times)),
        timestamp__lte=to_datetime(max(times)),
    )
    by_key = {(r.gpu_id, to_microseconds(r.timestamp)): r for r in candidates}
    return {key: by_key[key] for key in rows if key in by_key}


def _trim_orm(counts: dict[int, int], max_per_gpu: int) -> int:
    """Remove each GPU's samples beyond its newest `max_per_gpu`, oldest reading first."""
    trimmed = 0
    for gpu_id, count in sorted(counts.items()):
        excess = count - max_per_gpu
        removed = 0
        for reading in Reading.objects.filter(gpu_id=gpu_id).order_by("timestamp")[:excess]:
            n = values_count(reading.values)
            if removed + n <= excess:
                reading.delete()
                removed += n
            else:
                reading.values = values_drop_first(reading.values, excess - removed)
                reading.save(update_fields=["values"])
                removed = excess
            if removed >= excess:
                break
        Gpu.objects.filter(id=gpu_id).update(sample_count=count - removed)
        trimmed += removed
    return trimmed


# --- Retention (manage.py trim) ---

_RECOUNT_POSTGRESQL = """
UPDATE telemetry_gpu AS g SET sample_count = coalesce(
    (SELECT sum(cardinality(array_remove(r."values", NULL))) FROM telemetry_reading AS r WHERE r.gpu_id = g.id), 0)
"""
_DELETE_OLDER_POSTGRESQL = """
WITH gone AS (
    DELETE FROM telemetry_reading WHERE "timestamp" < %s RETURNING cardinality(array_remove("values", NULL)) AS n
)
SELECT coalesce(sum(n), 0) FROM gone
"""


def gpus_recount() -> None:
    """Set every GPU's sample_count from the table itself (after deletes outside the collector)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_RECOUNT_POSTGRESQL)
        return
    counts: dict[int, int] = dict.fromkeys(Gpu.objects.values_list("id", flat=True), 0)
    for gpu_id, values in Reading.objects.values_list("gpu_id", "values").iterator(chunk_size=5000):
        counts[gpu_id] = counts.get(gpu_id, 0) + values_count(values)
    Gpu.objects.bulk_update([Gpu(id=gpu_id, sample_count=n) for gpu_id, n in counts.items()], ["sample_count"])


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
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(_DELETE_OLDER_POSTGRESQL, [cutoff])
                deleted = cursor.fetchone()[0]
        else:
            older = Reading.objects.filter(timestamp__lt=cutoff)
            deleted = sum(values_count(values) for values in older.values_list("values", flat=True))
            older.delete()
        gpus_recount()
    return deleted
