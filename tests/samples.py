"""What the database holds, as samples: each non-null value of a reading is one sample."""
from datetime import datetime

from django.db.models import Func, IntegerField, Sum

from telemetry.models import MIG_ID_SEPARATOR, Metric, Reading


def device_id(uuid: str, mig_instance: int | None = None) -> str:
    """A device's id as `Gpu.device_id` writes it: a whole GPU's UUID, or `<uuid>:mig<instance>`."""
    return uuid if mig_instance is None else f"{uuid}{MIG_ID_SEPARATOR}{mig_instance}"


def stored_samples(**filters) -> list[tuple[str, str, datetime, float]]:
    """(device id, metric name, time, value) of every stored sample, sorted; a whole GPU's id is its UUID."""
    names = dict(Metric.objects.values_list("id", "name"))
    rows = Reading.objects.filter(**filters).values_list("gpu__uuid", "gpu__mig_instance", "timestamp", "values")
    return sorted(
        (device_id(uuid, instance), names[i + 1], ts, value)
        for uuid, instance, ts, values in rows.iterator(chunk_size=5000)
        for i, value in enumerate(values)
        if value is not None
    )


def stored_count(**filters) -> int:
    """Samples stored in the readings matching `filters`: each reading's non-null values.

    One aggregate in the database (the load test calls it while ingest runs).
    """
    non_null = Func(Func("values", template="array_remove(%(expressions)s, NULL)"), function="cardinality",
                    output_field=IntegerField())
    return Reading.objects.filter(**filters).aggregate(total=Sum(non_null))["total"] or 0


def stored_sum(**filters) -> float:
    return sum(
        sum(value for value in values if value is not None)
        for values in Reading.objects.filter(**filters).values_list("values", flat=True).iterator(chunk_size=5000)
    )
