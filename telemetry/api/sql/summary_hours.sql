-- One GPU's hour rollups of the days that meet [start, end], as summary.sql sends its rollup rows: a
-- day's [metric id][hour] grids in PostgreSQL's binary format (array_send), cut to the hours
-- [first_slot, end_slot) that the window holds whole. The rest of the window is summary.sql's.
-- gpu_id; start, end: inclusive bounds.
-- A grid's cells without samples hold null sums and values, sent as NaN so every element has the same width.
SELECT 3600 AS slot_seconds, date_part('epoch', d.day) AS start,
       greatest(0, ceil(date_part('epoch', %(start)s::timestamptz - d.day) / 3600))::integer AS first_slot,
       least(24, floor(date_part('epoch', %(end)s::timestamptz + interval '1 microsecond' - d.day) / 3600))::integer AS end_slot,
       NULL::bytea AS metric_ids, NULL::bytea AS first_ats, NULL::bytea AS last_ats,
       array_send(d.counts) AS counts, array_send(array_replace(d.sums, NULL, 'NaN')) AS sums,
       array_send(array_replace(d.mins, NULL, 'NaN')) AS mins, array_send(array_replace(d.maxs, NULL, 'NaN')) AS maxs,
       array_send(array_replace(d.firsts, NULL, 'NaN')) AS firsts, array_send(array_replace(d.lasts, NULL, 'NaN')) AS lasts
FROM telemetry_rolluphour AS d
WHERE d.gpu_id = %(gpu_id)s AND d.day >= date_trunc('day', %(start)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AND d.day <= %(end)s::timestamptz
ORDER BY d.day
