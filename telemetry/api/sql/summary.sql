-- One GPU's samples of every metric in [start, end], aggregated per metric and time bucket (buckets
-- aligned to the epoch): a row per metric, its points a JSON array oldest first, written here
-- because formatting them in Python cost more than the query. summary_of_metrics.sql is the same
-- for some metrics.
--
-- gpu_id; start, end: the inclusive window; bucket_seconds: the bucket width; aggregates: the
-- names out of avg, min, max, first, last, count and sum, in the order each point lists them.
WITH point AS (
    -- A point as a format() template with its fields in the order asked: each placeholder names an
    -- argument of the format() call below by its place in this ARRAY (the time, then the
    -- aggregates). Every field but the time is a number: an aggregate of finite values, never null
    -- in a bucket that has samples.
    SELECT '{"time":"%%1$s"'
           || string_agg(',"' || a.name || '":%%' || array_position(ARRAY['time', 'avg', 'min', 'max', 'first', 'last', 'count', 'sum'], a.name) || '$s', '' ORDER BY a.position)
           || '}' AS template
    FROM unnest(%(aggregates)s::text[]) WITH ORDINALITY AS a(name, position)
)
SELECT b.metric_id,
       '[' || string_agg(
           format((SELECT template FROM point), to_char(b.bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                  b.avg, b.min, b.max, b.first, b.last, b.count, b.sum),
           ',' ORDER BY b.bucket
       ) || ']'
FROM (
    -- Grouped on the bucket's time, which is formatted once per bucket afterwards, not per sample.
    -- An aggregate not asked for is a constant null once the planner folds its condition, so it is
    -- never computed. first and last are the values at the oldest and newest time: min and max of
    -- [epoch, value] pairs need no sort within the bucket.
    SELECT u.metric_id,
           date_bin(make_interval(secs => %(bucket_seconds)s), r."timestamp", timestamptz 'epoch') AS bucket,
           CASE WHEN 'avg' = ANY (%(aggregates)s::text[]) THEN avg(u.value) END AS avg,
           CASE WHEN 'min' = ANY (%(aggregates)s::text[]) THEN min(u.value) END AS min,
           CASE WHEN 'max' = ANY (%(aggregates)s::text[]) THEN max(u.value) END AS max,
           CASE WHEN 'first' = ANY (%(aggregates)s::text[]) THEN (min(ARRAY[date_part('epoch', r."timestamp"), u.value]))[2] END AS first,
           CASE WHEN 'last' = ANY (%(aggregates)s::text[]) THEN (max(ARRAY[date_part('epoch', r."timestamp"), u.value]))[2] END AS last,
           CASE WHEN 'count' = ANY (%(aggregates)s::text[]) THEN count(*) END AS count,
           CASE WHEN 'sum' = ANY (%(aggregates)s::text[]) THEN sum(u.value) END AS sum
    FROM telemetry_reading AS r
    -- The reading's samples, its array unnested (values[i] is metric id i): each value is read once,
    -- where picking elements by position would read it again for every aggregate.
    CROSS JOIN LATERAL unnest(r."values") WITH ORDINALITY AS u(value, metric_id)
    WHERE r.gpu_id = %(gpu_id)s AND r."timestamp" >= %(start)s AND r."timestamp" <= %(end)s AND u.value IS NOT NULL
    GROUP BY 1, 2
) AS b
GROUP BY b.metric_id
