-- One device's packed hours, newest first: the hour, its readings and samples.
SELECT hour, readings, samples FROM telemetry_readinghour
WHERE gpu_id = %(gpu_id)s
ORDER BY hour DESC
LIMIT %(limit)s
