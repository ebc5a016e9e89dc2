-- Stores the staged readings that are new, and in the same statement each GPU's bookkeeping, its
-- attributes as the batch gives them (a device that moved host, a MIG instance re-profiled) and
-- its trim, so each GPU row is written once per batch and no per-GPU data goes through Python.
-- Rows are inserted in (GPU, time) order, so two workers holding the same batch cannot deadlock.
-- The trim plan reads this statement's snapshot and only removes readings older than every new
-- one of the GPU (those its walk can see). Should another worker have changed the GPU since that
-- snapshot (its row version moved), what it already deleted is skipped, the GPU may stay over the
-- limit, and the exact pass (trim_oldest.sql) removes the rest with a fresh snapshot. GPU rows
-- stay locked until the commit; two workers that deadlock on them roll back and retry.
-- Returns the samples stored, the readings stored, the samples trimmed, the GPUs still over the
-- limit with their excess, and how many of the devices, metrics and label sets it was given are
-- not stored (ids a worker remembered from rows deleted since: the caller rolls back and retries).
WITH stored AS (
    INSERT INTO telemetry_reading (gpu_id, "timestamp", label_set_id, "values")
    SELECT s.gpu_id, timestamptz 'epoch' + s.ts_us * interval '1 microsecond', s.label_set_id, s.vals
    FROM reading_staging AS s
    ORDER BY s.gpu_id, s.ts_us
    ON CONFLICT DO NOTHING
    RETURNING gpu_id, "timestamp", cardinality(array_remove("values", NULL)) AS n
), per_gpu AS (
    SELECT gpu_id, sum(n) AS n, min(n) AS narrowest, min("timestamp") AS oldest, max("timestamp") AS newest
    FROM stored GROUP BY gpu_id ORDER BY gpu_id
), over_limit AS (
    SELECT g.id, g.ctid AS row_version, g.sample_count + c.n - %(limit)s AS excess,
           (g.sample_count + c.n - %(limit)s + c.narrowest - 1) / c.narrowest AS rows_read,
           g.trimmed_through, c.oldest AS before
    FROM per_gpu AS c JOIN telemetry_gpu AS g ON g.id = c.gpu_id
    WHERE %(limit)s > 0 AND g.sample_count + c.n > %(limit)s
      -- A device's packed hours hold its oldest samples: the exact pass trims those first.
      AND NOT EXISTS (SELECT 1 FROM telemetry_readinghour AS h WHERE h.gpu_id = g.id)
), removed AS (
    -- The trim of migration 0006: planned in this statement's snapshot, applied by row address.
    SELECT * FROM telemetry_trim_apply(ARRAY(
        SELECT p FROM over_limit AS o, telemetry_trim_plan(o.id, o.excess, o.rows_read, o.trimmed_through, o.before) AS p
    ))
), attributes AS (
    SELECT * FROM unnest(%(ids)s::integer[], %(hostname)s::text[], %(index)s::smallint[], %(device)s::text[],
                         %(model)s::text[], %(profile)s::text[])
        AS a(gpu_id, hostname, "index", device, model_name, mig_profile)
), counted AS (
    UPDATE telemetry_gpu AS g
    SET sample_count = g.sample_count + c.n - coalesce(rm.n, 0),
        hostname = a.hostname, "index" = a."index", device = a.device, model_name = a.model_name,
        mig_profile = a.mig_profile,
        first_seen = CASE WHEN g.sample_count = 0 THEN c.oldest ELSE LEAST(g.first_seen, c.oldest) END,
        last_seen = CASE WHEN g.sample_count = 0 THEN c.newest ELSE GREATEST(g.last_seen, c.newest) END,
        trimmed_through = CASE
            WHEN c.oldest <= g.trimmed_through THEN NULL
            WHEN rm.through IS NULL THEN g.trimmed_through
            -- Changed by another worker since the snapshot: the next walk starts from the oldest.
            WHEN g.ctid <> o.row_version THEN NULL
            ELSE GREATEST(g.trimmed_through, rm.through) END
    FROM per_gpu AS c JOIN attributes AS a ON a.gpu_id = c.gpu_id
        LEFT JOIN over_limit AS o ON o.id = c.gpu_id LEFT JOIN removed AS rm ON rm.gpu_id = c.gpu_id
    WHERE g.id = c.gpu_id
    RETURNING g.id, g.sample_count, c.n, coalesce(rm.n, 0) AS trimmed
)
SELECT coalesce(sum(n), 0)::bigint, (SELECT count(*) FROM stored), coalesce(sum(trimmed), 0)::bigint,
       coalesce(array_agg(id ORDER BY id) FILTER (WHERE %(limit)s > 0 AND sample_count > %(limit)s), '{}'),
       coalesce(array_agg(sample_count - %(limit)s ORDER BY id) FILTER (WHERE %(limit)s > 0 AND sample_count > %(limit)s), '{}'),
       (SELECT count(*) FROM per_gpu) - count(*)
           + cardinality(%(metric_ids)s::integer[])
           - (SELECT count(*) FROM telemetry_metric WHERE id = ANY(%(metric_ids)s::integer[]))
           + cardinality(%(label_set_ids)s::integer[])
           - (SELECT count(*) FROM telemetry_labelset WHERE id = ANY(%(label_set_ids)s::integer[]))
FROM counted
