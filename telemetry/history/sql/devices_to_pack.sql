-- The devices with readings older than `before`, and the UTC days those readings fall in.
SELECT gpu_id, array_agg(DISTINCT date_trunc('day', "timestamp", 'UTC'))
FROM telemetry_reading
WHERE "timestamp" < %(before)s
GROUP BY gpu_id
ORDER BY gpu_id
