-- The newest value of each metric one GPU reported, by metric name: per metric, a backward walk of the
-- (gpu_id, timestamp) index that stops at the first reading holding it, as a rule the newest; for a
-- metric no raw reading holds, the newest packed hour that counts it, unpacked.
-- A metric the GPU never reported walks all its readings, which the collector bounds.
SELECT m.name, coalesce(r."timestamp", p."timestamp"), coalesce(r.value, p.value)
FROM telemetry_metric AS m
LEFT JOIN LATERAL (
    SELECT "timestamp", "values"[m.id] AS value FROM telemetry_reading
    WHERE gpu_id = %(gpu_id)s AND "values"[m.id] IS NOT NULL
    ORDER BY "timestamp" DESC LIMIT 1
) AS r ON true
LEFT JOIN LATERAL (
    SELECT x."timestamp", x."values"[m.id] AS value
    FROM (
        SELECT * FROM telemetry_readinghour AS h
        WHERE r."timestamp" IS NULL AND h.gpu_id = %(gpu_id)s AND coalesce(h.counts[m.id], 0) > 0
        ORDER BY h.hour DESC LIMIT 1
    ) AS h
    CROSS JOIN LATERAL telemetry_hour_readings(h.hour, h.readings, h.times, h.label_set_ids, h."values") AS x
    WHERE x."values"[m.id] IS NOT NULL
    ORDER BY x."timestamp" DESC LIMIT 1
) AS p ON true
WHERE coalesce(r."timestamp", p."timestamp") IS NOT NULL
ORDER BY m.name
