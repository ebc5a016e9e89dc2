"""A device is a whole GPU or one MIG GPU instance of it: (uuid, mig_instance) is unique, not uuid.

Every GPU stored before this migration is a whole GPU (mig_instance NULL).
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('telemetry', '0006_trim_functions'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='gpu',
            options={'ordering': ['hostname', 'index', 'mig_instance'], 'verbose_name': 'GPU'},
        ),
        migrations.AddField(
            model_name='gpu',
            name='mig_instance',
            field=models.PositiveSmallIntegerField(blank=True, help_text="MIG GPU instance id (DCGM's GPU_I_ID); empty for a whole GPU.", null=True),
        ),
        migrations.AddField(
            model_name='gpu',
            name='mig_profile',
            field=models.CharField(blank=True, help_text='MIG profile of the instance (GPU_I_PROFILE), e.g. 3g.40gb.', max_length=32),
        ),
        migrations.AlterField(
            model_name='gpu',
            name='uuid',
            field=models.CharField(help_text="NVIDIA GPU UUID, e.g. GPU-5fd4f087-…; a MIG instance's is its parent GPU's.", max_length=64),
        ),
        migrations.AddConstraint(
            model_name='gpu',
            constraint=models.UniqueConstraint(fields=('uuid', 'mig_instance'), name='gpu_device_uniq', nulls_distinct=False),
        ),
    ]
