-- One device's readings in [start, end] nearest `start` (oldest first) or nearest `end` (newest first, `descending`),
-- raw and packed alike, as blocks that telemetry/api/window.py turns into samples. Arrays in PostgreSQL's
-- binary format (array_send), a missing value sent as NaN so every element has the same width:
-- - one row of raw readings, at most `readings` of them in the walk's order: times (timestamptz, which
--   array_send writes as microseconds since 2000-01-01),
--   label set ids (0: none) and a [reading][metric id] grid;
-- - a row per packed hour that meets the window, at most `hours` of them in the walk's order: its
--   hour (epoch microseconds), times (microseconds after it), label set ids and [metric id][reading] grid.
-- Each row also carries `attributed`: the ids of the label sets with the attribution asked (null: any).
-- gpu_id, or uuid and mig_instance (the device's key; gpu_id null); start, end: inclusive bounds;
-- descending; readings; hours; namespace, pod, container: the attribution (null: any).
WITH device AS (
    SELECT coalesce(%(gpu_id)s::bigint, (
        SELECT g.id FROM telemetry_gpu AS g
        WHERE g.uuid = %(uuid)s::text AND g.mig_instance IS NOT DISTINCT FROM %(mig_instance)s::smallint
    )) AS id
), attribution AS (
    SELECT CASE WHEN coalesce(%(namespace)s::text, %(pod)s::text, %(container)s::text) IS NOT NULL THEN ARRAY(
        SELECT l.id FROM telemetry_labelset AS l
        WHERE (%(namespace)s::text IS NULL OR l.namespace = %(namespace)s::text)
          AND (%(pod)s::text IS NULL OR l.pod = %(pod)s::text)
          AND (%(container)s::text IS NULL OR l.container = %(container)s::text)
    ) END AS label_set_ids
), in_range AS NOT MATERIALIZED (
    SELECT r."timestamp", r.label_set_id, r."values"
    FROM telemetry_reading AS r
    WHERE r.gpu_id = (SELECT id FROM device)
      AND r."timestamp" >= %(start)s::timestamptz AND r."timestamp" <= %(end)s::timestamptz
      AND ((SELECT label_set_ids FROM attribution) IS NULL OR r.label_set_id = ANY ((SELECT label_set_ids FROM attribution)::bigint[]))
), raw AS (
    -- One branch per direction, the other skipped as it starts: each walks the (gpu_id, timestamp)
    -- index one way, so the plan holds for any parameters (the API prepares this statement).
    (SELECT * FROM in_range WHERE NOT %(descending)s ORDER BY "timestamp" LIMIT %(readings)s)
    UNION ALL
    (SELECT * FROM in_range WHERE %(descending)s ORDER BY "timestamp" DESC LIMIT %(readings)s)
), hours_in_range AS NOT MATERIALIZED (
    SELECT h.hour, h.times, h.label_set_ids, h."values"
    FROM telemetry_readinghour AS h
    WHERE h.gpu_id = (SELECT id FROM device)
      AND h.hour >= date_trunc('hour', %(start)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AND h.hour <= %(end)s::timestamptz
), packed AS (
    (SELECT * FROM hours_in_range WHERE NOT %(descending)s ORDER BY hour LIMIT %(hours)s)
    UNION ALL
    (SELECT * FROM hours_in_range WHERE %(descending)s ORDER BY hour DESC LIMIT %(hours)s)
)
SELECT NULL::bigint AS hour,
       array_send(array_agg(r."timestamp")) AS times,
       array_send(array_agg(coalesce(r.label_set_id, 0))) AS label_set_ids,
       -- Each reading's values padded to the highest metric id, so that they stack into one grid.
       array_send(array_agg(array_replace(
           r."values" || array_fill(NULL::double precision, ARRAY[m.top - cardinality(r."values")]), NULL, 'NaN'
       ))) AS grid,
       (SELECT array_send(label_set_ids) FROM attribution) AS attributed
FROM raw AS r, (SELECT max(id)::integer AS top FROM telemetry_metric) AS m
HAVING count(*) > 0
UNION ALL
SELECT (extract(epoch FROM p.hour) * 1000000)::bigint, array_send(p.times), array_send(array_replace(p.label_set_ids, NULL, 0)),
       array_send(array_replace(p."values", NULL, 'NaN')), (SELECT array_send(label_set_ids) FROM attribution)
FROM packed AS p
