"""DCGM CSV line ranges read a block of lines at a time by pyarrow's C++ parser, into batches of readings.

The Python reader (`sources.read_csv`) spends a core's worth of Python on every row; a backfill is
mostly that. Here pyarrow parses a block of whole lines into columns, and the rows are grouped
into readings with numpy, so Python runs once per block and once per distinct combination of a
row's device, metric and labels, not once per row. Batches are ColumnBatches, which the collector's
service writes without a Python step per reading either.

A block goes this way only when every row of it would be read by the Python reader as it is:
pyarrow parses it (every line has the header's column count, the text is UTF-8), no field holds a
line break (each row is one line) and no line a NUL, every value is a finite number, and each
distinct time and each distinct combination of the other fields passes the Python reader's own
checks (`DcgmIdentities`). Any other block is read by the Python reader, which rejects its bad rows
with the file's line numbers exactly as reading the whole range would (a block is read as
`open_range` reads a range: behind the header, with an empty line after it unless it ends the file).

Readings are held back as `HeldReadings` holds them: those created within the last
`reorder_window` samples wait for the rest of their metrics, and batches go out whole, oldest
readings first, each of at least `batch_size` samples but the last.
"""
import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from telemetry.ingest.streamer.file_ranges import LineRange, line_breaks
from telemetry.ingest.streamer.sources import (
    DCGM_COLUMNS, DcgmIdentities, RejectHandler, RowError, parse_timestamp_us, read_csv,
)
from telemetry.ingest.columns import ColumnBatch
from telemetry.ingest.wire import GpuInfo, Labels, Sample

# Bytes of lines parsed at a time: pyarrow's fixed cost per call is small next to this, and what a
# block takes while it is parsed stays small (bench/README.md has the sizes measured).
BLOCK_BYTES = 8 << 20
_VALUE = DCGM_COLUMNS.index("value")
_TIME = DCGM_COLUMNS.index("timestamp")
# The columns that, with the metric's name, say which device, metric and labels a row is of.
_IDENTITY = [i for i in range(len(DCGM_COLUMNS)) if i not in (_VALUE, _TIME)]


def dcgm_header(line_range: LineRange) -> list[str] | None:
    """The file's header if it is a DCGM CSV (every DCGM column present), else None."""
    with open(line_range.path, "rb") as file:
        text = file.read(line_range.header_end).decode("utf-8-sig", errors="surrogateescape")
    header = [name.strip() for name in next(csv.reader([text.rstrip("\r\n")]), [])]
    return header if all(name in header for name in DCGM_COLUMNS) else None


@dataclass
class _Rows:
    """Samples not handed on yet, as columns of codes into the reader's tables."""

    device: np.ndarray  # int32: index into the reader's devices (GpuInfo)
    key: np.ndarray  # int32: index into the reader's device keys (uuid, MIG instance): what a reading is of
    label: np.ndarray  # int32: index into the reader's label sets
    metric: np.ndarray  # int32: index into the reader's metric names
    ts: np.ndarray  # int64: microseconds since the epoch
    value: np.ndarray  # float64

    @classmethod
    def empty(cls) -> "_Rows":
        i32 = np.empty(0, np.int32)
        return cls(i32, i32, i32, i32, np.empty(0, np.int64), np.empty(0, np.float64))

    def __len__(self) -> int:
        return len(self.value)

    def take(self, rows: np.ndarray) -> "_Rows":
        return _Rows(self.device[rows], self.key[rows], self.label[rows], self.metric[rows], self.ts[rows],
                     self.value[rows])

    def then(self, more: "_Rows") -> "_Rows":
        if not len(self):
            return more
        return _Rows(*(np.concatenate((a, b)) for a, b in zip(
            (self.device, self.key, self.label, self.metric, self.ts, self.value),
            (more.device, more.key, more.label, more.metric, more.ts, more.value))))


class _Interned:
    """Values given a code each, in the order first seen."""

    def __init__(self) -> None:
        self.values: list = []
        self._codes: dict = {}

    def code(self, value) -> int:
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self.values)
            self.values.append(value)
        return code


