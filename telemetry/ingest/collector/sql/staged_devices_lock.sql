-- Locks against packing (the lock of telemetry/history/sql/devices_lock.sql) the devices of the
-- staged readings older than the horizon: those that may fall in a packed hour. A statement of
-- its own, so that the next one, which looks for those hours, sees every packing that committed
-- while this one waited.
SELECT count(pg_advisory_xact_lock(%(namespace)s, s.gpu_id))
FROM (SELECT DISTINCT gpu_id FROM reading_staging WHERE ts_us < %(horizon)s ORDER BY 1) AS s
