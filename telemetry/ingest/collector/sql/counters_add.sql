-- Adds to the shared counters; in name order, so concurrent workers lock the rows in one order.
INSERT INTO telemetry_ingestcounter (name, value)
SELECT d.name, d.delta FROM unnest(%(names)s::text[], %(deltas)s::bigint[]) AS d(name, delta)
ORDER BY d.name
ON CONFLICT (name) DO UPDATE SET value = telemetry_ingestcounter.value + excluded.value