class _Combinations:
    """The identity codes of each distinct combination of a row's identity columns, found once.

    A fleet's file has a combination per device and metric, most of them in every block, so a
    block's combinations are matched in numpy, not in Python: each column's texts get a code
    (a dict per column, per distinct text of a block), a row's codes are hashed, and the hashes
    seen before give their combination's identity codes, checked against the combination's own
    codes (a hash collision sends the block to the Python reader). Only a combination not seen
    before is looked at in Python, by `identity`. Past LIMIT texts in a column, or combinations,
    all is forgotten: memory stays bounded (a fleet of 8,000 GPUs × 25 fields fits).
    """

    LIMIT = 1 << 18
    # Odd 64-bit multipliers, one per column, mixing a row's codes into one hash.
    _MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                     0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5,
                     0x94D049BB133111EB, 0xBF58476D1CE4E5B9, 0x2545F4914F6CDD1D, 0x5851F42D4C957F2D], np.uint64)

    def __init__(self, columns: int) -> None:
        assert columns <= len(self._MIX)
        self._columns = columns
        self.clear()

    def clear(self) -> None:
        self._texts: list[dict[str, int]] = [{} for _ in range(self._columns)]
        self._by_hash: dict[int, int] = {}
        self._combination_codes = np.empty((0, self._columns), np.int64)
        self._identity_codes = np.empty((0, 4), np.int32)

    def identities(self, columns: list[pa.DictionaryArray], texts: list[list[str]],
                   identity: Callable[[tuple[str, ...]], tuple[int, int, int, int]]) -> np.ndarray:
        """The identity codes of each row (an array of rows × 4), given the columns and their dictionaries'
        texts; `identity` gives a new combination's."""
        if len(self._by_hash) > self.LIMIT or any(len(table) > self.LIMIT for table in self._texts):
            self.clear()
        rows = len(columns[0])
        indices = [column.indices.to_numpy() for column in columns]
        codes = np.empty((rows, self._columns), np.int64)
        mixed = np.zeros(rows, np.uint64)
        for c, (table, entries, index) in enumerate(zip(self._texts, texts, indices)):
            to_code = np.fromiter((table.setdefault(text, len(table)) for text in entries), np.int64, len(entries))
            codes[:, c] = to_code[index]
            mixed += codes[:, c].astype(np.uint64) * self._MIX[c]
        hashes, first, inverse = np.unique(mixed, return_index=True, return_inverse=True)
        found = np.fromiter((self._by_hash.get(h, -1) for h in hashes.tolist()), np.int64, len(hashes))
        seen = found >= 0
        # Two combinations with one hash, in this block or one before: let the Python reader have the block.
        if not (codes[first][inverse] == codes).all():
            raise _NotOnTheFastPath
        if not (self._combination_codes[found[seen]] == codes[first[seen]]).all():
            raise _NotOnTheFastPath
        new = np.flatnonzero(~seen)
        if len(new):
            at = first[new]
            fields = zip(*([entries[i] for i in index[at].tolist()] for entries, index in zip(texts, indices)))
            added = [identity(combination) for combination in fields]
            found[new] = np.arange(len(self._identity_codes), len(self._identity_codes) + len(new))
            self._by_hash.update(zip(hashes[new].tolist(), found[new].tolist()))
            self._combination_codes = np.concatenate((self._combination_codes, codes[first[new]]))
            self._identity_codes = np.concatenate((self._identity_codes, np.array(added, np.int32).reshape(-1, 4)))
        return self._identity_codes[found][inverse]


class _NotOnTheFastPath(Exception):
    """A block that the Python reader must read: it may hold a row that reader rejects."""


