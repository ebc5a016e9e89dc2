"""The batch: the one message format between streamer and collector (version 3).

A batch is a msgpack map of interned tables and parallel columns. Samples are grouped into
readings (one GPU at one time), the unit the collector stores as one row:

    {
      "v": 3,                                   # format version (1 and 2 are still read, see below)
      # a device: a whole GPU (mig_instance nil), or one MIG GPU instance of the GPU `uuid`
      "gpus":    [[uuid, hostname, index, device, model_name, mig_instance, mig_profile], ...],
      "metrics": [name, ...],
      "labels":  [[container, pod, namespace, {key: value, ...}], ...],
      # one entry per reading
      "gpu":     [i, ...],   # index into "gpus"
      "ts":      [t, ...],   # time, integer microseconds since the Unix epoch (UTC)
      "label":   [k, ...],   # index into "labels", or -1 for a reading without labels
      "size":    [n, ...],   # how many of the sample columns' entries belong to this reading
      # one entry per sample, reading by reading
      "metric":  [j, ...],   # index into "metrics"
      "value":   [x, ...],   # float64, finite
      "rejected": n          # rows the source rejected since the previous batch (for /metrics)
    }

Version 2 (five entries a GPU, no MIG instance) and version 1 (a "gpu", "metric", "label", "ts" and
"value" entry per sample, no "size") are what earlier streamers sent; they are still decoded (version
1 as one reading per sample), so batches queued across an upgrade are stored.

The collector's Celery task, `PERSIST_BATCH_TASK`, takes the encoded bytes as its only argument and
decodes them itself, so an undecodable batch is a task failure that is dead-lettered and counted.
"""
from collections.abc import Iterator
from dataclasses import dataclass
from math import isfinite
from typing import NamedTuple

import msgpack

# The stored columns' widths: a longer value would make the database refuse the whole batch it
# travels in, so the readers reject its row.
from telemetry.models import DEVICE_MAX, HOSTNAME_MAX, METRIC_NAME_MAX, MODEL_NAME_MAX, UUID_MAX

# The collector's task, sent by name: the streamer imports nothing of the collector.
PERSIST_BATCH_TASK = "telemetry.ingest.persist_batch"

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
NO_LABELS = -1


class GpuInfo(NamedTuple):
    """A device that samples belong to: a whole GPU, or one MIG GPU instance of the GPU `uuid`."""

    uuid: str
    hostname: str
    index: int
    device: str
    model_name: str
    mig_instance: int | None = None  # DCGM's GPU_I_ID
    mig_profile: str = ""  # DCGM's GPU_I_PROFILE, e.g. 1g.10gb

    @property
    def key(self) -> tuple[str, int | None]:
        """What tells devices apart: MIG instances share their parent GPU's UUID."""
        return self.uuid, self.mig_instance


def gpu_problem(gpu: GpuInfo) -> str | None:
    """Why a GPU cannot be stored (a field longer than its column), or None."""
    for field_name, value, limit in (("UUID", gpu.uuid, UUID_MAX), ("host name", gpu.hostname, HOSTNAME_MAX),
                                     ("device", gpu.device, DEVICE_MAX), ("model name", gpu.model_name, MODEL_NAME_MAX)):
        if len(value) > limit:
            return f"{field_name} longer than {limit} characters"
    return None


class Labels(NamedTuple):
    container: str
    pod: str
    namespace: str
    # Sorted (key, value) pairs: hashable, so equal label sets intern to one entry.
    extra: tuple[tuple[str, str], ...]


class Sample(NamedTuple):
    gpu: GpuInfo
    metric: str
    timestamp_us: int
    value: float
    labels: Labels | None


class BatchDecodeError(ValueError):
    """A message that is not a valid batch: it can never succeed, so it is dead-lettered."""


@dataclass
class Batch:
    """A decoded batch, still columnar: the collector writes it without building a row object per sample."""

    gpus: list[GpuInfo]
    metrics: list[str]
    labels: list[Labels]
    gpu: list[int]
    ts: list[int]
    label: list[int]
    size: list[int]
    metric: list[int]
    value: list[float]
    rejected: int = 0

    def __len__(self) -> int:
        """Samples in the batch."""
        return len(self.value)

    def readings(self) -> Iterator[tuple[int, int, int, list[int], list[float]]]:
        """(gpu, ts, label, metric indexes, values) of each reading, in batch order."""
        start = 0
        for gpu, ts, label, size in zip(self.gpu, self.ts, self.label, self.size):
            yield gpu, ts, label, self.metric[start:start + size], self.value[start:start + size]
            start += size

    def samples(self) -> list[Sample]:
        """Row view of the batch, for tests."""
        return [
            Sample(self.gpus[g], self.metrics[m], t, v, self.labels[lab] if lab != NO_LABELS else None)
            for g, t, lab, metrics, values in self.readings()
            for m, v in zip(metrics, values)
        ]


