-- The stored devices among the batch's (uuid, mig_instance) keys: two arrays, however many devices.
-- IS NOT DISTINCT FROM, as the device key's NULLS NOT DISTINCT, matches a whole GPU's NULL instance.
SELECT g.uuid, g.mig_instance, g.id
FROM unnest(%(uuids)s::text[], %(instances)s::smallint[]) AS k(uuid, mig_instance)
JOIN telemetry_gpu AS g ON g.uuid = k.uuid AND g.mig_instance IS NOT DISTINCT FROM k.mig_instance
