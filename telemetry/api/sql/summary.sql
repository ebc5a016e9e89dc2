-- One GPU's samples in [start, end] as partial aggregates (count, sum, min, max, first, last), each
-- part of the window read from minute rollups where they cover it whole (hour rollups are read first,
-- by summary_hours.sql, and the rest of the window is asked here); telemetry/api/buckets.py merges
-- them into the buckets. Rows of two kinds, arrays in PostgreSQL's binary format (array_send):
-- - a minute rollup's [metric id][minute] grids, cut to minutes [first_slot, end_slot) that the window holds
--   whole (telemetry_rollup_sent, migration 0010);
-- - one row of the other samples' partials per metric and bucket, with their oldest and newest times.
-- With an attribution filter, only samples of readings whose label set has it (rollups keep no attribution).
-- gpu_id; start, end: inclusive bounds; bucket_seconds; aggregates: those asked (the samples' first and
-- last values are NaN unless asked); tier: 'minute' where the bucket is a whole number of minutes, else
-- 'raw'; namespace, pod, container: the attribution (null: any).
WITH samples AS (
    SELECT u.metric_id::integer, r."timestamp" AS at, u.value
    -- Without an attribution filter, packed hours the window holds whole are skipped: their minute rollups hold every sample.
    FROM telemetry_readings_between(%(gpu_id)s, %(start)s, %(end)s, %(tier)s = 'minute'
                                    AND coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NULL) AS r
    -- values[i] is metric id i; unnested, each value is read once, where picking by position reads it per aggregate.
    CROSS JOIN LATERAL unnest(r."values") WITH ORDINALITY AS u(value, metric_id)
    WHERE u.value IS NOT NULL
      -- Without one, the samples outside the minutes that rollups hold.
      AND NOT (coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NULL
               AND r.packed AND %(tier)s = 'minute'
               AND date_trunc('minute', r."timestamp", 'UTC') >= %(start)s::timestamptz
               AND date_trunc('minute', r."timestamp", 'UTC') + interval '1 minute' <= %(end)s::timestamptz + interval '1 microsecond'
               AND EXISTS (SELECT 1 FROM telemetry_rollupminute AS m
                           WHERE m.gpu_id = %(gpu_id)s AND m.hour = date_trunc('hour', r."timestamp", 'UTC')))
      -- With one, the samples of the readings attributed so. (A single call of the function: each call's partitions cost planning time.)
      AND (coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NULL OR r.label_set_id IN (
          SELECT l.id FROM telemetry_labelset AS l
          WHERE (%(namespace)s::text IS NULL OR l.namespace = %(namespace)s::text)
            AND (%(pod)s::text IS NULL OR l.pod = %(pod)s::text)
            AND (%(container)s::text IS NULL OR l.container = %(container)s::text)
      ))
), partials AS (
    SELECT s.metric_id, date_part('epoch', min(s.at)) AS first_at, date_part('epoch', max(s.at)) AS last_at,
           count(*)::integer AS count, sum(s.value) AS sum, min(s.value) AS min, max(s.value) AS max,
           -- The values at the oldest and newest time, where asked: min and max of [epoch, value] need
           -- no sort, but build an array a sample. A constant condition folds away when planned.
           CASE WHEN 'first' = ANY (%(aggregates)s::text[]) THEN (min(ARRAY[date_part('epoch', s.at), s.value]))[2] ELSE 'NaN' END AS first,
           CASE WHEN 'last' = ANY (%(aggregates)s::text[]) THEN (max(ARRAY[date_part('epoch', s.at), s.value]))[2] ELSE 'NaN' END AS last
    FROM samples AS s
    GROUP BY s.metric_id, date_bin(make_interval(secs => %(bucket_seconds)s), s.at, timestamptz 'epoch')
)
SELECT g.*
FROM telemetry_rollupminute AS m
CROSS JOIN LATERAL telemetry_rollup_sent(m.hour, 60, 60, %(start)s, %(end)s, m.counts, m.sums, m.mins, m.maxs, m.firsts, m.lasts) AS g
WHERE %(tier)s = 'minute' AND coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NULL
  AND m.gpu_id = %(gpu_id)s AND m.hour >= date_trunc('hour', %(start)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AND m.hour <= %(end)s::timestamptz
UNION ALL
SELECT NULL, NULL, NULL, NULL,
       array_send(array_agg(p.metric_id)), array_send(array_agg(p.first_at)), array_send(array_agg(p.last_at)),
       array_send(array_agg(p.count)), array_send(array_agg(p.sum)), array_send(array_agg(p.min)),
       array_send(array_agg(p.max)), array_send(array_agg(p.first)), array_send(array_agg(p.last))
FROM partials AS p
HAVING count(*) > 0
