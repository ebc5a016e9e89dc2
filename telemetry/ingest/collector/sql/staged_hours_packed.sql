-- The packed hours that staged readings fall in, as (device ids, hours): those to unpack before
-- the readings are inserted. Only readings older than the horizon can fall in one.
SELECT coalesce(array_agg(h.gpu_id ORDER BY h.gpu_id, h.hour), '{}'),
       coalesce(array_agg(h.hour ORDER BY h.gpu_id, h.hour), '{}')
FROM (
    SELECT DISTINCT gpu_id, to_timestamp(div(ts_us, 3600000000) * 3600) AS hour
    FROM reading_staging
    WHERE ts_us < %(horizon)s
) AS s
JOIN telemetry_readinghour AS h ON h.gpu_id = s.gpu_id AND h.hour = s.hour
