-- One GPU's samples of every metric in [start, end], aggregated per metric and time bucket (aligned
-- to the epoch): a row per metric, its points one JSON array oldest first, written here because
-- formatting them in Python cost more than the query.
-- gpu_id; start, end: inclusive bounds; bucket_seconds; aggregates: names out of avg, min, max,
-- first, last, count and sum, in the order each point lists them; namespace, pod, container: only
-- readings whose label set has these (null: any); metric_ids: only these (null: all); tier: the
-- coarsest rollup whose periods fit the bucket ('hour', 'minute' or 'raw').
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
    -- Grouped on the bucket's time, formatted above once per bucket rather than once per piece.
    SELECT p.metric_id,
           date_bin(make_interval(secs => %(bucket_seconds)s), p.at, timestamptz 'epoch') AS bucket,
           -- An aggregate not asked for folds to a constant null when planned, so it is never computed.
           CASE WHEN 'avg' = ANY (%(aggregates)s::text[]) THEN sum(p.sum) / sum(p.count) END AS avg,
           CASE WHEN 'min' = ANY (%(aggregates)s::text[]) THEN min(p.min) END AS min,
           CASE WHEN 'max' = ANY (%(aggregates)s::text[]) THEN max(p.max) END AS max,
           -- The values at the oldest and newest time: min and max of [epoch, value] need no sort.
           CASE WHEN 'first' = ANY (%(aggregates)s::text[]) THEN (min(ARRAY[date_part('epoch', p.at), p.first]))[2] END AS first,
           CASE WHEN 'last' = ANY (%(aggregates)s::text[]) THEN (max(ARRAY[date_part('epoch', p.at), p.last]))[2] END AS last,
           CASE WHEN 'count' = ANY (%(aggregates)s::text[]) THEN sum(p.count) END AS count,
           CASE WHEN 'sum' = ANY (%(aggregates)s::text[]) THEN sum(p.sum) END AS sum
    FROM (
        -- Without an attribution filter: rollups where they cover a piece of the window whole, samples elsewhere.
        SELECT * FROM telemetry_summary_pieces(%(gpu_id)s, %(start)s, %(end)s, %(tier)s)
        WHERE coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NULL
        UNION ALL
        -- With one: the samples of the readings attributed so (rollups keep no attribution).
        SELECT u.metric_id::integer, r."timestamp", 1, u.value, u.value, u.value, u.value, u.value
        FROM telemetry_readings_between(%(gpu_id)s, %(start)s, %(end)s) AS r
        -- values[i] is metric id i; unnested, each value is read once, where picking by position reads it per aggregate.
        CROSS JOIN LATERAL unnest(r."values") WITH ORDINALITY AS u(value, metric_id)
        WHERE coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NOT NULL AND u.value IS NOT NULL
          AND r.label_set_id IN (
              SELECT l.id FROM telemetry_labelset AS l
              WHERE (%(namespace)s::text IS NULL OR l.namespace = %(namespace)s::text)
                AND (%(pod)s::text IS NULL OR l.pod = %(pod)s::text)
                AND (%(container)s::text IS NULL OR l.container = %(container)s::text)
          )
    ) AS p(metric_id, at, count, sum, min, max, first, last)
    WHERE %(metric_ids)s::integer[] IS NULL OR p.metric_id = ANY(%(metric_ids)s::integer[])
    GROUP BY 1, 2
) AS b
GROUP BY b.metric_id
