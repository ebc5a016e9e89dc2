"""Sources of samples: DCGM exporter CSV files, the seed's wide CSV, and folders of either.

A source is an iterator of `Sample`s read as a stream, so memory stays flat whatever the file's
size. A malformed row is reported through `on_reject(path, line, reason)` and skipped; the good
rows around it still flow. A header that fits no known format raises `SourceFormatError`.
"""
import csv
import io
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from itertools import count
from math import isfinite
from pathlib import Path
from typing import BinaryIO

from telemetry.ingest.streamer.file_ranges import LineRange, open_range
from telemetry.ingest.wire import GpuInfo, Labels, Sample, gpu_problem
from telemetry.models import METRIC_NAME_MAX, MIG_PROFILE_MAX

logger = logging.getLogger(__name__)

RejectHandler = Callable[[str, int, str], None]

DCGM_COLUMNS = (
    "timestamp", "metric_name", "gpu_id", "device", "uuid", "modelName",
    "Hostname", "container", "pod", "namespace", "value", "labels_raw",
)
# Labels already stored as columns of the GPU or the sample; the rest are kept as "extra" labels.
_LABELS_IN_COLUMNS = frozenset(
    {"Hostname", "UUID", "__name__", "device", "gpu", "modelName", "container", "pod", "namespace"}
)
# A value is plain characters and backslash escapes; written as runs of plain characters between
# escapes, not as one alternation per character, it matches the same text several times faster.
_LABEL_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="([^"\\]*(?:\\.[^"\\]*)*)"')
_WIDE_ATTRIBUTE_COLUMNS = frozenset({"gpu_id", "uuid", "hostname", "Hostname", "timestamp", "device", "modelName", "model_name"})
_TRAILING_DIGITS = re.compile(r"(\d+)$")
_CACHE_LIMIT = 16384
# Lines are read about this many characters at a time (some 500 DCGM rows): enough to keep csv.reader
# in C for long stretches, small next to the streamer's memory.
_BLOCK_CHARS = 1 << 18


class SourceFormatError(ValueError):
    """The file is not a CSV this pipeline can read (the message names what is missing)."""


class RowError(ValueError):
    """One malformed row; the message says what is wrong with it."""


class _Cache(dict):
    """A dict that empties itself when full: repeated values hit, memory stays bounded."""

    def __init__(self, limit: int = _CACHE_LIMIT) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key, value):
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


def parse_timestamp_us(text: str) -> int:
    """RFC 3339 / ISO 8601 to integer microseconds since the epoch; a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RowError(f"bad timestamp {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"bad number {text!r}") from None
    if not isfinite(value):
        raise RowError(f"value {text!r} is not a finite number")
    return value


# DCGM's labels of a MIG GPU instance: they make the row's device that instance, not a label.
_MIG_LABELS = frozenset({"GPU_I_ID", "GPU_I_PROFILE"})


def mig_instance(gpu_i_id: str, gpu_i_profile: str) -> tuple[int | None, str]:
    """(GPU instance id, profile) from DCGM's GPU_I_ID and GPU_I_PROFILE; no id is a whole GPU."""
    if not gpu_i_id.strip():
        return None, ""
    try:
        instance = int(gpu_i_id)
    except ValueError:
        raise RowError(f"bad GPU_I_ID {gpu_i_id!r}") from None
    if not 0 <= instance <= 32767:
        raise RowError(f"GPU_I_ID {instance} out of range")
    if len(gpu_i_profile) > MIG_PROFILE_MAX:
        raise RowError(f"GPU_I_PROFILE longer than {MIG_PROFILE_MAX} characters")
    return instance, gpu_i_profile


def parse_labels(raw: str) -> tuple[tuple[str, str], ...]:
    """DCGM's labels_raw (`key="value",…`) without the labels already stored as columns."""
    return tuple(sorted((k, v) for k, v in _LABEL_PAIR.findall(raw) if k not in _LABELS_IN_COLUMNS))


def _open_text(stream: BinaryIO) -> io.TextIOWrapper:
    # utf-8-sig drops a byte-order mark; surrogateescape lets the row with bad bytes be rejected
    # on its own instead of stopping the file.
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _valid_text(row: list[str]) -> bool:
    """False if a field holds bytes that were not UTF-8 (decoded as lone surrogates)."""
    for field_text in row:
        if not field_text.isascii():
            try:
                field_text.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def _row_problem(row: list[str], width: int) -> str | None:
    """Why a non-empty row cannot be read whatever its format, or None."""
    if len(row) != width:
        return f"expected {width} columns, found {len(row)}"
    if not _valid_text(row):
        return "not valid UTF-8"
    return None


class _Lines:
    """The file's physical lines, numbered, read a block at a time and parsed from line `number` on.

    Two readers share them. The fast path takes the unparsed lines as one list (`window`);
    csv.reader, iterating this object, takes them one at a time from line `number` on and may read
    past the buffered block (a quoted field left open runs on into the next lines). Lines before
    `number` are parsed and dropped when the next block comes in.
    """

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._text = text
        self._buffer: list[str] = []
        self._start = 0  # index in _buffer of line `number`
        self._next = 0  # index in _buffer of the line csv.reader gets next
        self.number = 1  # the first line not parsed yet
        self.at_end = False  # _buffer holds the file's last line

    def window(self) -> list[str]:
        """The unparsed lines: at least two of them, unless the file ends sooner."""
        while len(self._buffer) - self._start < 2 and self._read_block():
            pass
        return self._buffer[self._start:]

    def advance(self, lines: int) -> None:
        """The next `lines` lines are parsed; csv.reader goes on from the line after them."""
        self._start += lines
        self._next = self._start
        self.number += lines

    def rewind(self) -> None:
        """csv.reader's next row starts at line `number`."""
        self._next = self._start

    @property
    def taken(self) -> int:
        """Lines csv.reader took since the last rewind or advance."""
        return self._next - self._start

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if self._next == len(self._buffer) and not self._read_block():
            raise StopIteration
        line = self._buffer[self._next]
        self._next += 1
        return line

    def _read_block(self) -> bool:
        if self.at_end:
            return False
        block = self._text.readlines(_BLOCK_CHARS)
        if not block:
            self.at_end = True
            return False
        del self._buffer[: self._start]
        self._next -= self._start
        self._start = 0
        self._buffer += block
        return True


def _careful_row(lines: _Lines, reader: Iterator[list[str]], path: str, on_reject: RejectHandler) -> list[str]:
    """The fields of line `lines.number` parsed on their own, and on to the next line; [] if rejected.

    A row is one line: a quoted field left open by a cut-off line must not swallow the rows after
    it, so a row that takes more lines is rejected alone and its other lines are parsed afresh.
    """
    number = lines.number
    lines.rewind()
    reason = None
    try:
        row = next(reader)
        if lines.taken > 1:
            reason = "unterminated quoted field (a row must be on one line)"
    except StopIteration:
        reason = "unterminated quoted field at the end of the file"
    except csv.Error as exc:
        reason = f"unreadable CSV: {exc}"
    lines.advance(1)
    if reason is not None:
        on_reject(path, number, reason)
        return []
    return row


def _rows(
    lines: _Lines, reader: Iterator[list[str]], width: int, path: str, on_reject: RejectHandler
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each row of `width` fields of valid text; other non-empty lines are rejects.

    The fast path parses a window of lines with one csv.reader, in C. It holds while that gives as
    many rows as lines (each row whole on its line, the rule `_careful_row` applies); otherwise the
    window goes through `_careful_row` line by line. The window's last row is kept back until the
    file's end is known: a quoted field open at the end of the window may go on into the next block.
    """
    while window := lines.window():
        first = lines.number
        try:
            rows = list(csv.reader(window))
        except csv.Error:
            rows = []
        if len(rows) != len(window):  # a row across lines, or a line csv.reader refuses
            for _ in window:
                number = lines.number
                row = _careful_row(lines, reader, path, on_reject)
                reason = _row_problem(row, width) if row else None
                if reason is not None:
                    on_reject(path, number, reason)
                elif row:
                    yield number, row
            continue
        if not lines.at_end:
            rows.pop()  # parsed again at the head of the next window, with the lines after it
        lines.advance(len(rows))
        for number, row, line in zip(count(first), rows, window):
            # An ASCII line (str.isascii() costs nothing) cannot hold the surrogates of bad bytes.
            if len(row) != width or not line.isascii():
                if not row:
                    continue
                reason = _row_problem(row, width)
                if reason is not None:
                    on_reject(path, number, reason)
                    continue
            yield number, row


def _missing(header: list[str], required: Iterable[str]) -> list[str]:
    present = set(header)
    return [name for name in required if name not in present]


def read_csv(
    stream: BinaryIO,
    *,
    path: str,
    on_reject: RejectHandler,
    local_hostname: str | None = None,
    first_line: int | None = None,
) -> Iterator[Sample]:
    """Samples from one CSV stream, its format detected from the header.

    `first_line` is the line number of the row after the header, for a stream that is a file's
    header followed by a range of its lines from further on (see `file_ranges`), so rejects name
    the file's own lines; by default rows are numbered on from the header.
    """
    lines = _Lines(_open_text(stream))
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise SourceFormatError(f"{path}: empty file, expected a CSV header") from None
    except csv.Error as exc:
        raise SourceFormatError(f"{path}: unreadable header: {exc}") from None
    lines.advance(lines.taken)
    if first_line is not None:
        lines.number = first_line
    header = [name.strip() for name in header]
    rows = _rows(lines, reader, len(header), path, on_reject)
    dcgm_hint = {"metric_name", "labels_raw"} & set(header)
    if dcgm_hint or "gpu_id" not in header:
        missing = _missing(header, DCGM_COLUMNS)
        if missing:
            raise SourceFormatError(
                f"{path}: unrecognised header; a DCGM CSV needs the columns {', '.join(missing)}"
                + ("" if dcgm_hint else " (or a wide CSV needs a gpu_id column)")
            )
        yield from _read_dcgm(rows, header, path, on_reject)
    else:
        metrics = [name for name in header if name not in _WIDE_ATTRIBUTE_COLUMNS]
        if not metrics:
            raise SourceFormatError(f"{path}: a wide CSV needs at least one metric column besides gpu_id")
        too_long = [name for name in metrics if len(name) > METRIC_NAME_MAX]
        if too_long:
            raise SourceFormatError(f"{path}: metric column name(s) longer than {METRIC_NAME_MAX} characters: "
                                    + ", ".join(name[:40] + "…" for name in too_long))
        yield from _read_wide(rows, header, metrics, path, on_reject, local_hostname or socket.gethostname())


# labels_raw with the row's metric name swapped for this, which no field holds: a row is one line, so
# a line break can only end the last field of a file cut off inside it, never stand before a quote.
_PLACEHOLDER = '"\n"'
# A name without a quote, backslash or "=" can be swapped for the placeholder without changing how labels_raw
# parses: no label starts inside it (that needs "="), and a value runs through it to the same closing quote.
_SWAPPABLE = re.compile(r'[^"\\=]+')
# What is swapped out for a name that cannot be: the placeholder for itself, so the text stays as it is.
_NOTHING = _PLACEHOLDER
# In place of Labels: this shape's kept labels hold the metric's name, so each text is parsed on its own.
_BY_TEXT = object()


class _LabelSets:
    """Labels of DCGM rows, parsed once per shape of labels_raw rather than once per row.

    DCGM writes one labels_raw per GPU and metric, the same text every tick. Between the rows of one
    GPU it differs only in the metric's name (`__name__`), which is stored as a column, not kept as a
    label; with that name swapped for a placeholder, the text is a key with one entry per GPU (and
    container, pod and namespace). When the metric's name also appears in a label that is kept, the
    shape does not say what the labels are, and each text is its own key.
    """

    def __init__(self) -> None:
        # (labels_raw.replace(swap, _PLACEHOLDER), container, pod, namespace) → Labels, or _BY_TEXT;
        # `swap` is the metric's name as quoted in labels_raw, or _NOTHING (see _DcgmRows.metrics).
        self.by_key: _Cache = _Cache()
        self._interned: _Cache = _Cache()  # equal label sets are one object
        self._mig: _Cache = _Cache()  # keys of MIG instances' rows → (Labels, GPU_I_ID, GPU_I_PROFILE)
        self._devices: _Cache = _Cache()  # (GPU, GPU_I_ID, GPU_I_PROFILE) → that instance's GpuInfo

    def parse(self, key: tuple[str, str, str, str], raw: str, gpu: GpuInfo) -> tuple[Labels, GpuInfo]:
        """The labels of a key that `by_key` does not map to Labels, and the device they name.

        A MIG instance's labels (GPU_I_ID, GPU_I_PROFILE) make the row's GPU that instance. Such
        keys live in `_mig`, never in `by_key`, so rows of whole GPUs pay nothing for them.
        """
        shape, container, pod, namespace = key
        if self.by_key.get(key) is None and key not in self._mig:
            extra = parse_labels(shape)
            # A value read from the text holds no line break (one would have to stand before its
            # closing quote), so one here is the placeholder: the metric's name in a kept label.
            if not any("\n" in value for _, value in extra):
                return self._remember(key, extra, gpu)
            self.by_key.remember(key, _BY_TEXT)
        if self.by_key.get(key) is _BY_TEXT:
            key = (raw, container, pod, namespace)
        found = self.by_key.get(key)
        if found is not None:
            return found, gpu
        mig = self._mig.get(key)
        if mig is not None:
            return mig[0], self._device(gpu, mig[1], mig[2])
        return self._remember(key, parse_labels(raw), gpu)

    def _remember(
        self, key: tuple[str, str, str, str], extra: tuple[tuple[str, str], ...], gpu: GpuInfo
    ) -> tuple[Labels, GpuInfo]:
        mig = dict(pair for pair in extra if pair[0] in _MIG_LABELS)
        if mig:
            extra = tuple(pair for pair in extra if pair[0] not in _MIG_LABELS)
        labels = Labels(key[1], key[2], key[3], extra)
        labels = self._interned.get(labels) or self._interned.remember(labels, labels)
        if not mig:
            return self.by_key.remember(key, labels), gpu
        instance, profile = mig_instance(mig.get("GPU_I_ID", ""), mig.get("GPU_I_PROFILE", ""))
        self._mig.remember(key, (labels, instance, profile))
        return labels, self._device(gpu, instance, profile)

    def _device(self, gpu: GpuInfo, instance: int | None, profile: str) -> GpuInfo:
        key = (gpu, instance, profile)
        return self._devices.get(key) or self._devices.remember(key, gpu._replace(mig_instance=instance, mig_profile=profile))


class _DcgmRows:
    """The checks of a DCGM row's GPU, metric and time, their results cached on the fields as written.

    Only fields that pass get into a cache, so a row whose fields are all found there passes these
    checks as it is.
    """

    def __init__(self, header: list[str]) -> None:
        self.columns = tuple(header.index(name) for name in DCGM_COLUMNS)
        self.gpus: _Cache = _Cache()  # (uuid, Hostname, gpu_id, device, modelName) → GpuInfo
        self.metrics: _Cache = _Cache()  # metric_name → (name, what _LabelSets' keys swap out of labels_raw)
        self.times: _Cache = _Cache()  # timestamp → microseconds

    def checked(self, row: list[str]) -> tuple[GpuInfo, tuple[str, str], int]:
        """(GPU, metric entry, time) of a row, checked in order: the first problem is the one reported."""
        gpu, metric = self.device_and_metric(row)
        c_ts = self.columns[0]
        timestamp = self.times.get(row[c_ts])
        if timestamp is None:
            timestamp = self.times.remember(row[c_ts], parse_timestamp_us(row[c_ts]))
        return gpu, metric, timestamp

    def device_and_metric(self, row: list[str]) -> tuple[GpuInfo, tuple[str, str]]:
        """(GPU, metric entry) of a row, its UUID checked first, then its metric, then its GPU."""
        c_metric, c_gpu, c_device, c_uuid, c_model, c_host = self.columns[1:7]
        uuid = row[c_uuid].strip()
        if not uuid:
            raise RowError("no GPU UUID")
        metric = self.metrics.get(row[c_metric])
        if metric is None:
            name = row[c_metric].strip()
            if not name:
                raise RowError("no metric name")
            if len(name) > METRIC_NAME_MAX:
                raise RowError(f"metric name longer than {METRIC_NAME_MAX} characters")
            swap = f'"{name}"' if _SWAPPABLE.fullmatch(name) else _NOTHING
            metric = self.metrics.remember(row[c_metric], (name, swap))
        gpu_key = (row[c_uuid], row[c_host], row[c_gpu], row[c_device], row[c_model])
        gpu = self.gpus.get(gpu_key)
        if gpu is None:
            try:
                index = int(row[c_gpu])
            except ValueError:
                raise RowError(f"bad gpu_id {row[c_gpu]!r}") from None
            if not 0 <= index <= 32767:
                raise RowError(f"gpu_id {index} out of range")
            gpu = GpuInfo(uuid, row[c_host], index, row[c_device], row[c_model])
            problem = gpu_problem(gpu)
            if problem is not None:
                raise RowError(problem)
            gpu = self.gpus.remember(gpu_key, gpu)
        return gpu, metric


class DcgmIdentities:
    """The device, metric and labels that a DCGM row's fields other than its time and value name,
    checked as `read_csv` checks them: for a reader that sees each distinct combination of those
    fields once (`dcgm_blocks`), not each row."""

    def __init__(self, header: list[str]) -> None:
        self._rows = _DcgmRows(header)
        self._labels = _LabelSets()
        self.columns = self._rows.columns

    def identity(self, row: list[str]) -> tuple[GpuInfo, str, Labels]:
        """(device, metric name, labels) of a row; RowError if `read_csv` would reject it for these fields."""
        gpu, metric = self._rows.device_and_metric(row)
        c_container, c_pod, c_ns, _, c_labels = self.columns[7:]
        key = (row[c_labels].replace(metric[1], _PLACEHOLDER), row[c_container], row[c_pod], row[c_ns])
        labels = self._labels.by_key.get(key)
        if labels is None or labels is _BY_TEXT:
            labels, gpu = self._labels.parse(key, row[c_labels], gpu)
        return gpu, metric[0], labels


# Sample's own __new__ is a Python function; tuple.__new__ makes the same Sample in C, at half the cost.
_new_sample = tuple.__new__


def _read_dcgm(
    rows: Iterator[tuple[int, list[str]]], header: list[str], path: str, on_reject: RejectHandler
) -> Iterator[Sample]:
    dcgm = _DcgmRows(header)
    labels = _LabelSets()
    # Locals: this loop runs once per row, and its lookups are most of what a row costs beyond csv.reader.
    (c_ts, c_metric, c_gpu, c_device, c_uuid, c_model, c_host, c_container, c_pod, c_ns, c_value, c_labels) = (
        dcgm.columns
    )
    gpus, metrics, times, label_sets = dcgm.gpus, dcgm.metrics, dcgm.times, labels.by_key
    for line, row in rows:
        gpu = gpus.get((row[c_uuid], row[c_host], row[c_gpu], row[c_device], row[c_model]))
        metric = metrics.get(row[c_metric])
        timestamp = times.get(row[c_ts])
        try:
            if gpu is None or metric is None or timestamp is None:
                gpu, metric, timestamp = dcgm.checked(row)
            value = parse_value(row[c_value])
        except RowError as exc:
            on_reject(path, line, str(exc))
            continue
        label_key = (row[c_labels].replace(metric[1], _PLACEHOLDER), row[c_container], row[c_pod], row[c_ns])
        sample_labels = label_sets.get(label_key)
        if sample_labels is None or sample_labels is _BY_TEXT:
            try:
                sample_labels, gpu = labels.parse(label_key, row[c_labels], gpu)
            except RowError as exc:
                on_reject(path, line, str(exc))
                continue
        yield _new_sample(Sample, (gpu, metric[0], timestamp, value, sample_labels))


def _wide_index(gpu_id: str) -> int:
    match = _TRAILING_DIGITS.search(gpu_id)
    return int(match.group(1)) % 32768 if match else 0


def _read_wide(
    rows: Iterator[tuple[int, list[str]]],
    header: list[str],
    metrics: list[str],
    path: str,
    on_reject: RejectHandler,
    local_hostname: str,
) -> Iterator[Sample]:
    """The seed's wide CSV: one row per GPU, one column per metric; one sample per metric column.

    Without a uuid column the GPU's identity is `<hostname>:<gpu_id>`; without a hostname column
    the host is this machine's; without a timestamp column every row of one pass shares the time
    the pass started (one snapshot).
    """
    column = {name: i for i, name in enumerate(header)}
    host_column = column.get("hostname", column.get("Hostname"))
    model_column = column.get("modelName", column.get("model_name"))
    metric_columns = [(name, column[name]) for name in metrics]
    pass_time = time.time_ns() // 1000
    for line, row in rows:
        try:
            gpu_id = row[column["gpu_id"]].strip()
            if not gpu_id:
                raise RowError("no gpu_id")
            hostname = row[host_column].strip() if host_column is not None else local_hostname
            uuid = row[column["uuid"]].strip() if "uuid" in column else f"{hostname}:{gpu_id}"
            if not uuid:
                raise RowError("no GPU UUID")
            gpu = GpuInfo(
                uuid,
                hostname,
                _wide_index(gpu_id),
                row[column["device"]] if "device" in column else "",
                row[model_column] if model_column is not None else "",
            )
            problem = gpu_problem(gpu)
            if problem is not None:
                raise RowError(problem)
            timestamp = parse_timestamp_us(row[column["timestamp"]]) if "timestamp" in column else pass_time
            values = [(name, parse_value(row[i])) for name, i in metric_columns if row[i].strip() != ""]
        except RowError as exc:
            on_reject(path, line, str(exc))
            continue
        for name, value in values:
            yield Sample(gpu, name, timestamp, value, None)


def csv_files(location: Path) -> list[Path]:
    """The CSV files a path names: the file itself, or a folder's *.csv files in name order."""
    if location.is_dir():
        files = sorted(p for p in location.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
        if not files:
            raise SourceFormatError(f"{location}: folder has no .csv files")
        return files
    if not location.exists():
        raise SourceFormatError(f"{location}: no such file or folder")
    return [location]


def read_path(location: Path, *, on_reject: RejectHandler) -> Iterator[Sample]:
    """Samples from a CSV file or a folder of CSV files, one file after another."""
    for file_path in csv_files(location):
        with open(file_path, "rb") as stream:
            yield from read_csv(stream, path=str(file_path), on_reject=on_reject)


def read_line_ranges(ranges: Iterable[LineRange], *, on_reject: RejectHandler) -> Iterator[Sample]:
    """Samples from ranges of files' lines (see `file_ranges`), one after another, each read behind its
    file's header; rejects name the file's own line numbers."""
    for line_range in ranges:
        with open_range(line_range) as stream:
            yield from read_csv(stream, path=str(line_range.path), on_reject=on_reject,
                                first_line=line_range.first_line)


class RejectLog:
    """Counts and logs rejected rows, with their file and line number."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, path: str, line: int, reason: str) -> None:
        self.count += 1
        logger.warning("rejected row %s:%d: %s", path, line, reason, extra={"path": path, "line": line, "reason": reason})
