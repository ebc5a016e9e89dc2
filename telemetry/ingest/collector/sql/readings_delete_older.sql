-- Deletes every reading older than the cutoff (after whole days were dropped, those of the
-- cutoff's own day) and takes them off each device's count, GPU rows locked in id order as the
-- collector locks them. Returns how many samples they held.
WITH gone AS (
    DELETE FROM telemetry_reading WHERE "timestamp" < %(cutoff)s
    RETURNING gpu_id, cardinality(array_remove("values", NULL)) AS n
), per_gpu AS (
    SELECT gpu_id, sum(n) AS n FROM gone GROUP BY gpu_id
), locked AS (
    SELECT g.id FROM telemetry_gpu AS g JOIN per_gpu AS p ON p.gpu_id = g.id ORDER BY g.id FOR UPDATE OF g
), counted AS (
    UPDATE telemetry_gpu AS g SET sample_count = g.sample_count - p.n
    FROM per_gpu AS p, locked AS l
    WHERE g.id = p.gpu_id AND l.id = g.id
    RETURNING p.n
)
SELECT coalesce(sum(n), 0)::bigint FROM counted
