-- The newest value of each metric one GPU reported, by metric name: per metric, a backward walk of the
-- (gpu_id, timestamp) index that stops at the first reading holding it, as a rule the newest.
-- A metric the GPU never reported walks all its readings, which the collector bounds.
SELECT m.name, r."timestamp", r."values"[m.id]
FROM telemetry_metric AS m
CROSS JOIN LATERAL (
    SELECT "timestamp", "values" FROM telemetry_reading
    WHERE gpu_id = %(gpu_id)s AND "values"[m.id] IS NOT NULL
    ORDER BY "timestamp" DESC LIMIT 1
) AS r
ORDER BY m.name
