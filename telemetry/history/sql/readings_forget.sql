-- Before a day of readings is dropped: takes its samples off each device's count and returns how
-- many there were. lower, upper: the day's range, which prunes the scan to its partition; GPU rows
-- locked in id order, as the collector locks them.
WITH per_gpu AS (
    SELECT gpu_id, sum(cardinality(array_remove("values", NULL))) AS n
    FROM telemetry_reading
    WHERE "timestamp" >= %(lower)s AND "timestamp" < %(upper)s
    GROUP BY gpu_id
), locked AS (
    SELECT g.id FROM telemetry_gpu AS g JOIN per_gpu AS p ON p.gpu_id = g.id ORDER BY g.id FOR UPDATE OF g
), counted AS (
    UPDATE telemetry_gpu AS g SET sample_count = g.sample_count - p.n
    FROM per_gpu AS p, locked AS l
    WHERE g.id = p.gpu_id AND l.id = g.id
    RETURNING p.n
)
SELECT coalesce(sum(n), 0)::bigint FROM counted
