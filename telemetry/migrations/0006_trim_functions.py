"""The collector's trim as SQL functions: one copy, used by its insert statement and its exact pass.

The trim is two functions because its parts need different snapshots. The plan (which readings
to remove) is STABLE, so it reads the snapshot of the statement that calls it: the insert
statement plans in the snapshot it counted the GPU's samples in, and a newer one could show
readings that its count does not include. The removal changes rows, so it is VOLATILE and reads
a newer snapshot; it goes by the plan's row addresses, so a reading that another worker removed
or changed meanwhile is skipped (or counted as it really was), never replaced by another one.
"""
from django.db import migrations

# telemetry_trim_plan walks one GPU's readings by its (gpu, timestamp) index from after
# `trimmed_through`, reading at most `rows_read` readings older than `before`, until `excess`
# samples are covered: each step removes a reading whole (drop_n = n) or its first drop_n
# samples by metric id. It is one SELECT of a non-strict STABLE SQL function, so PostgreSQL
# inlines it into the calling statement and plans it as a subquery.
#
# telemetry_trim_apply performs a plan and returns what each GPU lost: whole readings are
# deleted by row address (a TID scan, so the cost is what is removed, never a scan of the table),
# a boundary reading is cut only if it still holds the samples the plan saw (another worker may
# have cut or merged it since), and RETURNING reports the row versions really deleted, so the
# count stays exact whatever the plan saw. `through` is the newest reading deleted, the GPU's
# next `trimmed_through`.
_FUNCTIONS = """
CREATE TYPE telemetry_trim_step AS (gpu_id bigint, row_ctid tid, ts timestamptz, n integer, drop_n bigint);

CREATE FUNCTION telemetry_trim_plan(
    gpu bigint, excess bigint, rows_read bigint, trimmed_through timestamptz, before timestamptz)
RETURNS SETOF telemetry_trim_step LANGUAGE sql STABLE AS $$
    SELECT gpu, row_ctid, ts, n, least(n, excess - (upto - n)) FROM (
        SELECT row_ctid, ts, n, sum(n) OVER (ORDER BY ts) AS upto FROM (
            SELECT ctid AS row_ctid, "timestamp" AS ts, cardinality(array_remove("values", NULL)) AS n
            FROM telemetry_reading
            WHERE gpu_id = gpu AND "timestamp" > coalesce(trimmed_through, '-infinity') AND "timestamp" < before
            ORDER BY "timestamp" LIMIT rows_read
        ) AS oldest
    ) AS walked
    WHERE upto - n < excess
$$;

CREATE FUNCTION telemetry_trim_apply(steps telemetry_trim_step[])
RETURNS TABLE (gpu_id bigint, n bigint, through timestamptz) LANGUAGE sql VOLATILE AS $$
    WITH gone AS (
        DELETE FROM telemetry_reading
        WHERE ctid = ANY(ARRAY(SELECT s.row_ctid FROM unnest(steps) AS s WHERE s.drop_n = s.n))
        RETURNING gpu_id, cardinality(array_remove("values", NULL))::bigint AS n, "timestamp" AS deleted
    ), cut AS (
        UPDATE telemetry_reading AS r SET "values" = telemetry_values_drop(r."values", p.drop_n)
        FROM unnest(steps) AS p
        WHERE r.ctid = ANY(ARRAY(SELECT s.row_ctid FROM unnest(steps) AS s WHERE s.drop_n < s.n))
          AND p.gpu_id = r.gpu_id AND p.ts = r."timestamp" AND cardinality(array_remove(r."values", NULL)) = p.n
        RETURNING r.gpu_id, p.drop_n AS n, NULL::timestamptz AS deleted
    )
    SELECT gpu_id, sum(n)::bigint, max(deleted)
    FROM (SELECT * FROM gone UNION ALL SELECT * FROM cut) AS both_kinds GROUP BY gpu_id
$$;
"""

_DROP_FUNCTIONS = """
DROP FUNCTION telemetry_trim_apply(telemetry_trim_step[]);
DROP FUNCTION telemetry_trim_plan(bigint, bigint, bigint, timestamptz, timestamptz);
DROP TYPE telemetry_trim_step;
"""


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0005_gpu_trimmed_through"),
    ]

    operations = [
        migrations.RunSQL(_FUNCTIONS, _DROP_FUNCTIONS),
    ]