def encode_batch(batch: Batch) -> bytes:
    return msgpack.packb(
        {
            "v": FORMAT_VERSION,
            "gpus": [list(g) for g in batch.gpus],
            "metrics": batch.metrics,
            "labels": [[lab.container, lab.pod, lab.namespace, dict(lab.extra)] for lab in batch.labels],
            "gpu": batch.gpu,
            "ts": batch.ts,
            "label": batch.label,
            "size": batch.size,
            "metric": batch.metric,
            "value": batch.value,
            "rejected": batch.rejected,
        },
        use_bin_type=True,
    )


def decode_batch(payload: bytes) -> Batch:
    """Decode and validate a batch; every way it can be wrong raises BatchDecodeError."""
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage input
        raise BatchDecodeError(f"not a msgpack batch: {exc}") from None
    if not isinstance(raw, dict):
        raise BatchDecodeError("batch is not a map")
    if raw.get("v") not in READABLE_VERSIONS:
        raise BatchDecodeError(f"unsupported batch format version {raw.get('v')!r} (expected {FORMAT_VERSION})")
    try:
        batch = Batch(
            gpus=[_gpu_from_wire(row) for row in raw["gpus"]],
            metrics=[str(name) for name in raw["metrics"]],
            labels=[Labels(str(c), str(p), str(n), tuple(sorted(extra.items()))) for c, p, n, extra in raw["labels"]],
            gpu=raw["gpu"],
            ts=raw["ts"],
            label=raw["label"],
            # Version 1: a reading per sample.
            size=raw["size"] if raw["v"] >= 2 else [1] * len(raw["value"]),
            metric=raw["metric"],
            value=raw["value"],
            rejected=int(raw.get("rejected", 0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BatchDecodeError(f"malformed batch tables: {exc!r}") from None
    try:
        _validate_columns(batch)
    except TypeError as exc:  # a column holding something that is not a number
        raise BatchDecodeError(f"malformed batch columns: {exc}") from None
    return batch


def _gpu_from_wire(row: list) -> GpuInfo:
    uuid, hostname, index, device, model_name, *mig = row  # version 2 and 1: no MIG entries
    mig_instance, mig_profile = mig if mig else (None, "")
    return GpuInfo(str(uuid), str(hostname), int(index), str(device), str(model_name),
                   None if mig_instance is None else int(mig_instance), str(mig_profile))


def _validate_columns(batch: Batch) -> None:
    per_reading = (batch.gpu, batch.ts, batch.label, batch.size)
    per_sample = (batch.metric, batch.value)
    if not all(isinstance(c, list) for c in per_reading + per_sample):
        raise BatchDecodeError("batch columns are not lists")
    if len({len(c) for c in per_reading}) != 1 or len({len(c) for c in per_sample}) != 1:
        raise BatchDecodeError("batch columns are not lists of one length")
    # Checks over whole columns run in C (map, set, min), not a Python generator per sample.
    if not _only(batch.size, int) or (batch.size and min(batch.size) < 1) or sum(batch.size) != len(batch.value):
        raise BatchDecodeError("reading sizes do not add up to the sample columns")
    if batch.gpu and not (0 <= min(batch.gpu) and max(batch.gpu) < len(batch.gpus)):
        raise BatchDecodeError("a GPU index is out of range")
    if batch.metric and not (0 <= min(batch.metric) and max(batch.metric) < len(batch.metrics)):
        raise BatchDecodeError("a metric index is out of range")
    if batch.label and not (NO_LABELS <= min(batch.label) and max(batch.label) < len(batch.labels)):
        raise BatchDecodeError("a label index is out of range")
    if not _only(batch.ts, int):
        raise BatchDecodeError("a timestamp is not an integer")
    if not _only(batch.value, float, int):
        raise BatchDecodeError("a value is not a number")
    if not all(map(isfinite, batch.value)):
        raise BatchDecodeError("a value is not finite")


def _only(column: list, *types: type) -> bool:
    """Every entry's type is one of `types` exactly (so True, a bool, is not an int)."""
    return set(map(type, column)) <= set(types)
