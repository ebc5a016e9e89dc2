-- Each metric's sample count (its non-null values over all readings) and oldest and newest time.
SELECT m.metric_id, sum(shapes.readings), min(shapes.first), max(shapes.last)
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
