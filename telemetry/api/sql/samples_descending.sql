-- One GPU's samples newest first, ordered by (time, metric id) descending: one backward range
-- scan of the (gpu_id, timestamp) unique index over its readings, each reading turned into its
-- samples. samples_ascending.sql is the same walk oldest first.
--
-- gpu_id, or gpu_uuid looked up here (the other null); start, end: the inclusive window (null: open);
-- metric_ids: the metrics wanted (null: all); after_time, after_metric: the key of the sample the
-- walk starts after, going backwards (null: from the end); limit: the most samples returned.
SELECT t.text, u.metric_id, u.value
FROM telemetry_reading AS r
-- The time as RFC 3339 text, written once per reading: OFFSET 0 keeps the planner from
-- flattening it into one to_char per sample.
CROSS JOIN LATERAL (
    SELECT rtrim(rtrim(to_char(r."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.') || 'Z' AS text
    OFFSET 0
) AS t
-- The reading's samples: values[i] is metric id i, picked by position for each metric wanted (all
-- of them when none is named), which costs no more than unnesting the array and is cheaper than
-- unnesting it and filtering.
CROSS JOIN LATERAL (
    SELECT m.id AS metric_id, r."values"[m.id] AS value
    FROM unnest(coalesce(%(metric_ids)s::integer[], ARRAY(SELECT id FROM telemetry_metric))) AS m(id)
) AS u
WHERE r.gpu_id = coalesce(%(gpu_id)s::bigint, (SELECT g.id FROM telemetry_gpu AS g WHERE g.uuid = %(gpu_uuid)s::text))
  AND (%(start)s::timestamptz IS NULL OR r."timestamp" >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR r."timestamp" <= %(end)s::timestamptz)
  -- The plain time bound is an index condition, so the scan starts at the position; the row
  -- comparison then drops the position's own time step up to and including its metric.
  AND (%(after_time)s::timestamptz IS NULL OR r."timestamp" <= %(after_time)s::timestamptz)
  AND (%(after_time)s::timestamptz IS NULL OR (r."timestamp", u.metric_id) < (%(after_time)s::timestamptz, %(after_metric)s::integer))
  AND u.value IS NOT NULL
-- The index yields the readings in time order with each one's samples together, so this sorts
-- only within a time step (an incremental sort), and the LIMIT stops the scan.
ORDER BY r."timestamp" DESC, u.metric_id DESC
LIMIT %(limit)s
