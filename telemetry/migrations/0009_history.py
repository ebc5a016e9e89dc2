"""Packed history and rollups: a row per device and hour once readings age, and per-minute and
per-hour aggregates of what was packed (see telemetry/history/).

- telemetry_readinghour: one device's hour. `times` (microseconds after the hour, ascending) and
  `label_set_ids` have an element per reading; `values` is 2-D, [metric id][reading], so each
  metric's values lie together and PostgreSQL's compression (lz4 where the server has it) finds
  runs in them. `counts` holds each metric's samples; `samples` their total.
- telemetry_rollupminute: per device and hour, [metric id][minute] grids of count, sum, min, max,
  first and last; written with the packed hour, from the same samples.
- telemetry_rolluphour: per device and UTC day, [metric id][hour] grids, written from the day's
  minute rollups once every hour of the day is packed.
All three are partitioned by time like the readings (the hour rollups by month), so each tier's
retention drops whole partitions.
"""
from django.db import migrations

_TABLES = """
CREATE TABLE telemetry_readinghour (
    gpu_id bigint NOT NULL,
    hour timestamptz NOT NULL,
    samples integer NOT NULL,
    readings integer NOT NULL,
    counts integer[] NOT NULL,
    times bigint[] NOT NULL,
    label_set_ids bigint[] NOT NULL,
    "values" double precision[] NOT NULL,
    CONSTRAINT telemetry_readinghour_pkey PRIMARY KEY (gpu_id, hour)
) PARTITION BY RANGE (hour);

CREATE TABLE telemetry_rollupminute (
    gpu_id bigint NOT NULL,
    hour timestamptz NOT NULL,
    counts integer[] NOT NULL,
    sums double precision[] NOT NULL,
    mins double precision[] NOT NULL,
    maxs double precision[] NOT NULL,
    firsts double precision[] NOT NULL,
    lasts double precision[] NOT NULL,
    CONSTRAINT telemetry_rollupminute_pkey PRIMARY KEY (gpu_id, hour)
) PARTITION BY RANGE (hour);

CREATE TABLE telemetry_rolluphour (
    gpu_id bigint NOT NULL,
    day timestamptz NOT NULL,
    counts integer[] NOT NULL,
    sums double precision[] NOT NULL,
    mins double precision[] NOT NULL,
    maxs double precision[] NOT NULL,
    firsts double precision[] NOT NULL,
    lasts double precision[] NOT NULL,
    CONSTRAINT telemetry_rolluphour_pkey PRIMARY KEY (gpu_id, day)
) PARTITION BY RANGE (day);

-- lz4 compresses and decompresses several times faster than pglz; a server built without it keeps pglz.
DO $$
BEGIN
    ALTER TABLE telemetry_readinghour ALTER COLUMN "values" SET COMPRESSION lz4,
        ALTER COLUMN times SET COMPRESSION lz4, ALTER COLUMN label_set_ids SET COMPRESSION lz4;
    ALTER TABLE telemetry_rollupminute ALTER COLUMN sums SET COMPRESSION lz4, ALTER COLUMN mins SET COMPRESSION lz4,
        ALTER COLUMN maxs SET COMPRESSION lz4, ALTER COLUMN firsts SET COMPRESSION lz4, ALTER COLUMN lasts SET COMPRESSION lz4;
    ALTER TABLE telemetry_rolluphour ALTER COLUMN sums SET COMPRESSION lz4, ALTER COLUMN mins SET COMPRESSION lz4,
        ALTER COLUMN maxs SET COMPRESSION lz4, ALTER COLUMN firsts SET COMPRESSION lz4, ALTER COLUMN lasts SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4: packed history is compressed with pglz';
END
$$;
"""

