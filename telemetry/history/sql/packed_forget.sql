-- Before a day of packed hours is dropped: takes their samples off each device's count and returns
-- how many there were. lower, upper: the day's range, which prunes the scan to its partition.
WITH per_gpu AS (
    SELECT gpu_id, sum(samples) AS n
    FROM telemetry_readinghour
    WHERE hour >= %(lower)s AND hour < %(upper)s
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
