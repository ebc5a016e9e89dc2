"""Room in each GPU page for a new version of every row in it.

One batch of a fleet in file order updates the bookkeeping of thousands of GPUs, so every row of
a page gets a new version in one statement. At fillfactor 70 a page had room for about half of
them, and most updates left the page (not HOT), growing the table and all four of its indexes;
at 40 most stay on their page and the table keeps its size.
"""
from django.db import migrations


def gpu_fillfactor(apps, schema_editor) -> None:
    schema_editor.execute("ALTER TABLE telemetry_gpu SET (fillfactor = 40)")


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0003_reading_per_gpu_and_time"),
    ]

    operations = [
        migrations.RunPython(gpu_fillfactor, migrations.RunPython.noop),
    ]
