"""The batch: the one message format between streamer and collector (version 2).

A batch is a msgpack map of interned tables and parallel columns. Samples are grouped into
readings (one GPU at one time), the unit the collector stores as one row:

    {
      "v": 2,                                   # format version (1 is still read, see below)
      "gpus":    [[uuid, hostname, index, device, model_name], ...],
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

Version 1 (a "gpu", "metric", "label", "ts" and "value" entry per sample, no "size") is what
streamers before the reading layout sent; it is still decoded, as one reading per sample, so
batches queued across an upgrade are stored.

The Celery task `telemetry.ingest.persist_batch` takes the encoded bytes as its only argument and
decodes them itself, so an undecodable batch is a task failure that is dead-lettered and counted.
"""
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from math import isfinite
from typing import NamedTuple

import msgpack

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
NO_LABELS = -1


class GpuInfo(NamedTuple):
    uuid: str
    hostname: str
    index: int
    device: str
    model_name: str


# Widths of the stored text fields (telemetry.models declares its columns with them). A longer
# value would make the database refuse the whole batch it travels in, so the readers reject its row.
UUID_MAX = 64
HOSTNAME_MAX = 255
DEVICE_MAX = 32
MODEL_NAME_MAX = 128
METRIC_NAME_MAX = 128


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


class BatchBuilder:
    """Groups samples into readings (one GPU at one time) and hands out batches, oldest readings first.

    A DCGM export lists a time step metric by metric, so one GPU's ten values of one time lie far
    apart in the file. Holding samples back (the streamer's and backfill's --reorder-window) and
    taking the oldest readings lets each reach the collector whole, as one row to insert rather
    than ten partial rows to merge.
    """

    def __init__(self) -> None:
        # (uuid, ts) → [gpu, labels, metric names, values, creation number]; dicts keep insertion order.
        self._readings: dict[tuple[str, int], list] = {}
        self._samples = 0
        self.readings_created = 0

    def __len__(self) -> int:
        """Samples held."""
        return self._samples

    def add(self, sample: Sample) -> int:
        """Hold `sample` in its reading; returns the samples now held."""
        key = (sample.gpu.uuid, sample.timestamp_us)
        reading = self._readings.get(key)
        if reading is None:
            reading = self._readings[key] = [sample.gpu, sample.labels, [], [], self.readings_created]
            self.readings_created += 1
        reading[2].append(sample.metric)
        reading[3].append(sample.value)
        self._samples += 1
        return self._samples

    def take(self, samples: int | None = None, *, created_before: int | None = None) -> Batch:
        """The oldest readings, up to the first that brings the batch to `samples` samples.

        `created_before` keeps back readings created at or after that creation number (see
        `readings_created`), so a reading still filling is not sent too early.
        """
        keys = []
        taken = 0
        for key, reading in self._readings.items():
            if (samples is not None and taken >= samples) or (created_before is not None and reading[4] >= created_before):
                break
            keys.append(key)
            taken += len(reading[3])
        tables = _Tables()
        batch = Batch(gpus=tables.gpus, metrics=tables.metrics, labels=tables.labels, gpu=[], ts=[], label=[], size=[],
                      metric=[], value=[])
        for key in keys:
            gpu, labels, metrics, values, _ = self._readings.pop(key)
            batch.gpu.append(tables.gpu_index(gpu))
            batch.ts.append(key[1])
            batch.label.append(tables.label_index(labels))
            batch.size.append(len(values))
            batch.metric.extend(tables.metric_indexes(metrics))
            batch.value.extend(values)
        self._samples -= taken
        return batch

    def build(self) -> Batch:
        """Every held reading as one batch."""
        return self.take()


