-- Writes the hour rollup of each of these device-days that is whole, from its minute rollups: the
-- day ended before `before` (the packing boundary) and none of its readings is left unpacked.
-- Written again, whole, when an hour of the day is packed again after a late sample.
-- ids: devices; days: UTC days (each device with each day); before: the packing boundary.
WITH whole_days AS (
    SELECT g.gpu_id, d.day
    FROM unnest(%(ids)s::bigint[]) AS g(gpu_id) CROSS JOIN unnest(%(days)s::timestamptz[]) AS d(day)
    WHERE d.day + interval '1 day' <= %(before)s
      AND NOT EXISTS (SELECT 1 FROM telemetry_reading AS r
                      WHERE r.gpu_id = g.gpu_id AND r."timestamp" >= d.day AND r."timestamp" < d.day + interval '1 day')
), cells AS (
    SELECT w.gpu_id, w.day, c.metric_id, extract(hour FROM m.hour AT TIME ZONE 'UTC')::integer AS slot,
           sum(c.count)::bigint AS count, sum(c.sum) AS sum, min(c.min) AS min, max(c.max) AS max,
           (min(ARRAY[extract(epoch FROM m.hour)::double precision + c.slot * 60, c.first]))[2] AS first,
           (max(ARRAY[extract(epoch FROM m.hour)::double precision + c.slot * 60, c.last]))[2] AS last
    FROM whole_days AS w
    JOIN telemetry_rollupminute AS m ON m.gpu_id = w.gpu_id AND m.hour >= w.day AND m.hour < w.day + interval '1 day'
    CROSS JOIN LATERAL telemetry_grid_cells(m.counts, m.sums, m.mins, m.maxs, m.firsts, m.lasts) AS c
    GROUP BY 1, 2, 3, 4
), written AS (
    INSERT INTO telemetry_rolluphour AS h (gpu_id, day, counts, sums, mins, maxs, firsts, lasts)
    SELECT c.gpu_id, c.day, g.*
    FROM (
        SELECT gpu_id, day, array_agg(metric_id) AS metric_ids, array_agg(slot) AS slots, array_agg(count) AS counts,
               array_agg(sum) AS sums, array_agg(min) AS mins, array_agg(max) AS maxs,
               array_agg(first) AS firsts, array_agg(last) AS lasts
        FROM cells GROUP BY gpu_id, day
    ) AS c
    CROSS JOIN LATERAL telemetry_grid(24, c.metric_ids, c.slots, c.counts, c.sums, c.mins, c.maxs, c.firsts, c.lasts) AS g
    ORDER BY c.gpu_id, c.day
    ON CONFLICT (gpu_id, day) DO UPDATE
    SET counts = excluded.counts, sums = excluded.sums, mins = excluded.mins, maxs = excluded.maxs,
        firsts = excluded.firsts, lasts = excluded.lasts
    RETURNING 1
)
SELECT count(*) FROM written
