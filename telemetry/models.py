"""GPUs, metrics and their samples: what the collector stores and the API serves."""
from django.db import models


# Column widths, which the wire format checks too (a longer value would fail its whole batch).
UUID_MAX = 64
HOSTNAME_MAX = 255
DEVICE_MAX = 32
MODEL_NAME_MAX = 128
METRIC_NAME_MAX = 128
MIG_PROFILE_MAX = 32


# A MIG instance's device id: its parent GPU's UUID, this, and its GPU instance id (GPU-…:mig1).
MIG_ID_SEPARATOR = ":mig"


class Gpu(models.Model):
    """A device: a whole GPU, or one MIG GPU instance of it; host and index are where it was last seen.

    A whole GPU is identified by its NVIDIA UUID. A MIG instance is reported under its parent GPU's
    UUID and told apart by its GPU instance id (DCGM's GPU_I_ID), so a device is (uuid, mig_instance).
    """

    uuid = models.CharField(
        max_length=UUID_MAX, help_text="NVIDIA GPU UUID, e.g. GPU-5fd4f087-…; a MIG instance's is its parent GPU's."
    )
    mig_instance = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="MIG GPU instance id (DCGM's GPU_I_ID); empty for a whole GPU."
    )
    mig_profile = models.CharField(
        max_length=MIG_PROFILE_MAX, blank=True, help_text="MIG profile of the instance (GPU_I_PROFILE), e.g. 3g.40gb."
    )
    hostname = models.CharField(max_length=HOSTNAME_MAX, db_index=True, help_text="Host the GPU reported from.")
    index = models.PositiveSmallIntegerField(help_text="GPU index on its host (DCGM's gpu_id, 0-7).")
    device = models.CharField(max_length=DEVICE_MAX, blank=True, help_text="Device name, e.g. nvidia0.")
    model_name = models.CharField(max_length=MODEL_NAME_MAX, blank=True, db_index=True, help_text="GPU model name.")
    first_seen = models.DateTimeField(help_text="Time of the oldest sample ever stored for this GPU.")
    # Not indexed: the collector rewrites it with every batch, and an unindexed column lets
    # PostgreSQL update the row in place (HOT); a fleet's GPU table is small enough to scan.
    last_seen = models.DateTimeField(help_text="Time of the newest sample stored for this GPU.")
    # Kept by the collector so that trimming to the newest N needs no COUNT(*) per batch.
    sample_count = models.BigIntegerField(default=0, help_text="Samples currently stored for this GPU.")
    # Every reading at or before this time has been trimmed away, so trimming walks the GPU's
    # readings from here: the deleted rows before it stay in the index until VACUUM, and walking
    # past them made each trim several times slower. Cleared when an older reading is stored.
    trimmed_through = models.DateTimeField(
        null=True, blank=True, help_text="Time of the newest reading removed by trimming; none older are stored."
    )

    class Meta:
        ordering = ["hostname", "index", "mig_instance"]
        verbose_name = "GPU"
        constraints = [
            # A whole GPU (no instance) is one device too: NULLs are not distinct here, so the
            # collector's ON CONFLICT (uuid, mig_instance) finds it. Also serves lookups by UUID.
            models.UniqueConstraint(fields=["uuid", "mig_instance"], name="gpu_device_uniq", nulls_distinct=False),
        ]

    def __str__(self) -> str:
        return f"{self.hostname}/{self.index} ({self.device_id})"

    @property
    def device_id(self) -> str:
        """The device's stable id in the API: a whole GPU's UUID, or `<parent UUID>:mig<instance>`."""
        return self.uuid if self.mig_instance is None else f"{self.uuid}{MIG_ID_SEPARATOR}{self.mig_instance}"

    @property
    def parent_uuid(self) -> str | None:
        """The parent GPU's UUID of a MIG instance; None for a whole GPU."""
        return None if self.mig_instance is None else self.uuid


def device_key(device_id: str) -> tuple[str, int | None]:
    """(uuid, mig_instance) of a device id (see `Gpu.device_id`); ValueError for digits int() cannot read."""
    uuid, separator, instance = device_id.rpartition(MIG_ID_SEPARATOR)
    if separator and instance.isdigit() and uuid:
        return uuid, int(instance)
    return device_id, None


class Metric(models.Model):
    """A metric name (DCGM's field name, e.g. DCGM_FI_DEV_GPU_UTIL), stored once and referenced by id."""

    id = models.SmallAutoField(primary_key=True)
    name = models.CharField(max_length=METRIC_NAME_MAX, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class LabelSet(models.Model):
    """A sample's attribution and remaining labels, stored once per distinct combination."""

    digest = models.CharField(max_length=32, unique=True, help_text="MD5 of the canonical label set.")
    container = models.CharField(max_length=255, blank=True)
    pod = models.CharField(max_length=255, blank=True)
    namespace = models.CharField(max_length=255, blank=True)
    labels = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}/{self.container}" if self.pod else f"labels #{self.pk}"


class MetricValuesField(models.Field):
    """A reading's values, position i holding metric id i + 1 (None where that metric has no value).

    A `double precision[]`, where a missing metric costs one bit of the array's null bitmap.
    """

    description = "Metric values indexed by metric id"

    def db_type(self, connection) -> str:
        return "double precision[]"


class Reading(models.Model):
    """One GPU's metric values at one time: a row per (GPU, time), each value a sample.

    Ten samples of a time step share one row, its header and its index entries: about 20 bytes a
    sample against 173 for a row per sample (see the README's benchmarks). `values[i]` is the
    value of the metric whose id is i + 1 (PostgreSQL's `values[metric_id]`).
    """

    # No database foreign-key constraints on the hot table: the collector creates GPUs, metrics
    # and label sets before their readings, and a per-row constraint check costs ingest speed.
    gpu = models.ForeignKey(Gpu, on_delete=models.CASCADE, related_name="readings", db_index=False, db_constraint=False)
    timestamp = models.DateTimeField()
    label_set = models.ForeignKey(
        LabelSet, null=True, blank=True, on_delete=models.PROTECT, db_index=False, db_constraint=False
    )
    values = MetricValuesField(help_text="Values by metric id: values[i] is metric id i + 1, null where none.")

    class Meta:
        constraints = [
            # Serves the API's main query (one GPU, a time window, ordered by time) and makes a
            # replayed batch store nothing twice.
            models.UniqueConstraint(fields=["gpu", "timestamp"], name="reading_gpu_time_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_id} {self.timestamp.isoformat()}"

    def samples(self) -> list[tuple[int, float]]:
        """(metric_id, value) of each sample in the reading, by metric id."""
        return [(i + 1, value) for i, value in enumerate(self.values) if value is not None]


class IngestCounter(models.Model):
    """A monotonic counter shared by every collector process (samples stored, duplicates, …)."""

    SAMPLES_STORED = "samples_stored"
    SAMPLES_DUPLICATE = "samples_duplicate"
    ROWS_REJECTED = "rows_rejected"
    BATCHES_DEAD_LETTERED = "batches_dead_lettered"

    name = models.CharField(max_length=64, primary_key=True)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"
