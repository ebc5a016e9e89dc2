-- Before a day of packed hours is dropped: takes their samples off each device's count and returns
-- how many there were. lower, upper: the day's range, which prunes the scan to its partition.
SELECT telemetry_samples_forget(array_agg(gpu_id), array_agg(n))
FROM (
    SELECT gpu_id, sum(samples)::bigint AS n
    FROM telemetry_readinghour
    WHERE hour >= %(lower)s AND hour < %(upper)s
    GROUP BY gpu_id
) AS per_gpu
