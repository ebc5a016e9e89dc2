-- One GPU's hour rollups of the days that meet [start, end]: each day (epoch seconds), its row's
-- version, and its whole [metric id][hour] grids as telemetry_rollup_sent sends them (migration
-- 0010), unless the caller already holds that version of the day (telemetry/api/hour_rollups.py).
-- A row's version is its xmin and ctid: every write of the row changes them. The rest of the
-- window is summary_minutes.sql's and summary_readings.sql's.
-- gpu_id; start, end: inclusive bounds; held_days, held_versions: the (day, version) pairs held.
SELECT date_part('epoch', d.day)::bigint AS day, d.xmin::text || '/' || d.ctid::text AS version,
       g.counts, g.sums, g.mins, g.maxs, g.firsts, g.lasts
FROM telemetry_rolluphour AS d
LEFT JOIN LATERAL (
    SELECT s.*
    FROM telemetry_rollup_sent(d.day, 3600, 24, d.day, d.day, d.counts, d.sums, d.mins, d.maxs, d.firsts, d.lasts) AS s
    WHERE NOT EXISTS (
        SELECT FROM unnest(%(held_days)s::bigint[], %(held_versions)s::text[]) AS h(day, version)
        WHERE h.day = date_part('epoch', d.day)::bigint AND h.version = d.xmin::text || '/' || d.ctid::text
    )
    OFFSET 0  -- kept a subquery of its own, so that a held day's grids are not computed at all
) AS g ON true
WHERE d.gpu_id = %(gpu_id)s AND d.day >= date_trunc('day', %(start)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
  AND d.day <= %(end)s::timestamptz
ORDER BY d.day
