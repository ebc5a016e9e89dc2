-- The stored GPUs among the batch's UUIDs: one array parameter, however many GPUs a batch names.
SELECT uuid, id, hostname, "index", device, model_name FROM telemetry_gpu WHERE uuid = ANY(%(uuids)s::text[])
