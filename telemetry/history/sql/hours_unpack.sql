-- Unpacks these packed hours back into readings: before a group holding a late sample for one of
-- them is stored (so the insert stores, merges and counts it as any other, and packing the hour
-- again writes it whole), or before a per-device trim takes part of one. The hour's minute rollup
-- and its day's hour rollup go with it, written again when the hour is packed again.
-- ids, hours: the (device, hour) pairs. Returns the hours unpacked.
WITH touched AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(hours)s::timestamptz[]) AS t(gpu_id, hour)
), unpacked AS (
    DELETE FROM telemetry_readinghour AS h USING touched AS t
    WHERE h.gpu_id = t.gpu_id AND h.hour = t.hour
    RETURNING h.gpu_id, h.hour, h.readings, h.times, h.label_set_ids, h."values"
), rollups AS (
    SELECT telemetry_rollups_forget(array_agg(gpu_id), array_agg(hour)) FROM unpacked
), restored AS (
    INSERT INTO telemetry_reading (gpu_id, "timestamp", label_set_id, "values")
    SELECT u.gpu_id, p."timestamp", p.label_set_id, p."values"
    FROM unpacked AS u
    CROSS JOIN LATERAL telemetry_hour_readings(u.hour, u.readings, u.times, u.label_set_ids, u."values") AS p
    ORDER BY u.gpu_id, p."timestamp"
)
SELECT count(*) FROM unpacked, rollups
