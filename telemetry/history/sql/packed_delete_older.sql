-- Deletes the packed hours that end at or before the cutoff (after whole days were dropped, those
-- of the cutoff's own day) and takes their samples off each device's count; an hour the cutoff
-- falls inside is kept whole. Returns how many samples they held.
WITH gone AS (
    DELETE FROM telemetry_readinghour WHERE hour + interval '1 hour' <= %(cutoff)s
    RETURNING gpu_id, samples
)
SELECT telemetry_samples_forget(array_agg(gpu_id), array_agg(n))
FROM (SELECT gpu_id, sum(samples)::bigint AS n FROM gone GROUP BY gpu_id) AS per_gpu
