-- One GPU's samples by (time, metric id), newest first: one backward range scan of the (gpu_id,
-- timestamp) index, each reading turned into its samples. samples_ascending.sql walks oldest first.
-- gpu_id, or uuid and mig_instance (the device's key; gpu_id null); start, end: inclusive bounds
-- (null: open); metric_ids (null: all); namespace, pod, container: only readings whose label set
-- has these (null: any); after_time, after_metric: the key the walk starts after (null: the end); limit.
SELECT t.text, u.metric_id, u.value
FROM (
    SELECT coalesce(%(gpu_id)s::bigint, (
        SELECT g.id FROM telemetry_gpu AS g
        WHERE g.uuid = %(uuid)s::text AND g.mig_instance IS NOT DISTINCT FROM %(mig_instance)s::smallint
    )) AS id
    -- A row of its own: a function whose arguments hold a subquery is not inlined into this plan.
    OFFSET 0
) AS device
-- Raw and packed readings alike (migration 0009), the window narrowed to the walk's start.
CROSS JOIN LATERAL telemetry_readings_between(
    device.id,
    coalesce(%(start)s::timestamptz, '-infinity'),
    LEAST(coalesce(%(end)s::timestamptz, 'infinity'), coalesce(%(after_time)s::timestamptz, 'infinity'))
) AS r
-- RFC 3339 text once per reading: OFFSET 0 keeps it from being flattened into a to_char per sample.
CROSS JOIN LATERAL (
    SELECT rtrim(rtrim(to_char(r."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.') || 'Z' AS text
    OFFSET 0
) AS t
-- values[i] is metric id i; picking by position costs no more than unnest, and less than unnest and a filter.
CROSS JOIN LATERAL (
    SELECT m.id AS metric_id, r."values"[m.id] AS value
    FROM unnest(coalesce(%(metric_ids)s::integer[], ARRAY(SELECT id FROM telemetry_metric))) AS m(id)
) AS u
WHERE (%(after_time)s::timestamptz IS NULL OR (r."timestamp", u.metric_id) < (%(after_time)s::timestamptz, %(after_metric)s::integer))
  -- Without an attribution filter the first test is a constant true, and the planner drops the subquery.
  AND (coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NULL OR r.label_set_id IN (
      SELECT l.id FROM telemetry_labelset AS l
      WHERE (%(namespace)s::text IS NULL OR l.namespace = %(namespace)s::text)
        AND (%(pod)s::text IS NULL OR l.pod = %(pod)s::text)
        AND (%(container)s::text IS NULL OR l.container = %(container)s::text)
  ))
  AND u.value IS NOT NULL
-- Readings come in index order, so this is an incremental sort within a time step, cut short by the LIMIT.
ORDER BY r."timestamp" DESC, u.metric_id DESC
LIMIT %(limit)s
