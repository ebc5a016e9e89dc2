-- A device's id and the times of its oldest and newest stored samples, looked up by its key:
-- a whole GPU's UUID (mig_instance null), or a MIG instance's parent UUID and GPU instance id.
SELECT id, first_seen, last_seen FROM telemetry_gpu
WHERE uuid = %(uuid)s AND mig_instance IS NOT DISTINCT FROM %(mig_instance)s::smallint
