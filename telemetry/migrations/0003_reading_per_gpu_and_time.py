"""One row per (GPU, time) with the metric values in an array, instead of one row per sample.

Existing samples are moved into readings before the sample table is dropped, so an upgrade
keeps every stored value. It also creates the array functions that the collector uses to merge
a reading that arrives in parts and to trim one in part.
"""
from django.db import migrations, models

import telemetry.models

# The collector's array helpers, element-wise, arrays of unequal length padded with nulls by the
# multi-argument unnest:
# - merge: the stored value where there is one, else the incoming one (the first write of a
#   sample wins, as `ON CONFLICT DO NOTHING` did for a row per sample);
# - added: how many samples merging `incoming` would add;
# - drop: the array without its first `n` samples by metric id (trimming a reading in part).
_FUNCTIONS = """
CREATE OR REPLACE FUNCTION telemetry_values_merge(stored double precision[], incoming double precision[])
RETURNS double precision[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(coalesce(s, i) ORDER BY n) FROM unnest(stored, incoming) WITH ORDINALITY AS t(s, i, n)
$$;
CREATE OR REPLACE FUNCTION telemetry_values_added(stored double precision[], incoming double precision[])
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT count(*)::integer FROM unnest(stored, incoming) AS t(s, i) WHERE s IS NULL AND i IS NOT NULL
$$;
CREATE OR REPLACE FUNCTION telemetry_values_drop(stored double precision[], n bigint)
RETURNS double precision[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(CASE WHEN seen <= n THEN NULL ELSE v END ORDER BY i)
    FROM (SELECT v, i, count(v) OVER (ORDER BY i) AS seen FROM unnest(stored) WITH ORDINALITY AS t(v, i)) AS counted
$$;
"""

_MOVE_SAMPLES = """
WITH grouped AS (
    SELECT gpu_id, "timestamp", min(label_set_id) AS label_set_id,
           array_agg(metric_id) AS metric_ids, array_agg(value) AS samples
    FROM telemetry_sample GROUP BY gpu_id, "timestamp"
)
INSERT INTO telemetry_reading (gpu_id, "timestamp", label_set_id, "values")
SELECT gpu_id, "timestamp", label_set_id,
       (SELECT array_agg(p.value ORDER BY n.i)
        FROM generate_series(1, (SELECT max(m) FROM unnest(metric_ids) AS m)) AS n(i)
        LEFT JOIN unnest(metric_ids, samples) AS p(metric_id, value) ON p.metric_id = n.i)
FROM grouped
"""


def move_samples(apps, schema_editor) -> None:
    schema_editor.execute(_FUNCTIONS)
    schema_editor.execute(_MOVE_SAMPLES)


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0002_gpu_last_seen_unindexed"),
    ]

    operations = [
        migrations.CreateModel(
            name="Reading",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("timestamp", models.DateTimeField()),
                ("values", telemetry.models.MetricValuesField(
                    help_text="Values by metric id: values[i] is metric id i + 1, null where none.")),
                ("gpu", models.ForeignKey(db_constraint=False, db_index=False, on_delete=models.deletion.CASCADE,
                                          related_name="readings", to="telemetry.gpu")),
                ("label_set", models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True,
                                                on_delete=models.deletion.PROTECT, to="telemetry.labelset")),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("gpu", "timestamp"), name="reading_gpu_time_uniq")],
            },
        ),
        migrations.RunPython(move_samples, migrations.RunPython.noop),
        migrations.DeleteModel(name="Sample"),
    ]
