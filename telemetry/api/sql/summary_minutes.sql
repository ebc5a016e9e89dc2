-- One GPU's minute rollups that meet [start, end], each as its [metric id][minute] grids cut to the
-- minutes [first_slot, end_slot) that the window holds whole (telemetry_rollup_sent, migration 0010), in
-- PostgreSQL's binary array format. telemetry/api/buckets.py merges them into the buckets with the
-- partials of the readings they do not stand for (summary_readings.sql); hour rollups are read first,
-- by summary_hours.sql.
-- gpu_id; start, end: inclusive bounds.
SELECT g.*
FROM telemetry_rollupminute AS m
CROSS JOIN LATERAL telemetry_rollup_sent(m.hour, 60, 60, %(start)s, %(end)s, m.counts, m.sums, m.mins, m.maxs, m.firsts, m.lasts) AS g
WHERE m.gpu_id = %(gpu_id)s
  AND m.hour >= date_trunc('hour', %(start)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AND m.hour <= %(end)s::timestamptz
