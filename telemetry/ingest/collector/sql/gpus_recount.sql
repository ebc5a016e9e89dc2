-- Every GPU's sample_count from the readings themselves, raw and packed (after deletes outside the collector).
UPDATE telemetry_gpu AS g SET sample_count = coalesce(
    (SELECT sum(cardinality(array_remove(r."values", NULL))) FROM telemetry_reading AS r WHERE r.gpu_id = g.id), 0)
    + coalesce((SELECT sum(h.samples) FROM telemetry_readinghour AS h WHERE h.gpu_id = g.id), 0)
