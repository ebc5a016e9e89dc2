-- The exact pass's first step, for devices whose oldest samples are packed hours: deletes each
-- device's oldest packed hours that its excess covers whole (older than any raw reading of it),
-- with their minute rollups and their days' hour rollups, and takes them off its count; the GPU
-- rows are already locked by this transaction. Returns per device the samples removed and, when
-- more must go, its oldest packed hour left (the caller unpacks it, and trims the readings).
WITH targets AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(excesses)s::bigint[]) AS t(gpu_id, excess)
), walked AS (
    SELECT h.gpu_id, h.hour, h.samples, t.excess,
           sum(h.samples) OVER (PARTITION BY h.gpu_id ORDER BY h.hour) AS upto
    FROM targets AS t
    JOIN telemetry_readinghour AS h ON h.gpu_id = t.gpu_id
    WHERE h.hour < coalesce((SELECT min(r."timestamp") FROM telemetry_reading AS r WHERE r.gpu_id = t.gpu_id), 'infinity')
), gone AS (
    DELETE FROM telemetry_readinghour AS h USING walked AS w
    WHERE h.gpu_id = w.gpu_id AND h.hour = w.hour AND w.upto <= w.excess
    RETURNING h.gpu_id, h.hour, h.samples
), rollups AS (
    SELECT telemetry_rollups_forget(array_agg(gpu_id), array_agg(hour)) FROM gone
), per_gpu AS (
    SELECT gpu_id, sum(samples)::bigint AS n FROM gone GROUP BY gpu_id
), forgotten AS (
    SELECT telemetry_samples_forget(array_agg(gpu_id), array_agg(n)) AS n FROM per_gpu
)
SELECT t.gpu_id, coalesce(p.n, 0),
       (SELECT min(w.hour) FROM walked AS w WHERE w.gpu_id = t.gpu_id AND w.upto > w.excess)
FROM targets AS t LEFT JOIN per_gpu AS p ON p.gpu_id = t.gpu_id CROSS JOIN forgotten CROSS JOIN rollups
ORDER BY t.gpu_id
