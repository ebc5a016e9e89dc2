-- A GPU's id and the times of its oldest and newest stored samples, looked up by its UUID.
SELECT id, first_seen, last_seen FROM telemetry_gpu WHERE uuid = %(uuid)s