# telemetry_hour_readings turns a packed hour back into its readings, in time order: element k of
# the [metric][reading] grid, read in storage order, is metric (k - 1) / n + 1 of reading (k - 1) % n + 1.
#
# telemetry_readings_between is every reading of one device in [lo, hi], raw and packed alike: the
# one source of the API's windows and summaries; `whole_hours_skipped` leaves out the packed hours
# that the window holds whole (the summary reads those from their rollups).
#
# telemetry_summary_pieces is the same samples as partial aggregates, each from the coarsest tier
# that covers it whole: an hour of a day with an hour rollup, else a minute of a packed hour, else
# the sample itself (the readings not packed, and packed ones in a minute the window cuts).
# telemetry_samples_forget takes samples deleted or about to be dropped off their devices' counts,
# the GPU rows locked in id order as the collector locks them; it returns the samples taken off.
#
# telemetry_rollups_forget deletes the rollups that packed hours no longer packed stood for: each
# hour's minute rollup and its day's hour rollup (written again once the day is whole again).
#
# telemetry_grid builds a rollup's [metric id][slot] grids from its cells (a metric or slot
# without one counts 0); telemetry_grid_cells lists a grid's cells that hold samples.
#
# `tier` is the coarsest the caller may use: 'hour', 'minute' or 'raw'. Each piece lies within one
# bucket of any bucket size that is a multiple of its tier.
_FUNCTIONS = """
CREATE FUNCTION telemetry_hour_readings(hour timestamptz, readings integer, times bigint[], label_set_ids bigint[],
                                        grid double precision[])
RETURNS TABLE ("timestamp" timestamptz, label_set_id bigint, "values" double precision[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hour + t.offset_us * interval '1 microsecond', t.label_set_id, c.vals
    FROM unnest(times, label_set_ids) WITH ORDINALITY AS t(offset_us, label_set_id, i)
    JOIN (
        SELECT (e.k - 1) % readings + 1 AS i, array_agg(e.v ORDER BY e.k) AS vals
        FROM unnest(grid) WITH ORDINALITY AS e(v, k)
        GROUP BY 1
    ) AS c ON c.i = t.i
$$;

CREATE FUNCTION telemetry_readings_between(gpu bigint, lo timestamptz, hi timestamptz, whole_hours_skipped boolean DEFAULT false)
RETURNS TABLE ("timestamp" timestamptz, label_set_id bigint, "values" double precision[], packed boolean)
LANGUAGE sql STABLE AS $$
    SELECT r."timestamp", r.label_set_id, r."values", false
    FROM telemetry_reading AS r
    WHERE r.gpu_id = gpu AND r."timestamp" >= lo AND r."timestamp" <= hi
    UNION ALL
    SELECT p."timestamp", p.label_set_id, p."values", true
    FROM telemetry_readinghour AS h
    CROSS JOIN LATERAL telemetry_hour_readings(h.hour, h.readings, h.times, h.label_set_ids, h."values") AS p
    WHERE h.gpu_id = gpu AND h.hour >= date_trunc('hour', lo, 'UTC') AND h.hour <= hi
      AND NOT (whole_hours_skipped AND h.hour >= lo AND h.hour + interval '1 hour' <= hi + interval '1 microsecond')
      AND p."timestamp" >= lo AND p."timestamp" <= hi
$$;

CREATE FUNCTION telemetry_samples_forget(gpu_ids bigint[], samples bigint[]) RETURNS bigint LANGUAGE sql VOLATILE AS $$
    WITH per_gpu AS (
        SELECT * FROM unnest(gpu_ids, samples) AS p(gpu_id, n)
    ), locked AS (
        SELECT g.id FROM telemetry_gpu AS g JOIN per_gpu AS p ON p.gpu_id = g.id ORDER BY g.id FOR UPDATE OF g
    ), counted AS (
        UPDATE telemetry_gpu AS g SET sample_count = g.sample_count - p.n
        FROM per_gpu AS p, locked AS l
        WHERE g.id = p.gpu_id AND l.id = g.id
        RETURNING p.n
    )
    SELECT coalesce(sum(n), 0)::bigint FROM counted
$$;

CREATE FUNCTION telemetry_rollups_forget(gpu_ids bigint[], hours timestamptz[]) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    WITH gone AS (
        SELECT * FROM unnest(gpu_ids, hours) AS g(gpu_id, hour)
    ), minutes AS (
        DELETE FROM telemetry_rollupminute AS m USING gone AS g WHERE m.gpu_id = g.gpu_id AND m.hour = g.hour
        RETURNING 1
    ), days AS (
        DELETE FROM telemetry_rolluphour AS d USING gone AS g
        WHERE d.gpu_id = g.gpu_id AND d.day = date_trunc('day', g.hour, 'UTC')
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM minutes) + (SELECT count(*) FROM days)
$$;

CREATE FUNCTION telemetry_grid(slots integer, metric_ids integer[], slot_ids integer[], counts bigint[],
                               sums double precision[], mins double precision[], maxs double precision[],
                               firsts double precision[], lasts double precision[])
RETURNS TABLE (counts integer[], sums double precision[], mins double precision[], maxs double precision[],
               firsts double precision[], lasts double precision[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH cells AS (
        SELECT * FROM unnest(metric_ids, slot_ids, counts, sums, mins, maxs, firsts, lasts)
            AS c(metric_id, slot, count, sum, min, max, first, last)
    ), metric_rows AS (
        SELECT m.metric_id,
               array_agg(coalesce(c.count, 0)::integer ORDER BY s.slot) AS counts, array_agg(c.sum ORDER BY s.slot) AS sums,
               array_agg(c.min ORDER BY s.slot) AS mins, array_agg(c.max ORDER BY s.slot) AS maxs,
               array_agg(c.first ORDER BY s.slot) AS firsts, array_agg(c.last ORDER BY s.slot) AS lasts
        FROM generate_series(1, (SELECT max(metric_id) FROM cells)) AS m(metric_id)
        CROSS JOIN generate_series(0, slots - 1) AS s(slot)
        LEFT JOIN cells AS c ON c.metric_id = m.metric_id AND c.slot = s.slot
        GROUP BY m.metric_id
    )
    SELECT array_agg(counts ORDER BY metric_id), array_agg(sums ORDER BY metric_id), array_agg(mins ORDER BY metric_id),
           array_agg(maxs ORDER BY metric_id), array_agg(firsts ORDER BY metric_id), array_agg(lasts ORDER BY metric_id)
    FROM metric_rows
$$;

CREATE FUNCTION telemetry_grid_cells(counts integer[], sums double precision[], mins double precision[],
                                     maxs double precision[], firsts double precision[], lasts double precision[])
RETURNS TABLE (metric_id integer, slot integer, count integer, sum double precision, min double precision,
               max double precision, first double precision, last double precision)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((k - 1) / array_length(counts, 2) + 1)::integer, ((k - 1) % array_length(counts, 2))::integer, c, s, mn, mx, f, l
    FROM unnest(counts, sums, mins, maxs, firsts, lasts) WITH ORDINALITY AS g(c, s, mn, mx, f, l, k)
    WHERE c > 0
$$;

CREATE FUNCTION telemetry_summary_pieces(gpu bigint, lo timestamptz, hi timestamptz, tier text)
RETURNS TABLE (metric_id integer, at timestamptz, count bigint, sum double precision, min double precision,
               max double precision, first double precision, last double precision)
LANGUAGE sql STABLE AS $$
    WITH whole_hours AS (
        -- Hours of days with an hour rollup that the window holds whole.
        SELECT d.day + c.slot * interval '1 hour' AS at, c.*
        FROM telemetry_rolluphour AS d
        CROSS JOIN LATERAL telemetry_grid_cells(d.counts, d.sums, d.mins, d.maxs, d.firsts, d.lasts) AS c
        WHERE tier = 'hour' AND d.gpu_id = gpu AND d.day >= date_trunc('day', lo, 'UTC') AND d.day <= hi
          AND d.day + c.slot * interval '1 hour' >= lo AND d.day + (c.slot + 1) * interval '1 hour' <= hi + interval '1 microsecond'
    ), covered_days AS (
        SELECT d.day FROM telemetry_rolluphour AS d
        WHERE tier = 'hour' AND d.gpu_id = gpu AND d.day >= date_trunc('day', lo, 'UTC') AND d.day <= hi
    ), whole_minutes AS (
        -- Minutes of packed hours that the window holds whole, outside the hours above.
        SELECT m.hour + c.slot * interval '1 minute' AS at, c.*
        FROM telemetry_rollupminute AS m
        CROSS JOIN LATERAL telemetry_grid_cells(m.counts, m.sums, m.mins, m.maxs, m.firsts, m.lasts) AS c
        WHERE tier IN ('hour', 'minute') AND m.gpu_id = gpu AND m.hour >= date_trunc('hour', lo, 'UTC') AND m.hour <= hi
          AND m.hour + c.slot * interval '1 minute' >= lo
          AND m.hour + (c.slot + 1) * interval '1 minute' <= hi + interval '1 microsecond'
          AND NOT (m.hour >= lo AND m.hour + interval '1 hour' <= hi + interval '1 microsecond'
                   AND date_trunc('day', m.hour, 'UTC') IN (SELECT day FROM covered_days))
    ), samples AS (
        SELECT u.metric_id::integer, r."timestamp" AS at, u.value
        -- Packed hours the window holds whole are skipped: their minute rollups hold every sample.
        FROM telemetry_readings_between(gpu, lo, hi, tier IN ('hour', 'minute')) AS r
        CROSS JOIN LATERAL unnest(r."values") WITH ORDINALITY AS u(value, metric_id)
        WHERE u.value IS NOT NULL
          AND NOT (r.packed AND tier IN ('hour', 'minute')
                   AND date_trunc('minute', r."timestamp", 'UTC') >= lo
                   AND date_trunc('minute', r."timestamp", 'UTC') + interval '1 minute' <= hi + interval '1 microsecond'
                   AND EXISTS (SELECT 1 FROM telemetry_rollupminute AS m
                               WHERE m.gpu_id = gpu AND m.hour = date_trunc('hour', r."timestamp", 'UTC')))
    )
    SELECT metric_id, at, count, sum, min, max, first, last FROM whole_hours
    UNION ALL
    SELECT metric_id, at, count, sum, min, max, first, last FROM whole_minutes
    UNION ALL
    SELECT metric_id, at, 1, value, value, value, value, value FROM samples
$$;
"""

_DROP = """
DROP FUNCTION telemetry_summary_pieces(bigint, timestamptz, timestamptz, text);
DROP FUNCTION telemetry_samples_forget(bigint[], bigint[]);
DROP FUNCTION telemetry_rollups_forget(bigint[], timestamptz[]);
DROP FUNCTION telemetry_grid(integer, integer[], integer[], bigint[], double precision[], double precision[],
                             double precision[], double precision[], double precision[]);
DROP FUNCTION telemetry_grid_cells(integer[], double precision[], double precision[], double precision[],
                                   double precision[], double precision[]);
DROP FUNCTION telemetry_readings_between(bigint, timestamptz, timestamptz, boolean);
DROP FUNCTION telemetry_hour_readings(timestamptz, integer, bigint[], bigint[], double precision[]);
DROP TABLE telemetry_rolluphour;
DROP TABLE telemetry_rollupminute;
DROP TABLE telemetry_readinghour;
"""


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0008_reading_partitions"),
    ]

    operations = [
        migrations.RunSQL(_TABLES + _FUNCTIONS, _DROP),
    ]
