-- Readings that already had a row and bring samples it lacks, merged into it. A statement of its
-- own, after the insert: it must see rows that another worker committed while the insert waited
-- on them. The rows are locked in id order; FOR UPDATE re-reads a row another worker changed
-- meanwhile, so `added` counts against its newest version. Rare (the reorder window keeps
-- readings whole), so a GPU it takes over the limit is left to the exact pass.
-- Returns what readings_insert.sql returns, with no samples trimmed.
WITH candidates AS (
    SELECT r.id, s.vals, telemetry_values_added(r."values", s.vals) AS added
    FROM reading_staging AS s
    JOIN telemetry_reading AS r
        ON r.gpu_id = s.gpu_id AND r."timestamp" = timestamptz 'epoch' + s.ts_us * interval '1 microsecond'
    WHERE telemetry_values_added(r."values", s.vals) > 0
    ORDER BY r.id
    FOR UPDATE OF r
), stored AS (
    UPDATE telemetry_reading AS r SET "values" = telemetry_values_merge(r."values", c.vals)
    FROM candidates AS c WHERE r.id = c.id
    RETURNING r.gpu_id, r."timestamp", c.added AS n
), per_gpu AS (
    SELECT gpu_id, sum(n) AS n, min("timestamp") AS oldest, max("timestamp") AS newest
    FROM stored GROUP BY gpu_id ORDER BY gpu_id
), counted AS (
    UPDATE telemetry_gpu AS g
    SET sample_count = g.sample_count + c.n,
        first_seen = CASE WHEN g.sample_count = 0 THEN c.oldest ELSE LEAST(g.first_seen, c.oldest) END,
        last_seen = CASE WHEN g.sample_count = 0 THEN c.newest ELSE GREATEST(g.last_seen, c.newest) END,
        trimmed_through = CASE WHEN c.oldest <= g.trimmed_through THEN NULL ELSE g.trimmed_through END
    FROM per_gpu AS c
    WHERE g.id = c.gpu_id
    RETURNING g.id, g.sample_count, c.n
)
SELECT coalesce(sum(n), 0)::bigint, (SELECT count(*) FROM stored), 0::bigint,
       coalesce(array_agg(id ORDER BY id) FILTER (WHERE %(limit)s > 0 AND sample_count > %(limit)s), '{}'),
       coalesce(array_agg(sample_count - %(limit)s ORDER BY id) FILTER (WHERE %(limit)s > 0 AND sample_count > %(limit)s), '{}')
FROM counted
