-- Deletes every reading older than the cutoff and returns how many samples they held.
WITH gone AS (
    DELETE FROM telemetry_reading WHERE "timestamp" < %(cutoff)s
    RETURNING cardinality(array_remove("values", NULL)) AS n
)
SELECT coalesce(sum(n), 0) FROM gone
