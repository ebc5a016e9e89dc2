-- New devices (whole GPUs and MIG instances), each with no samples and a placeholder first and last
-- seen that storing its samples replaces. Ordered by device key, so two workers creating the same
-- new devices wait on each other's rows in one order; a device another worker created meanwhile is
-- left as it is (the key's NULLS NOT DISTINCT makes a whole GPU's NULL instance conflict too).
INSERT INTO telemetry_gpu
    (uuid, mig_instance, mig_profile, hostname, "index", device, model_name, first_seen, last_seen, sample_count)
SELECT g.uuid, g.mig_instance, g.mig_profile, g.hostname, g.index, g.device, g.model_name, %(time)s, %(time)s, 0
FROM unnest(%(uuid)s::text[], %(instance)s::smallint[], %(profile)s::text[], %(hostname)s::text[],
            %(index)s::smallint[], %(device)s::text[], %(model)s::text[])
    AS g(uuid, mig_instance, mig_profile, hostname, index, device, model_name)
ORDER BY g.uuid, g.mig_instance NULLS FIRST
ON CONFLICT (uuid, mig_instance) DO NOTHING
