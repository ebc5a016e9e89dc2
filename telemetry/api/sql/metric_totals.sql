-- Each metric's sample count (its non-null values over all readings, raw and packed) and oldest and newest time.
WITH raw AS (
    SELECT m.metric_id, sum(shapes.readings) AS n, min(shapes.first) AS first, max(shapes.last) AS last
    FROM (
        -- Grouped by shape first (length, which elements are null): nearly all readings share a few.
        SELECT cardinality("values") AS length, array_positions("values", NULL) AS nulls,
               count(*) AS readings, min("timestamp") AS first, max("timestamp") AS last
        FROM telemetry_reading
        GROUP BY 1, 2
    ) AS shapes
    CROSS JOIN LATERAL generate_series(1, shapes.length) AS m(metric_id)
    WHERE m.metric_id <> ALL (shapes.nulls)
    GROUP BY m.metric_id
), packed AS (
    -- A packed hour counts each metric's samples; its first and last times bound them to the hour's readings.
    SELECT m.metric_id, sum(h.counts[m.metric_id]) AS n,
           min(h.hour + h.times[1] * interval '1 microsecond') AS first,
           max(h.hour + h.times[h.readings] * interval '1 microsecond') AS last
    FROM telemetry_readinghour AS h
    CROSS JOIN LATERAL generate_series(1, cardinality(h.counts)) AS m(metric_id)
    WHERE h.counts[m.metric_id] > 0
    GROUP BY m.metric_id
)
SELECT metric_id, sum(n), min(first), max(last)
FROM (SELECT * FROM raw UNION ALL SELECT * FROM packed) AS both_kinds
GROUP BY metric_id
