-- The devices with readings older than `before`, and the oldest such reading's time.
SELECT gpu_id, min("timestamp") FROM telemetry_reading WHERE "timestamp" < %(before)s GROUP BY gpu_id ORDER BY gpu_id
