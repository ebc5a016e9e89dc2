-- Deletes the packed hours that end at or before the cutoff (after whole days were dropped, those
-- of the cutoff's own day) and takes their samples off each device's count; an hour the cutoff
-- falls inside is kept whole. Returns how many samples they held.
WITH gone AS (
    DELETE FROM telemetry_readinghour WHERE hour + interval '1 hour' <= %(cutoff)s
    RETURNING gpu_id, samples
), per_gpu AS (
    SELECT gpu_id, sum(samples) AS n FROM gone GROUP BY gpu_id
), locked AS (
    SELECT g.id FROM telemetry_gpu AS g JOIN per_gpu AS p ON p.gpu_id = g.id ORDER BY g.id FOR UPDATE OF g
), counted AS (
    UPDATE telemetry_gpu AS g SET sample_count = g.sample_count - p.n
    FROM per_gpu AS p, locked AS l
    WHERE g.id = p.gpu_id AND l.id = g.id
    RETURNING p.n
)
SELECT coalesce(sum(n), 0)::bigint FROM counted
