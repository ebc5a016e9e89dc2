-- One GPU's readings in [start, end] that no minute rollup stands for, raw and packed alike, as one row
-- that telemetry/api/buckets.py aggregates per metric and bucket (none when there are no such readings):
-- - times: timestamptz, which array_send writes as microseconds since 2000-01-01, oldest first;
-- - grid: a [reading][metric id] grid of their values, a missing value sent as NaN so every element has
--   the same width.
-- Without an attribution filter, the minute rollups stand for the packed samples of the minutes the window
-- holds whole (summary_minutes.sql reads them). With one, only readings whose label set has it, and no
-- rollup stands for any (rollups keep no attribution).
-- gpu_id; start, end: inclusive bounds; tier: 'minute' where the bucket is a whole number of minutes,
-- else 'raw'; namespace, pod, container: the attribution (null: any).
WITH readings AS (
    SELECT r."timestamp", r."values"
    -- Without an attribution filter, packed hours the window holds whole are skipped: their minute rollups hold every sample.
    FROM telemetry_readings_between(%(gpu_id)s, %(start)s, %(end)s, %(tier)s = 'minute'
                                    AND coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NULL) AS r
    -- Without one, the readings outside the minutes that rollups hold.
    WHERE NOT (coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NULL
               AND r.packed AND %(tier)s = 'minute'
               AND date_trunc('minute', r."timestamp", 'UTC') >= %(start)s::timestamptz
               AND date_trunc('minute', r."timestamp", 'UTC') + interval '1 minute' <= %(end)s::timestamptz + interval '1 microsecond'
               AND EXISTS (SELECT 1 FROM telemetry_rollupminute AS m
                           WHERE m.gpu_id = %(gpu_id)s AND m.hour = date_trunc('hour', r."timestamp", 'UTC')))
      -- With one, the readings attributed so. (A single call of the function: each call's partitions cost planning time.)
      AND (coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NULL OR r.label_set_id IN (
          SELECT l.id FROM telemetry_labelset AS l
          WHERE (%(namespace)s::text IS NULL OR l.namespace = %(namespace)s::text)
            AND (%(pod)s::text IS NULL OR l.pod = %(pod)s::text)
            AND (%(container)s::text IS NULL OR l.container = %(container)s::text)
      ))
)
SELECT array_send(array_agg(r."timestamp" ORDER BY r."timestamp")) AS times,
       -- Each reading's values padded to the highest metric id, so that they stack into one grid.
       array_send(array_agg(array_replace(
           r."values" || array_fill(NULL::double precision, ARRAY[m.top - cardinality(r."values")]), NULL, 'NaN'
       ) ORDER BY r."timestamp")) AS grid
FROM readings AS r, (SELECT max(id)::integer AS top FROM telemetry_metric) AS m
HAVING count(*) > 0
