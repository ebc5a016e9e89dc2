-- Each metric's sample count (its non-null values over all readings) and oldest and newest time.
-- Readings are grouped by shape first (their length and which elements are null: nearly all share
-- one or a few), so the per-metric step runs over a handful of groups, not every sample.
SELECT m.metric_id, sum(shapes.readings), min(shapes.first), max(shapes.last)
FROM (
    SELECT cardinality("values") AS length, array_positions("values", NULL) AS nulls,
           count(*) AS readings, min("timestamp") AS first, max("timestamp") AS last
    FROM telemetry_reading
    GROUP BY 1, 2
) AS shapes
CROSS JOIN LATERAL generate_series(1, shapes.length) AS m(metric_id)
WHERE m.metric_id <> ALL (shapes.nulls)
GROUP BY m.metric_id
