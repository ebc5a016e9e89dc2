-- The exact pass: removes up to `excess` oldest samples of each GPU from its `rows_read` oldest
-- readings, with the GPU rows already locked by this transaction (gpus_lock.sql), so this
-- statement's snapshot sees every committed change to their readings; moves each GPU's count and
-- `trimmed_through`. Returns (GPU id, samples removed) of each GPU that lost any.
WITH targets AS (
    SELECT c.id, c.excess, c.rows_read, g.trimmed_through
    FROM unnest(%(ids)s::integer[], %(excesses)s::bigint[], %(rows_read)s::bigint[]) AS c(id, excess, rows_read)
    JOIN telemetry_gpu AS g ON g.id = c.id
), removed AS (
    -- The trim of migration 0006, as in readings_insert.sql, over all of each GPU's readings.
    SELECT * FROM telemetry_trim_apply(ARRAY(
        SELECT p FROM targets AS t, telemetry_trim_plan(t.id, t.excess, t.rows_read, t.trimmed_through, 'infinity') AS p
    ))
)
UPDATE telemetry_gpu AS g
SET sample_count = g.sample_count - removed.n, trimmed_through = GREATEST(g.trimmed_through, removed.through)
FROM removed WHERE g.id = removed.gpu_id
RETURNING g.id, removed.n
