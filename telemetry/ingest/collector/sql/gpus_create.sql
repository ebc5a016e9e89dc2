-- New GPUs, each with no samples and a placeholder first and last seen that storing its samples
-- replaces. Ordered by UUID, so two workers creating the same new GPUs wait on each other's rows
-- in one order; a GPU another worker created meanwhile is left as it is.
INSERT INTO telemetry_gpu (uuid, hostname, "index", device, model_name, first_seen, last_seen, sample_count)
SELECT g.uuid, g.hostname, g.index, g.device, g.model_name, %(time)s, %(time)s, 0
FROM unnest(%(uuid)s::text[], %(hostname)s::text[], %(index)s::smallint[], %(device)s::text[], %(model)s::text[])
    AS g(uuid, hostname, index, device, model_name)
ORDER BY g.uuid
ON CONFLICT (uuid) DO NOTHING
