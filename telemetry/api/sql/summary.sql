-- One GPU's samples of every metric in [start, end], aggregated per metric and time bucket (aligned
-- to the epoch): a row per metric, its points one JSON array oldest first, written here because
-- formatting them in Python cost more than the query. summary_of_metrics.sql is the same for some.
-- gpu_id; start, end: inclusive bounds; bucket_seconds; aggregates: names out of avg, min, max,
-- first, last, count and sum, in the order each point lists them; namespace, pod, container: only
-- readings whose label set has these (null: any).
-- In the template, %% is psycopg's escape for a literal percent sign.
WITH point AS (
    -- Fields in the order asked: each placeholder numbers a format() argument below, as placed in this ARRAY.
    SELECT '{"time":"%%1$s"'
           || string_agg(',"' || a.name || '":%%' || array_position(ARRAY['time', 'avg', 'min', 'max', 'first', 'last', 'count', 'sum'], a.name) || '$s', '' ORDER BY a.position)
           || '}' AS template
    FROM unnest(%(aggregates)s::text[]) WITH ORDINALITY AS a(name, position)
)
-- Bare numbers: an aggregate of finite values is never null in a bucket that has samples.
SELECT b.metric_id,
       '[' || string_agg(
           format((SELECT template FROM point), to_char(b.bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                  b.avg, b.min, b.max, b.first, b.last, b.count, b.sum),
           ',' ORDER BY b.bucket
       ) || ']'
FROM (
    -- Grouped on the bucket's time, formatted above once per bucket rather than once per sample.
    SELECT u.metric_id,
           date_bin(make_interval(secs => %(bucket_seconds)s), r."timestamp", timestamptz 'epoch') AS bucket,
           -- An aggregate not asked for folds to a constant null when planned, so it is never computed.
           CASE WHEN 'avg' = ANY (%(aggregates)s::text[]) THEN avg(u.value) END AS avg,
           CASE WHEN 'min' = ANY (%(aggregates)s::text[]) THEN min(u.value) END AS min,
           CASE WHEN 'max' = ANY (%(aggregates)s::text[]) THEN max(u.value) END AS max,
           -- The values at the oldest and newest time: min and max of [epoch, value] need no sort.
           CASE WHEN 'first' = ANY (%(aggregates)s::text[]) THEN (min(ARRAY[date_part('epoch', r."timestamp"), u.value]))[2] END AS first,
           CASE WHEN 'last' = ANY (%(aggregates)s::text[]) THEN (max(ARRAY[date_part('epoch', r."timestamp"), u.value]))[2] END AS last,
           CASE WHEN 'count' = ANY (%(aggregates)s::text[]) THEN count(*) END AS count,
           CASE WHEN 'sum' = ANY (%(aggregates)s::text[]) THEN sum(u.value) END AS sum
    FROM telemetry_reading AS r
    -- values[i] is metric id i; unnested, each value is read once, where picking by position reads it per aggregate.
    CROSS JOIN LATERAL unnest(r."values") WITH ORDINALITY AS u(value, metric_id)
    WHERE r.gpu_id = %(gpu_id)s AND r."timestamp" >= %(start)s AND r."timestamp" <= %(end)s AND u.value IS NOT NULL
      -- Without an attribution filter the first test is a constant true, and the planner drops the subquery.
      AND (coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NULL OR r.label_set_id IN (
          SELECT l.id FROM telemetry_labelset AS l
          WHERE (%(namespace)s::text IS NULL OR l.namespace = %(namespace)s::text)
            AND (%(pod)s::text IS NULL OR l.pod = %(pod)s::text)
            AND (%(container)s::text IS NULL OR l.container = %(container)s::text)
      ))
    GROUP BY 1, 2
) AS b
GROUP BY b.metric_id
