-- Packs these devices' readings older than `before` (an hour boundary) into one row per device
-- and hour, and writes each packed hour's minute rollup from the same samples. Hours are never
-- packed twice: a late sample for a packed hour unpacks it first (hours_unpack.sql), so here
-- every hour is new. Returns the hours packed, the samples they hold, and the days they touched.
-- ids: the devices; before: the newest hour boundary to pack up to.
WITH moved AS (
    DELETE FROM telemetry_reading
    WHERE gpu_id = ANY(%(ids)s::bigint[]) AND "timestamp" < %(before)s
    RETURNING gpu_id, "timestamp", label_set_id, "values"
), readings AS (
    SELECT gpu_id, date_trunc('hour', "timestamp", 'UTC') AS hour, "timestamp", label_set_id, "values",
           row_number() OVER (PARTITION BY gpu_id, date_trunc('hour', "timestamp", 'UTC') ORDER BY "timestamp") AS i,
           max(cardinality("values")) OVER (PARTITION BY gpu_id, date_trunc('hour', "timestamp", 'UTC')) AS width
    FROM moved
), elements AS (
    -- Every (reading, metric) cell of each hour's grid, a missing value as NULL.
    SELECT r.gpu_id, r.hour, r.i, r."timestamp", m.metric_id, r."values"[m.metric_id] AS value
    FROM readings AS r CROSS JOIN LATERAL generate_series(1, r.width) AS m(metric_id)
), per_metric AS (
    SELECT gpu_id, hour, metric_id, array_agg(value ORDER BY i) AS vals, count(value)::integer AS n
    FROM elements GROUP BY gpu_id, hour, metric_id
), per_hour AS (
    SELECT gpu_id, hour,
           array_agg((extract(epoch FROM "timestamp" - hour) * 1000000)::bigint ORDER BY i) AS times,
           array_agg(label_set_id ORDER BY i) AS label_set_ids
    FROM readings GROUP BY gpu_id, hour
), packed AS (
    INSERT INTO telemetry_readinghour (gpu_id, hour, samples, readings, counts, times, label_set_ids, "values")
    SELECT p.gpu_id, p.hour, sum(p.n), cardinality(h.times), array_agg(p.n ORDER BY p.metric_id), h.times, h.label_set_ids,
           array_agg(p.vals ORDER BY p.metric_id)
    FROM per_metric AS p JOIN per_hour AS h ON h.gpu_id = p.gpu_id AND h.hour = p.hour
    GROUP BY p.gpu_id, p.hour, h.times, h.label_set_ids
    ORDER BY p.gpu_id, p.hour
    RETURNING gpu_id, hour, samples
), cells AS (
    SELECT gpu_id, hour, metric_id, extract(minute FROM "timestamp" AT TIME ZONE 'UTC')::integer AS minute,
           count(value)::integer AS count, sum(value) AS sum, min(value) AS min, max(value) AS max,
           (min(ARRAY[extract(epoch FROM "timestamp")::double precision, value]) FILTER (WHERE value IS NOT NULL))[2] AS first,
           (max(ARRAY[extract(epoch FROM "timestamp")::double precision, value]) FILTER (WHERE value IS NOT NULL))[2] AS last
    FROM elements GROUP BY 1, 2, 3, 4
), minutes AS (
    INSERT INTO telemetry_rollupminute (gpu_id, hour, counts, sums, mins, maxs, firsts, lasts)
    SELECT c.gpu_id, c.hour, g.*
    FROM (
        SELECT gpu_id, hour, array_agg(metric_id) AS metric_ids, array_agg(minute) AS slots, array_agg(count::bigint) AS counts,
               array_agg(sum) AS sums, array_agg(min) AS mins, array_agg(max) AS maxs,
               array_agg(first) AS firsts, array_agg(last) AS lasts
        FROM cells WHERE count > 0 GROUP BY gpu_id, hour
    ) AS c
    CROSS JOIN LATERAL telemetry_grid(60, c.metric_ids, c.slots, c.counts, c.sums, c.mins, c.maxs, c.firsts, c.lasts) AS g
    ORDER BY c.gpu_id, c.hour
    RETURNING 1
)
SELECT count(*), coalesce(sum(samples), 0)::bigint,
       coalesce(array_agg(DISTINCT date_trunc('day', hour, 'UTC')), '{}'), (SELECT count(*) FROM minutes)
FROM packed
