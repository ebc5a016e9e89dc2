-- One GPU's hour rollups of the days that meet [start, end], as summary.sql sends its rollup rows
-- (telemetry_rollup_sent, migration 0010): a day's [metric id][hour] grids in PostgreSQL's binary
-- format, cut to the hours [first_slot, end_slot) that the window holds whole. The rest of the
-- window is summary.sql's.
-- gpu_id; start, end: inclusive bounds.
SELECT g.*
FROM telemetry_rolluphour AS d
CROSS JOIN LATERAL telemetry_rollup_sent(d.day, 3600, 24, %(start)s, %(end)s, d.counts, d.sums, d.mins, d.maxs, d.firsts, d.lasts) AS g
WHERE d.gpu_id = %(gpu_id)s AND d.day >= date_trunc('day', %(start)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AND d.day <= %(end)s::timestamptz
ORDER BY d.day
