from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0004_gpu_fillfactor_40"),
    ]

    operations = [
        migrations.AddField(
            model_name="gpu",
            name="trimmed_through",
            field=models.DateTimeField(
                blank=True, null=True,
                help_text="Time of the newest reading removed by trimming; none older are stored.",
            ),
        ),
    ]
