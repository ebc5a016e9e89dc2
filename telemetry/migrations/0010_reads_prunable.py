"""Reads that PostgreSQL can narrow to the partitions they need when it plans them.

- The summary reads rollup rows whole and merges them in the API (telemetry/api/buckets.py), so the
  function that unnested them cell by cell in the database goes.
- telemetry_rollup_sent is a rollup row as the summary statements send it: its [metric id][slot]
  grids in PostgreSQL's binary format (array_send), a cell without samples holding NaN so that
  every element has the same width, and the slots [first_slot, end_slot) that [lo, hi] holds whole.
- telemetry_readings_between bounds the packed hours by the hour of `lo` written with immutable
  functions (`date_trunc` of a timestamp at UTC): date_trunc(…, 'UTC') is only stable, so the
  planner could not leave out any partition of packed hours before `hi`, and planning a long
  window's query grew with every day of history.
"""
from django.db import migrations

_PIECES = """
CREATE FUNCTION telemetry_summary_pieces(gpu bigint, lo timestamptz, hi timestamptz, tier text)
RETURNS TABLE (metric_id integer, at timestamptz, count bigint, sum double precision, min double precision,
               max double precision, first double precision, last double precision)
LANGUAGE sql STABLE AS $$
    WITH whole_hours AS (
        SELECT d.day + c.slot * interval '1 hour' AS at, c.*
        FROM telemetry_rolluphour AS d
        CROSS JOIN LATERAL telemetry_grid_cells(d.counts, d.sums, d.mins, d.maxs, d.firsts, d.lasts) AS c
        WHERE tier = 'hour' AND d.gpu_id = gpu AND d.day >= date_trunc('day', lo, 'UTC') AND d.day <= hi
          AND d.day + c.slot * interval '1 hour' >= lo AND d.day + (c.slot + 1) * interval '1 hour' <= hi + interval '1 microsecond'
    ), covered_days AS (
        SELECT d.day FROM telemetry_rolluphour AS d
        WHERE tier = 'hour' AND d.gpu_id = gpu AND d.day >= date_trunc('day', lo, 'UTC') AND d.day <= hi
    ), whole_minutes AS (
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


_ROLLUP_SENT = """
CREATE FUNCTION telemetry_rollup_sent(period timestamptz, width integer, slots integer, lo timestamptz, hi timestamptz,
                                      count_grid integer[], sum_grid double precision[], min_grid double precision[],
                                      max_grid double precision[], first_grid double precision[], last_grid double precision[])
RETURNS TABLE (slot_seconds integer, start double precision, first_slot integer, end_slot integer, metric_ids bytea,
               first_ats bytea, last_ats bytea, counts bytea, sums bytea, mins bytea, maxs bytea, firsts bytea, lasts bytea)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT width, date_part('epoch', period),
           greatest(0, ceil(date_part('epoch', lo - period) / width))::integer,
           least(slots, floor(date_part('epoch', hi + interval '1 microsecond' - period) / width))::integer,
           NULL::bytea, NULL::bytea, NULL::bytea,
           array_send(count_grid), array_send(array_replace(sum_grid, NULL, 'NaN')),
           array_send(array_replace(min_grid, NULL, 'NaN')), array_send(array_replace(max_grid, NULL, 'NaN')),
           array_send(array_replace(first_grid, NULL, 'NaN')), array_send(array_replace(last_grid, NULL, 'NaN'))
$$;
"""
_ROLLUP_SENT_DROP = """
DROP FUNCTION telemetry_rollup_sent(timestamptz, integer, integer, timestamptz, timestamptz, integer[], double precision[],
                                    double precision[], double precision[], double precision[], double precision[]);
"""

_READINGS_BETWEEN = """
CREATE OR REPLACE FUNCTION telemetry_readings_between(gpu bigint, lo timestamptz, hi timestamptz, whole_hours_skipped boolean DEFAULT false)
RETURNS TABLE ("timestamp" timestamptz, label_set_id bigint, "values" double precision[], packed boolean)
LANGUAGE sql STABLE AS $$
    SELECT r."timestamp", r.label_set_id, r."values", false
    FROM telemetry_reading AS r
    WHERE r.gpu_id = gpu AND r."timestamp" >= lo AND r."timestamp" <= hi
    UNION ALL
    SELECT p."timestamp", p.label_set_id, p."values", true
    FROM telemetry_readinghour AS h
    CROSS JOIN LATERAL telemetry_hour_readings(h.hour, h.readings, h.times, h.label_set_ids, h."values") AS p
    WHERE h.gpu_id = gpu AND h.hour >= date_trunc('hour', lo AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AND h.hour <= hi
      AND NOT (whole_hours_skipped AND h.hour >= lo AND h.hour + interval '1 hour' <= hi + interval '1 microsecond')
      AND p."timestamp" >= lo AND p."timestamp" <= hi
$$;
"""
_READINGS_BETWEEN_BEFORE = _READINGS_BETWEEN.replace(
    "date_trunc('hour', lo AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'", "date_trunc('hour', lo, 'UTC')")


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0009_history"),
    ]

    operations = [
        migrations.RunSQL("DROP FUNCTION telemetry_summary_pieces(bigint, timestamptz, timestamptz, text);", _PIECES),
        migrations.RunSQL(_READINGS_BETWEEN, _READINGS_BETWEEN_BEFORE),
        migrations.RunSQL(_ROLLUP_SENT, _ROLLUP_SENT_DROP),
    ]
