-- Deletes every reading older than the cutoff (after whole days were dropped, those of the
-- cutoff's own day) and takes them off each device's count (migration 0009's
-- telemetry_samples_forget). Returns how many samples they held.
WITH gone AS (
    DELETE FROM telemetry_reading WHERE "timestamp" < %(cutoff)s
    RETURNING gpu_id, cardinality(array_remove("values", NULL)) AS n
)
SELECT telemetry_samples_forget(array_agg(gpu_id), array_agg(n))
FROM (SELECT gpu_id, sum(n)::bigint AS n FROM gone GROUP BY gpu_id) AS per_gpu