class _Layout:
    """What reading one header's files takes: its columns' places and pyarrow's options."""

    def __init__(self, header: list[str]) -> None:
        self.width = len(header)
        self.columns = [header.index(name) for name in DCGM_COLUMNS]
        names = [f"c{i}" for i in range(self.width)]
        self.names = names
        text = pa.dictionary(pa.int32(), pa.string())
        self.parse_options = pa_csv.ParseOptions(newlines_in_values=False)
        self.convert_options = pa_csv.ConvertOptions(
            column_types={name: (pa.float64() if i == self.columns[_VALUE] else text) for i, name in enumerate(names)},
            strings_can_be_null=False, quoted_strings_can_be_null=False)

    def read_options(self, block: memoryview) -> pa_csv.ReadOptions:
        # One parsing block for the whole of ours: one chunk per column, one dictionary each.
        return pa_csv.ReadOptions(column_names=self.names, use_threads=False, block_size=len(block) + 1)


class DcgmBlockReader:
    """One worker's reader of DCGM line ranges: batches of whole readings, rejects reported by line."""

    def __init__(self, *, batch_size: int, reorder_window: int, on_reject: RejectHandler) -> None:
        self._batch_size = batch_size
        self._window = reorder_window
        self._on_reject = on_reject
        self._layouts: dict[tuple[str, ...], _Layout] = {}
        self._devices = _Interned()
        self._keys = _Interned()
        self._labels = _Interned()
        self._metrics = _Interned()
        self._times: dict[str, int] = {}
        self._identities = DcgmIdentities(list(DCGM_COLUMNS))
        self._combinations = _Combinations(len(_IDENTITY))
        self._device_codes: dict[int, tuple[GpuInfo, int, int]] = {}
        self._label_codes: dict[int, tuple[Labels | None, int]] = {}
        self._held = _Rows.empty()
        self.blocks_fast = 0
        self.blocks_careful = 0

    # --- reading ---

    def batches(self, line_range: LineRange, header: list[str], *,
                on_block: Callable[[int], None] = lambda _read: None) -> Iterator[ColumnBatch]:
        """The range's full batches (the rest stays held, see `drain`), block by block; `on_block` hears
        how many of the range's bytes are read after each block. A caller may stop after any batch."""
        layout = self._layouts.get(tuple(header)) or self._layouts.setdefault(tuple(header), _Layout(header))
        with open(line_range.path, "rb") as file:
            size = file.seek(0, io.SEEK_END)
            position = line_range.start
            counted = None  # (offset, its line number): lines are counted only for the Python reader
            while position < line_range.end:
                block = _block_at(file, position, line_range.end)
                try:
                    rows = self._fast(layout, block)
                    self.blocks_fast += 1
                except _NotOnTheFastPath:
                    since, line = counted or (line_range.start, line_range.first_line)
                    counted = (position, line + line_breaks(file, since, position))
                    rows = self._careful(line_range, bytes(block), counted[1], at_file_end=position + len(block) == size)
                    self.blocks_careful += 1
                self._held = self._held.then(rows)
                position += len(block)
                on_block(position - line_range.start)
                yield from self._due(final=False)

    def drain(self) -> Iterator[ColumnBatch]:
        """Every held reading, in batches."""
        yield from self._due(final=True)

    def _fast(self, layout: _Layout, block: memoryview) -> _Rows:
        if block.obj.find(b"\0", 0, len(block)) >= 0:  # csv.reader refuses a line with a NUL
            raise _NotOnTheFastPath
        try:
            # The C library's allocator: pyarrow's default pool kept more per worker (bench/README.md).
            table = pa_csv.read_csv(pa.py_buffer(block), read_options=layout.read_options(block),
                                    parse_options=layout.parse_options, convert_options=layout.convert_options,
                                    memory_pool=pa.system_memory_pool())
        except pa.ArrowInvalid:  # a line with another column count, bytes that are not UTF-8, a value that is no number
            raise _NotOnTheFastPath from None
        columns = [table.column(i).combine_chunks() for i in range(layout.width)]
        value_at = layout.columns[_VALUE]
        texts = {i: column.dictionary.to_pylist() for i, column in enumerate(columns) if i != value_at}
        if any("\n" in text or "\r" in text for entries in texts.values() for text in entries):
            raise _NotOnTheFastPath  # a quoted field ran on into the next line
        if columns[value_at].null_count:
            raise _NotOnTheFastPath
        values = columns[value_at].to_numpy()
        if not np.isfinite(values).all():
            raise _NotOnTheFastPath
        ts = self._times_of(columns[layout.columns[_TIME]], texts[layout.columns[_TIME]])
        identity_at = [layout.columns[i] for i in _IDENTITY]
        device, key, label, metric = self._identities_of(layout, [columns[i] for i in identity_at],
                                                         [texts[i] for i in identity_at])
        return _Rows(device, key, label, metric, ts, values)

    def _times_of(self, column: pa.DictionaryArray, texts: list[str]) -> np.ndarray:
        codes = np.empty(len(texts), np.int64)
        for i, text in enumerate(texts):
            ts = self._times.get(text)
            if ts is None:
                try:
                    ts = parse_timestamp_us(text)
                except RowError:
                    raise _NotOnTheFastPath from None
                if len(self._times) >= 65536:
                    self._times.clear()
                self._times[text] = ts
            codes[i] = ts
        return codes[column.indices.to_numpy()]

    def _identities_of(self, layout: _Layout, columns: list[pa.DictionaryArray],
                       texts: list[list[str]]) -> tuple[np.ndarray, ...]:
        """Per row: device, device key, label set and metric codes, each distinct combination of the
        identity columns checked once (see `_Combinations`)."""
        def identity(fields: tuple[str, ...]) -> tuple[int, int, int, int]:
            try:
                gpu, metric, labels = self._identities.identity(_dcgm_row(fields))
            except RowError:
                raise _NotOnTheFastPath from None
            return self._codes(gpu, metric, labels)

        codes = self._combinations.identities(columns, texts, identity)
        return tuple(codes[:, i] for i in range(4))

    def _codes(self, gpu: GpuInfo, metric: str, labels: Labels | None) -> tuple[int, int, int, int]:
        # The Python reader hands out one device object and one label set object for the same fields,
        # so their codes are remembered by object (kept alive here) rather than found by hashing them.
        if len(self._device_codes) + len(self._label_codes) > _Combinations.LIMIT:
            self._device_codes.clear()
            self._label_codes.clear()
        device = self._device_codes.get(id(gpu))
        if device is None or device[0] is not gpu:
            device = self._device_codes[id(gpu)] = (gpu, self._devices.code(gpu), self._keys.code(gpu.key))
        label = self._label_codes.get(id(labels))
        if label is None or label[0] is not labels:
            label = self._label_codes[id(labels)] = (labels, self._labels.code(labels))
        return device[1], device[2], label[1], self._metrics.code(metric)

    def _careful(self, line_range: LineRange, block: bytes, first_line: int, *, at_file_end: bool) -> _Rows:
        """The block read by the Python reader: its bad rows rejected, the rest as rows."""
        # An empty line after it unless it ends the file, as `open_range` ends a range: a CR after a
        # block cut at a lone CR (a LF would make the two one CR LF).
        tail = b"" if at_file_end else b"\r" if block.endswith(b"\r") else b"\n"
        stream = io.BytesIO(_header_bytes(line_range) + block + tail)
        device, key, label, metric, ts, value = [], [], [], [], [], []
        sample: Sample
        for sample in read_csv(stream, path=str(line_range.path), on_reject=self._on_reject, first_line=first_line):
            codes = self._codes(sample.gpu, sample.metric, sample.labels)
            device.append(codes[0])
            key.append(codes[1])
            label.append(codes[2])
            metric.append(codes[3])
            ts.append(sample.timestamp_us)
            value.append(sample.value)
        i32 = lambda values: np.array(values, np.int32)  # noqa: E731
        return _Rows(i32(device), i32(key), i32(label), i32(metric), np.array(ts, np.int64), np.array(value, np.float64))

    # --- readings and batches ---

    def _due(self, *, final: bool) -> Iterator[ColumnBatch]:
        """Batches of the held readings that are due: all of them when `final`, else whole batches of
        the readings created before the last `reorder_window` samples, oldest first."""
        held = self._held
        if not len(held):
            return
        order = np.lexsort((held.ts, held.key))  # stable: a reading's samples stay in file order
        key, ts = held.key[order], held.ts[order]
        starts = np.flatnonzero(np.concatenate(([True], (key[1:] != key[:-1]) | (ts[1:] != ts[:-1]))))
        sizes = np.diff(np.append(starts, len(order)))
        created = order[starts]  # each reading's first row: its creation order
        by_creation = np.argsort(created, kind="stable")
        starts, sizes, created = starts[by_creation], sizes[by_creation], created[by_creation]
        ready = len(starts) if final else int(np.searchsorted(created, len(held) - self._window))
        filled = np.cumsum(sizes[:ready])
        cuts = [0]  # as BatchBuilder.take: each batch up to the reading that brings it to batch_size
        while cuts[-1] < ready:
            base = int(filled[cuts[-1] - 1]) if cuts[-1] else 0
            cut = int(np.searchsorted(filled, base + self._batch_size)) + 1
            if cut > ready:
                if not final:
                    break
                cut = ready
            cuts.append(cut)
        going = cuts[-1]
        if not going:
            return
        rows = order[_ranges(starts[:going], sizes[:going])]
        kept = np.ones(len(held), bool)
        kept[rows] = False
        self._held = held.take(np.flatnonzero(kept))
        handed = 0
        try:
            for first, last in zip(cuts, cuts[1:]):
                lo, handed = handed, int(filled[last - 1])
                yield self._batch(held, rows[lo:handed], sizes[first:last])
        finally:
            if handed < len(rows):  # the caller stopped: the readings it did not get are held again
                kept[rows[handed:]] = True
                self._held = held.take(np.flatnonzero(kept))

    def _batch(self, held: _Rows, rows: np.ndarray, sizes: np.ndarray) -> ColumnBatch:
        """One batch of readings: `rows` reading by reading, `sizes` samples each."""
        heads = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        first_rows = rows[heads]
        keys, key_at = np.unique(held.key[first_rows], return_index=True)
        # A device's attributes in a batch are those of its first reading there, as BatchBuilder has them.
        key_order = np.argsort(key_at, kind="stable")
        local_key = np.empty(len(keys), np.int32)
        local_key[key_order] = np.arange(len(keys), dtype=np.int32)
        gpu = local_key[np.searchsorted(keys, held.key[first_rows])]
        devices = [self._devices.values[d] for d in held.device[first_rows][key_at[key_order]].tolist()]
        labels, label = np.unique(held.label[first_rows], return_inverse=True)
        metrics, metric = np.unique(held.metric[rows], return_inverse=True)
        return ColumnBatch(
            gpus=devices, metrics=[self._metrics.values[m] for m in metrics.tolist()],
            labels=[self._labels.values[k] for k in labels.tolist()],
            gpu=gpu, ts=held.ts[first_rows], label=label, size=sizes, metric=metric, value=held.value[rows],
        )


def _dcgm_row(fields: tuple[str, ...]) -> list[str]:
    """A row in DCGM_COLUMNS' order from the identity columns' fields, its time and value left empty
    (the time is DCGM's first column, the value the one before labels_raw)."""
    return ["", *fields[:_VALUE - 1], "", *fields[_VALUE - 1:]]


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The indexes start, start+1, … start+size-1 of each (start, size), one after another."""
    total = int(sizes.sum())
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes)
    return offsets + np.arange(total)


def _block_at(file, position: int, end: int) -> memoryview:
    """Whole lines from `position`: about BLOCK_BYTES, up to a line feed (or the range's end)."""
    file.seek(position)
    block = file.read(min(BLOCK_BYTES, end - position))
    while position + len(block) < end:
        cut = block.rfind(b"\n")
        if cut < 0:  # a file of lone carriage returns; not the last byte, which may be a CR LF's CR
            cut = block.rfind(b"\r", 0, len(block) - 1)
        if cut >= 0:
            return memoryview(block)[:cut + 1]
        block += file.read(min(BLOCK_BYTES, end - position - len(block)))
    return memoryview(block)


def _header_bytes(line_range: LineRange) -> bytes:
    with open(line_range.path, "rb") as file:
        return file.read(line_range.header_end)
