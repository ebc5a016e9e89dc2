"""Readings partitioned by day, so retention drops a whole day's table instead of deleting rows.

The table is rebuilt as `PARTITION BY RANGE ("timestamp")` with one partition per UTC day, named
`telemetry_reading_pYYYYMMDD`; existing readings are moved into partitions for their days. The
unique (gpu, timestamp) key stays; the primary key becomes (id, timestamp), since a partitioned
table's unique keys must hold its partition key. Partitions are created by
`telemetry_partition_ensure` (below), which the collector calls for each day it is about to write
and the history maintenance calls for the days ahead; a day is never missing at midnight.

The trim functions address readings by (gpu, time) and row address together: a row address
alone is only unique within one partition.
"""
from django.db import migrations

# Creating a partition with CREATE TABLE … PARTITION OF locks the parent against every reader and
# writer until the transaction ends; a table created apart and attached takes a lock that lets
# inserts and queries go on. That lock, taken first, keeps two workers from creating the same day
# (and, unlike an advisory lock, makes the second see the table the first created).
PARTITION_FUNCTIONS = """
CREATE FUNCTION telemetry_partition_period(parent text) RETURNS interval LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN parent = 'telemetry_rolluphour' THEN interval '1 month' ELSE interval '1 day' END
$$;

CREATE FUNCTION telemetry_partition_ensure(parent text, at timestamptz) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    period interval := telemetry_partition_period(parent);
    lower timestamptz := date_trunc(CASE WHEN period = interval '1 month' THEN 'month' ELSE 'day' END, at, 'UTC');
    name text := parent || '_p' || to_char(lower AT TIME ZONE 'UTC', CASE WHEN period = interval '1 month' THEN 'YYYYMM' ELSE 'YYYYMMDD' END);
BEGIN
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('LOCK TABLE %I IN SHARE UPDATE EXCLUSIVE MODE', parent);
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING STORAGE INCLUDING COMPRESSION)', name, parent);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           parent, name, lower, lower + period);
        END IF;
    END IF;
    RETURN name;
END
$$;
"""

_PARTITION = """
ALTER TABLE telemetry_reading RENAME TO telemetry_reading_unpartitioned;
ALTER TABLE telemetry_reading_unpartitioned RENAME CONSTRAINT reading_gpu_time_uniq TO reading_gpu_time_uniq_old;
CREATE SEQUENCE telemetry_reading_id_seq_partitioned;
CREATE TABLE telemetry_reading (
    id bigint NOT NULL DEFAULT nextval('telemetry_reading_id_seq_partitioned'),
    "timestamp" timestamptz NOT NULL,
    "values" double precision[] NOT NULL,
    gpu_id bigint NOT NULL,
    label_set_id bigint,
    CONSTRAINT telemetry_reading_partitioned_pkey PRIMARY KEY (id, "timestamp"),
    CONSTRAINT reading_gpu_time_uniq UNIQUE (gpu_id, "timestamp")
) PARTITION BY RANGE ("timestamp");
SELECT telemetry_partition_ensure('telemetry_reading', day)
FROM (SELECT DISTINCT date_trunc('day', "timestamp", 'UTC') AS day FROM telemetry_reading_unpartitioned) AS days;
INSERT INTO telemetry_reading (id, "timestamp", "values", gpu_id, label_set_id)
SELECT id, "timestamp", "values", gpu_id, label_set_id FROM telemetry_reading_unpartitioned;
SELECT setval('telemetry_reading_id_seq_partitioned', coalesce((SELECT max(id) FROM telemetry_reading), 0) + 1, false);
DROP TABLE telemetry_reading_unpartitioned;
ALTER SEQUENCE telemetry_reading_id_seq_partitioned RENAME TO telemetry_reading_id_seq;
ALTER SEQUENCE telemetry_reading_id_seq OWNED BY telemetry_reading.id;
"""

# As migration 0006's, but each step carries its reading's key: the delete and the cut find the
# reading by (gpu, timestamp), which prunes to its day's partition, and still only if its row
# address is the one the plan saw.
_TRIM_BY_KEY = """
CREATE OR REPLACE FUNCTION telemetry_trim_apply(steps telemetry_trim_step[])
RETURNS TABLE (gpu_id bigint, n bigint, through timestamptz) LANGUAGE sql VOLATILE AS $$
    WITH gone AS (
        DELETE FROM telemetry_reading AS r
        USING unnest(steps) AS s
        WHERE s.drop_n = s.n AND r.gpu_id = s.gpu_id AND r."timestamp" = s.ts AND r.ctid = s.row_ctid
        RETURNING r.gpu_id, cardinality(array_remove(r."values", NULL))::bigint AS n, r."timestamp" AS deleted
    ), cut AS (
        UPDATE telemetry_reading AS r SET "values" = telemetry_values_drop(r."values", p.drop_n)
        FROM unnest(steps) AS p
        WHERE p.drop_n < p.n AND r.gpu_id = p.gpu_id AND r."timestamp" = p.ts AND r.ctid = p.row_ctid
          AND cardinality(array_remove(r."values", NULL)) = p.n
        RETURNING r.gpu_id, p.drop_n AS n, NULL::timestamptz AS deleted
    )
    SELECT gpu_id, sum(n)::bigint, max(deleted)
    FROM (SELECT * FROM gone UNION ALL SELECT * FROM cut) AS both_kinds GROUP BY gpu_id
$$;
"""

_TRIM_BY_ADDRESS = """
CREATE OR REPLACE FUNCTION telemetry_trim_apply(steps telemetry_trim_step[])
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

_UNPARTITION = """
ALTER TABLE telemetry_reading RENAME TO telemetry_reading_partitioned;
ALTER TABLE telemetry_reading_partitioned RENAME CONSTRAINT reading_gpu_time_uniq TO reading_gpu_time_uniq_old;
CREATE TABLE telemetry_reading (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    "timestamp" timestamptz NOT NULL,
    "values" double precision[] NOT NULL,
    gpu_id bigint NOT NULL,
    label_set_id bigint,
    CONSTRAINT reading_gpu_time_uniq UNIQUE (gpu_id, "timestamp")
);
INSERT INTO telemetry_reading (id, "timestamp", "values", gpu_id, label_set_id)
OVERRIDING SYSTEM VALUE SELECT id, "timestamp", "values", gpu_id, label_set_id FROM telemetry_reading_partitioned;
SELECT setval(pg_get_serial_sequence('telemetry_reading', 'id'), coalesce((SELECT max(id) FROM telemetry_reading), 0) + 1, false);
DROP TABLE telemetry_reading_partitioned;
DROP FUNCTION telemetry_partition_ensure(text, timestamptz);
DROP FUNCTION telemetry_partition_period(text);
"""


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0007_gpu_mig_instances"),
    ]

    operations = [
        migrations.RunSQL(PARTITION_FUNCTIONS + _PARTITION, _UNPARTITION),
        migrations.RunSQL(_TRIM_BY_KEY, _TRIM_BY_ADDRESS),
    ]