class HeldReadings:
    """The streamer's and backfill's hold on readings: a batch goes out when it is full or old.

    Up to `reorder_window` samples beyond a batch are held, so a reading whose metrics lie far
    apart in the source (a DCGM export lists a time step metric by metric) still leaves whole.
    Every `flush_interval` seconds the readings that were already held at the previous check are
    sent, so no sample waits more than two intervals, however slow the source.
    """

    def __init__(self, batch_size: int, reorder_window: int, flush_interval: float | None) -> None:
        self._builder = BatchBuilder()
        self._batch_size = batch_size
        self._full = batch_size + reorder_window
        self._interval = flush_interval
        self._mark = 0
        self.next_check = time.monotonic() + flush_interval if flush_interval is not None else float("inf")

    def feed(self, samples: Iterable[Sample | None]) -> Iterator[Batch]:
        """Hold each of `samples`, yielding the batches that come due meanwhile (see `ready`).

        A source with nothing to give yet may yield None: the flush deadline is still checked.
        This is the streamer's and backfill's loop over rows, one function with its lookups in
        locals: a method call per row here was a tenth of the streamer's time.
        """
        add, full, clock = self._builder.add, self._full, time.monotonic
        for sample in samples:
            if sample is not None and add(sample) < full and clock() < self.next_check:
                continue
            yield from self.ready()

    def ready(self) -> Iterator[Batch]:
        """The batches due now: full ones beyond the window, then those that came of age."""
        while len(self._builder) >= self._full:
            yield self._builder.take(self._batch_size)
        if time.monotonic() >= self.next_check:
            mark, self._mark = self._mark, self._builder.readings_created
            yield from self._batches(created_before=mark)
            self.next_check = time.monotonic() + self._interval

    def drain(self) -> Iterator[Batch]:
        """Everything held, in batches."""
        yield from self._batches(created_before=None)

    def _batches(self, *, created_before: int | None) -> Iterator[Batch]:
        while len(self._builder):
            batch = self._builder.take(self._batch_size, created_before=created_before)
            if not len(batch):
                return
            yield batch


@dataclass
class _Tables:
    """A batch's interned GPU, metric and label tables."""

    gpus: list[GpuInfo] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    labels: list[Labels] = field(default_factory=list)
    _gpu_ids: dict[str, int] = field(default_factory=dict)
    _label_ids: dict[Labels, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._metric_ids = _Positions(self.metrics)

    def gpu_index(self, gpu: GpuInfo) -> int:
        index = self._gpu_ids.get(gpu.uuid)
        if index is None:
            index = self._gpu_ids[gpu.uuid] = len(self.gpus)
            self.gpus.append(gpu)
        return index

    def metric_indexes(self, names: list[str]) -> Iterator[int]:
        """The index of each of `names`, mapped in C: this runs once per sample."""
        return map(self._metric_ids.__getitem__, names)

    def label_index(self, labels: Labels | None) -> int:
        if labels is None:
            return NO_LABELS
        index = self._label_ids.get(labels)
        if index is None:
            index = self._label_ids[labels] = len(self.labels)
            self.labels.append(labels)
        return index


class _Positions(dict):
    """Each value's position in `table`; looking up a new value appends it to the table."""

    def __init__(self, table: list) -> None:
        super().__init__()
        self.table = table

    def __missing__(self, value):
        position = self[value] = len(self.table)
        self.table.append(value)
        return position


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
            gpus=[GpuInfo(str(u), str(h), int(i), str(d), str(m)) for u, h, i, d, m in raw["gpus"]],
            metrics=[str(name) for name in raw["metrics"]],
            labels=[Labels(str(c), str(p), str(n), tuple(sorted(extra.items()))) for c, p, n, extra in raw["labels"]],
            gpu=raw["gpu"],
            ts=raw["ts"],
            label=raw["label"],
            # Version 1: a reading per sample.
            size=raw["size"] if raw["v"] == 2 else [1] * len(raw["value"]),
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


def _validate_columns(batch: Batch) -> None:
    per_reading = (batch.gpu, batch.ts, batch.label, batch.size)
    per_sample = (batch.metric, batch.value)
    if not all(isinstance(c, list) for c in per_reading + per_sample):
        raise BatchDecodeError("batch columns are not lists")
    if len({len(c) for c in per_reading}) != 1 or len({len(c) for c in per_sample}) != 1:
        raise BatchDecodeError("batch columns are not lists of one length")
    # Checks over whole columns run in C (map, set, min): a generator per sample took 9 ms a batch.
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
