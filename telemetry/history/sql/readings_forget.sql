-- Before a day of readings is dropped: takes its samples off each device's count and returns how
-- many there were. lower, upper: the day's range, which prunes the scan to its partition.
SELECT telemetry_samples_forget(array_agg(gpu_id), array_agg(n))
FROM (
    SELECT gpu_id, sum(cardinality(array_remove("values", NULL)))::bigint AS n
    FROM telemetry_reading
    WHERE "timestamp" >= %(lower)s AND "timestamp" < %(upper)s
    GROUP BY gpu_id
) AS per_gpu
