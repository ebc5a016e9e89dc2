"""GPU rows are rewritten with every batch: keep them updatable in place (HOT)."""
from django.db import migrations, models


def gpu_fillfactor(apps, schema_editor) -> None:
    # Free space in each page lets PostgreSQL keep a GPU's new row version on the same page.
    schema_editor.execute("ALTER TABLE telemetry_gpu SET (fillfactor = 70)")


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="gpu",
            name="last_seen",
            field=models.DateTimeField(help_text="Time of the newest sample stored for this GPU."),
        ),
        migrations.RunPython(gpu_fillfactor, migrations.RunPython.noop),
    ]
