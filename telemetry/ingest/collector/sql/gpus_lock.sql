-- The exact pass's GPUs, locked in id order so its snapshot sees every committed change to them.
SELECT 1 FROM telemetry_gpu WHERE id = ANY(%(ids)s::integer[]) ORDER BY id FOR UPDATE
