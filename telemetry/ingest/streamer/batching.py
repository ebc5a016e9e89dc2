"""Groups samples into readings and hands out batches: the streamer's and backfill's hold on samples."""
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from telemetry.ingest.wire import NO_LABELS, Batch, GpuInfo, Labels, Sample


class BatchBuilder:
    """Groups samples into readings (one GPU at one time) and hands out batches, oldest readings first.

    A DCGM export lists a time step metric by metric, so one GPU's ten values of one time lie far
    apart in the file. Holding samples back (the streamer's and backfill's --reorder-window) and
    taking the oldest readings lets each reach the collector whole, as one row to insert rather
    than ten partial rows to merge.
    """

    def __init__(self) -> None:
        # (uuid, mig_instance, ts) → [gpu, labels, metric names, values, creation number, number of its
        # newest sample]; dicts keep insertion order.
        self._readings: dict[tuple[str, int | None, int], list] = {}
        self._taken = 0
        self.readings_created = 0
        self.samples_added = 0

    def __len__(self) -> int:
        """Samples held."""
        return self.samples_added - self._taken

    def add(self, sample: Sample) -> int:
        """Hold `sample` in its reading; returns the samples now held."""
        # The device key's fields, not GpuInfo.key: a property call per sample is a hot-path cost.
        gpu = sample.gpu
        key = (gpu.uuid, gpu.mig_instance, sample.timestamp_us)
        reading = self._readings.get(key)
        if reading is None:
            reading = self._readings[key] = [gpu, sample.labels, [], [], self.readings_created, 0]
            self.readings_created += 1
        reading[2].append(sample.metric)
        reading[3].append(sample.value)
        self.samples_added += 1
        reading[5] = self.samples_added
        return self.samples_added - self._taken

    def take(self, samples: int | None = None, *, due: "Due | None" = None) -> Batch:
        """The oldest readings, up to the first that brings the batch to `samples` samples, or the
        first that is not `due` yet."""
        keys = []
        taken = 0
        for key, reading in self._readings.items():
            if (samples is not None and taken >= samples) or (due is not None and not due.of(reading[4], reading[5])):
                break
            keys.append(key)
            taken += len(reading[3])
        tables = _Tables()
        batch = Batch(gpus=tables.gpus, metrics=tables.metrics, labels=tables.labels, gpu=[], ts=[], label=[], size=[],
                      metric=[], value=[])
        for key in keys:
            gpu, labels, metrics, values, _, _ = self._readings.pop(key)
            batch.gpu.append(tables.gpu_index(gpu))
            batch.ts.append(key[2])
            batch.label.append(tables.label_index(labels))
            batch.size.append(len(values))
            batch.metric.extend(tables.metric_indexes(metrics))
            batch.value.extend(values)
        self._taken += taken
        return batch

    def build(self) -> Batch:
        """Every held reading as one batch."""
        return self.take()


class HeldReadings:
    """The streamer's and backfill's hold on readings: a batch goes out when it is full or old.

    Up to `reorder_window` samples beyond a batch are held, so a reading whose metrics lie far
    apart in the source (a DCGM export lists a time step metric by metric) still leaves whole.
    Batches come out in bursts, those due at once: with `burst_samples` larger than a batch, full
    batches wait until that many samples are beyond the window and leave together (the streamer
    writes a burst to the broker in one go; a message written alone wakes the broker alone).
    Every `flush_interval` seconds the readings that were already held at the previous check are
    sent once no sample came to them since (a replay that reads a time step for longer than an
    interval would send its readings in parts otherwise), and those held at the check before it
    whatever: no sample waits more than three intervals, however slow the source.
    """

    def __init__(self, batch_size: int, reorder_window: int, flush_interval: float | None, *,
                 burst_samples: int = 0) -> None:
        self._builder = BatchBuilder()
        self._batch_size = batch_size
        self._beyond = reorder_window + batch_size  # a batch is taken while this many samples are held
        self._full = reorder_window + max(batch_size, burst_samples)
        self._interval = flush_interval
        self._mark = Due(created_before=0, quiet_through=0, forced_before=0)
        self.next_check = time.monotonic() + flush_interval if flush_interval is not None else float("inf")

    def feed(self, samples: Iterable[Sample | None]) -> Iterator[list[Batch]]:
        """Hold each of `samples`, yielding the bursts of batches that come due meanwhile (see `ready`).

        A source with nothing to give yet may yield None: the flush deadline is still checked.
        This is the streamer's and backfill's loop over rows, one function with its lookups in
        locals, since a method call per row here is a large share of the streamer's time.
        """
        add, full, clock = self._builder.add, self._full, time.monotonic
        for sample in samples:
            if sample is not None and add(sample) < full and clock() < self.next_check:
                continue
            yield from self.ready()

    def ready(self) -> Iterator[list[Batch]]:
        """The bursts due now: the full batches beyond the window, then those that came of age."""
        builder = self._builder
        if len(builder) >= self._full:
            full = []
            while len(builder) >= self._beyond:
                full.append(builder.take(self._batch_size))
            yield full
        if time.monotonic() >= self.next_check:
            due = self._mark
            self._mark = Due(created_before=builder.readings_created, quiet_through=builder.samples_added,
                             forced_before=due.created_before)
            if aged := list(self._batches(due)):
                yield aged
            self.next_check = time.monotonic() + self._interval

    def drain(self) -> Iterator[Batch]:
        """Everything held, in batches."""
        yield from self._batches(None)

    def _batches(self, due: "Due | None") -> Iterator[Batch]:
        while len(self._builder):
            batch = self._builder.take(self._batch_size, due=due)
            if not len(batch):
                return
            yield batch


@dataclass(frozen=True)
class Due:
    """Which held readings a flush check sends, from the builder's counts at the check before it
    (`readings_created`, `samples_added`) and at the one before that."""

    created_before: int  # readings created before the previous check …
    quiet_through: int   # … that have had no sample since it
    forced_before: int   # readings created before the check before that, whatever came since

    def of(self, created: int, newest_sample: int) -> bool:
        return created < self.forced_before or (created < self.created_before and newest_sample <= self.quiet_through)


@dataclass
class _Tables:
    """A batch's interned GPU, metric and label tables."""

    gpus: list[GpuInfo] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    labels: list[Labels] = field(default_factory=list)
    _gpu_ids: dict[tuple[str, int | None], int] = field(default_factory=dict)
    _label_ids: dict[Labels, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._metric_ids = _Positions(self.metrics)

    def gpu_index(self, gpu: GpuInfo) -> int:
        index = self._gpu_ids.get(gpu.key)
        if index is None:
            index = self._gpu_ids[gpu.key] = len(self.gpus)
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
