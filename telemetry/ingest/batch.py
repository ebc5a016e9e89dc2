"""The batch: the one message format between streamer and collector (version 1).

A batch is a msgpack map with interned tables and parallel columns, so a sample costs a few
bytes instead of a dict of names:

    {
      "v": 1,                                   # format version; anything else is rejected
      "gpus":    [[uuid, hostname, index, device, model_name], ...],
      "metrics": [name, ...],
      "labels":  [[container, pod, namespace, {key: value, ...}], ...],
      "gpu":     [i, ...],   # index into "gpus", one per sample
      "metric":  [j, ...],   # index into "metrics"
      "label":   [k, ...],   # index into "labels", or -1 for a sample without labels
      "ts":      [t, ...],   # sample time, integer microseconds since the Unix epoch (UTC)
      "value":   [x, ...],   # float64
      "rejected": n          # rows the source rejected since the previous batch (for /metrics)
    }

The Celery task `telemetry.ingest.persist_batch` takes the encoded bytes as its only argument and
decodes them itself, so an undecodable batch is a task failure that is dead-lettered and counted.
"""
from dataclasses import dataclass, field
from typing import NamedTuple

import msgpack

FORMAT_VERSION = 1
NO_LABELS = -1


class GpuInfo(NamedTuple):
    uuid: str
    hostname: str
    index: int
    device: str
    model_name: str


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
    metric: list[int]
    label: list[int]
    ts: list[int]
    value: list[float]
    rejected: int = 0

    def __len__(self) -> int:
        return len(self.ts)

    def samples(self) -> list[Sample]:
        """Row view of the batch, for tests and the portable write path."""
        return [
            Sample(
                self.gpus[g], self.metrics[m], t, v, self.labels[lab] if lab != NO_LABELS else None
            )
            for g, m, lab, t, v in zip(self.gpu, self.metric, self.label, self.ts, self.value)
        ]


@dataclass
class BatchBuilder:
    """Accumulates samples into one batch, interning GPUs, metric names and label sets."""

    _gpu_ids: dict[str, int] = field(default_factory=dict)
    _metric_ids: dict[str, int] = field(default_factory=dict)
    _label_ids: dict[Labels, int] = field(default_factory=dict)
    _gpus: list[GpuInfo] = field(default_factory=list)
    gpu: list[int] = field(default_factory=list)
    metric: list[int] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    rejected: int = 0

    def __len__(self) -> int:
        return len(self.ts)

    def add(self, sample: Sample) -> None:
        gpu_id = self._gpu_ids.get(sample.gpu.uuid)
        if gpu_id is None:
            gpu_id = self._gpu_ids[sample.gpu.uuid] = len(self._gpus)
            self._gpus.append(sample.gpu)
        metric_id = self._metric_ids.get(sample.metric)
        if metric_id is None:
            metric_id = self._metric_ids[sample.metric] = len(self._metric_ids)
        if sample.labels is None:
            label_id = NO_LABELS
        else:
            label_id = self._label_ids.get(sample.labels)
            if label_id is None:
                label_id = self._label_ids[sample.labels] = len(self._label_ids)
        self.gpu.append(gpu_id)
        self.metric.append(metric_id)
        self.label.append(label_id)
        self.ts.append(sample.timestamp_us)
        self.value.append(sample.value)

    def build(self) -> Batch:
        return Batch(
            gpus=list(self._gpus),
            metrics=list(self._metric_ids),
            labels=list(self._label_ids),
            gpu=self.gpu,
            metric=self.metric,
            label=self.label,
            ts=self.ts,
            value=self.value,
            rejected=self.rejected,
        )


def encode_batch(batch: Batch) -> bytes:
    return msgpack.packb(
        {
            "v": FORMAT_VERSION,
            "gpus": [list(g) for g in batch.gpus],
            "metrics": batch.metrics,
            "labels": [[lab.container, lab.pod, lab.namespace, dict(lab.extra)] for lab in batch.labels],
            "gpu": batch.gpu,
            "metric": batch.metric,
            "label": batch.label,
            "ts": batch.ts,
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
    if raw.get("v") != FORMAT_VERSION:
        raise BatchDecodeError(f"unsupported batch format version {raw.get('v')!r} (expected {FORMAT_VERSION})")
    try:
        batch = Batch(
            gpus=[GpuInfo(str(u), str(h), int(i), str(d), str(m)) for u, h, i, d, m in raw["gpus"]],
            metrics=[str(name) for name in raw["metrics"]],
            labels=[Labels(str(c), str(p), str(n), tuple(sorted(extra.items()))) for c, p, n, extra in raw["labels"]],
            gpu=raw["gpu"],
            metric=raw["metric"],
            label=raw["label"],
            ts=raw["ts"],
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


def _validate_columns(batch: Batch) -> None:
    columns = (batch.gpu, batch.metric, batch.label, batch.ts, batch.value)
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
        raise BatchDecodeError("batch columns are not lists of one length")
    if batch.gpu and not (0 <= min(batch.gpu) and max(batch.gpu) < len(batch.gpus)):
        raise BatchDecodeError("a GPU index is out of range")
    if batch.metric and not (0 <= min(batch.metric) and max(batch.metric) < len(batch.metrics)):
        raise BatchDecodeError("a metric index is out of range")
    if batch.label and not (NO_LABELS <= min(batch.label) and max(batch.label) < len(batch.labels)):
        raise BatchDecodeError("a label index is out of range")
    if not all(type(t) is int for t in batch.ts):
        raise BatchDecodeError("a timestamp is not an integer")
    if not all(type(v) is float or type(v) is int for v in batch.value):
        raise BatchDecodeError("a value is not a number")
    if any(v != v or v in (float("inf"), float("-inf")) for v in batch.value):
        raise BatchDecodeError("a value is not finite")
