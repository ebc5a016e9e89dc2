"""A batch in numpy columns: how backfill's block reader hands readings to the collector's service.

`ColumnBatch` has the fields of the wire's `Batch` (interned tables, a row per reading, the
samples reading by reading), held as numpy arrays, with each (device, time) once. The service
writes its readings to the staging table as one binary COPY built by numpy (`StagedReadings`),
where a `Batch` takes a Python step per reading to be grouped and written as text. Only backfill
imports this module: the streamer and the collector's task never load numpy.
"""
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from telemetry.ingest.wire import Batch, GpuInfo, Labels

# PostgreSQL's binary COPY: signature, flags, header extension length; a tuple count of -1 ends it.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_FLOAT8_OID = 701
# A staging row up to its array's elements: the field count, then each field's length and bytes
# (gpu_id int4, ts_us int8, label_set_id int4 or NULL, vals float8[] with its array header).
_ROW_HEAD = np.dtype([
    ("fields", ">i2"), ("gpu_len", ">i4"), ("gpu", ">i4"), ("ts_len", ">i4"), ("ts", ">i8"),
    ("label_len", ">i4"), ("label", ">i4"), ("vals_len", ">i4"),
    ("ndim", ">i4"), ("has_null", ">i4"), ("element_type", ">i4"), ("dim", ">i4"), ("lower_bound", ">i4"),
])
_ELEMENT = np.dtype([("len", ">i4"), ("value", ">f8")])


@dataclass
class ColumnBatch:
    """A batch's readings as numpy columns; (device, time) unique. `len()` counts its samples."""

    gpus: list[GpuInfo]
    metrics: list[str]
    labels: list[Labels]
    gpu: np.ndarray  # per reading: index into gpus
    ts: np.ndarray  # per reading: microseconds since the epoch
    label: np.ndarray  # per reading: index into labels, or NO_LABELS
    size: np.ndarray  # per reading: its samples
    metric: np.ndarray  # per sample, reading by reading: index into metrics
    value: np.ndarray  # per sample: float64, finite
    rejected: int = 0

    def __len__(self) -> int:
        return len(self.value)

    def batch(self) -> Batch:
        """The same samples as the wire's Batch (to publish, or to store as the collector does)."""
        return Batch(list(self.gpus), list(self.metrics), list(self.labels), self.gpu.tolist(), self.ts.tolist(),
                     self.label.tolist(), self.size.tolist(), self.metric.tolist(), self.value.tolist(),
                     self.rejected)

    def tables(self) -> Batch:
        """A Batch of this one's tables and its oldest time, no readings: what reference look-ups read."""
        return Batch(self.gpus, self.metrics, self.labels, [], [int(self.ts.min())] if len(self.ts) else [], [], [],
                     [], [])

    def staged(self, gpu_ids: list[int], metric_ids: list[int], label_ids: list[int]) -> "StagedReadings":
        """The readings as staging rows, given the database ids of the tables' entries."""
        readings = len(self.ts)
        width = max(metric_ids, default=0)
        values = np.full((readings, width), np.nan)
        reading = np.repeat(np.arange(readings), self.size)
        slot = np.asarray(metric_ids, np.int64)[self.metric] - 1 if len(self.metric) else np.empty(0, np.int64)
        values[reading, slot] = self.value
        if np.count_nonzero(~np.isnan(values)) < len(self.value):
            # A metric twice in one reading: its first value is the one kept, as the table keeps the first stored.
            cell = reading * width + slot
            _, first = np.unique(cell, return_index=True)
            values.fill(np.nan)
            values[reading[first], slot[first]] = self.value[first]
        # A last entry of -1 (no label set), which NO_LABELS (-1) indexes.
        label_of = np.append(np.asarray(label_ids, np.int64), -1)
        return StagedReadings(np.asarray(gpu_ids, np.int64)[self.gpu], self.ts.astype(np.int64),
                              label_of[self.label] if len(self.label) else np.empty(0, np.int64), values)


class StagedReadings:
    """Readings ready for the staging table: database ids, time, label set id (-1: none), and values
    by metric id (column id - 1, NaN where the reading has no sample)."""

    def __init__(self, gpu_ids: np.ndarray, ts: np.ndarray, label_ids: np.ndarray, values: np.ndarray) -> None:
        self.gpu_ids, self.ts, self.label_ids, self.values = gpu_ids, ts, label_ids, values

    def __len__(self) -> int:
        return len(self.ts)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """(GPU id, time) of each reading, as a ReadingRows dict iterates."""
        return zip(self.gpu_ids.tolist(), self.ts.tolist())

    def narrowest(self) -> dict[int, int]:
        """GPU id → samples in its narrowest reading."""
        counts = np.count_nonzero(~np.isnan(self.values), axis=1)
        order = np.lexsort((counts, self.gpu_ids))
        gpu_ids, counts = self.gpu_ids[order], counts[order]
        first = np.flatnonzero(np.concatenate(([True], gpu_ids[1:] != gpu_ids[:-1])))
        return dict(zip(gpu_ids[first].tolist(), counts[first].tolist()))

    def copy_binary(self) -> bytes:
        """The rows in PostgreSQL's binary COPY format, for `staging_copy_binary.sql`.

        Each row is its fixed head and an array of `width` elements, an element being a length and
        eight bytes, or a length of -1 alone for NULL; NULL label set ids are a length of -1 alone too.
        Built as one byte matrix, a row per reading, from which a mask keeps the bytes that are there.
        """
        rows, width = self.values.shape
        present = ~np.isnan(self.values)
        nulls = width - np.count_nonzero(present, axis=1)
        head = np.zeros(rows, _ROW_HEAD)
        head["fields"] = 4
        head["gpu_len"], head["gpu"] = 4, self.gpu_ids
        head["ts_len"], head["ts"] = 8, self.ts
        labelled = self.label_ids >= 0
        head["label_len"] = np.where(labelled, 4, -1)
        head["label"] = self.label_ids
        head["vals_len"] = 20 + 12 * (width - nulls) + 4 * nulls
        head["ndim"], head["has_null"], head["element_type"], head["dim"], head["lower_bound"] = 1, nulls > 0, _FLOAT8_OID, width, 1
        elements = np.zeros((rows, width), _ELEMENT)
        elements["len"] = np.where(present, 8, -1)
        elements["value"] = self.values
        head_bytes = head.view(np.uint8).reshape(rows, _ROW_HEAD.itemsize)
        element_bytes = elements.view(np.uint8).reshape(rows, width * _ELEMENT.itemsize)
        keep_head = np.ones(head_bytes.shape, bool)
        label_value = _ROW_HEAD.fields["label"][1]
        keep_head[:, label_value:label_value + 4] = labelled[:, None]
        keep_elements = np.ones((rows, width, _ELEMENT.itemsize), bool)
        keep_elements[:, :, 4:] = present[:, :, None]
        matrix = np.concatenate((head_bytes, element_bytes), axis=1)
        keep = np.concatenate((keep_head, keep_elements.reshape(rows, -1)), axis=1)
        return _COPY_HEADER + matrix[keep].tobytes() + _COPY_TRAILER
