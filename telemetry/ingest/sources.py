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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from telemetry.ingest.batch import GpuInfo, Labels, Sample

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
_LABEL_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_WIDE_ATTRIBUTE_COLUMNS = frozenset({"gpu_id", "uuid", "hostname", "Hostname", "timestamp", "device", "modelName", "model_name"})
_TRAILING_DIGITS = re.compile(r"(\d+)$")
_CACHE_LIMIT = 16384


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


# NUL cannot occur in CSV text (the csv module refuses it), so these placeholders are unambiguous.
_PLACEHOLDERS = ("\0u", "\0m", "\0h", "\0d", "\0g")


class _LabelParser:
    """Parses labels_raw once per shape rather than once per row.

    DCGM repeats one labels_raw per GPU and metric, differing only in the row's own UUID, metric,
    host, device and index. Each whole quoted value equal to one of those is swapped for a
    placeholder to form the cache key (label names are never quoted, so they are never touched),
    and the rows of a host share one entry; on a hit the placeholders in the cached labels are
    swapped back for this row's values, in reverse order, which undoes the swap exactly.
    """

    def __init__(self) -> None:
        self._cache = _Cache(limit=4096)

    def __call__(self, raw: str, *row_values: str) -> tuple[tuple[str, str], ...]:
        quoted = [f'"{value}"' for value in row_values]
        key = raw
        for value, placeholder in zip(quoted, _PLACEHOLDERS):
            key = key.replace(value, f'"{placeholder}"')
        extra = self._cache.get(key)
        if extra is None:
            extra = self._cache.remember(key, parse_labels(key))
        if any("\0" in value for _, value in extra):
            extra = tuple((name, _restore(value, row_values)) for name, value in extra)
        return extra


def _restore(text: str, row_values: tuple[str, ...]) -> str:
    for value, placeholder in reversed(list(zip(row_values, _PLACEHOLDERS))):
        text = text.replace(placeholder, value)
    return text


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
    if value != value or value in (float("inf"), float("-inf")):
        raise RowError(f"value {text!r} is not a finite number")
    return value


def parse_labels(raw: str) -> tuple[tuple[str, str], ...]:
    """DCGM's labels_raw (`key="value",…`) without the labels already stored as columns."""
    return tuple(sorted((k, v) for k, v in _LABEL_PAIR.findall(raw) if k not in _LABELS_IN_COLUMNS))


def _open_text(stream: BinaryIO) -> io.TextIOWrapper:
    # utf-8-sig drops a byte-order mark; surrogateescape lets the row with bad bytes be rejected
    # on its own instead of stopping the file.
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _check_text(row: list[str]) -> None:
    for field_text in row:
        if not field_text.isascii():
            try:
                field_text.encode("utf-8")
            except UnicodeEncodeError:
                raise RowError("not valid UTF-8") from None


class _Lines:
    """The file's physical lines for csv.reader, numbered, with a way to read some of them again.

    A row is one line: a quoted field left open by a cut-off line must not swallow the rows
    after it, so `_rows` rejects such a row alone and hands its extra lines back.
    """

    def __init__(self, text: Iterator[str]) -> None:
        self._text = text
        self._again: deque[tuple[int, str]] = deque()
        self._number = 0
        self.taken: list[tuple[int, str]] = []

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if self._again:
            numbered = self._again.popleft()
        else:
            self._number += 1
            numbered = (self._number, next(self._text))
        self.taken.append(numbered)
        return numbered[1]

    def read_again(self, numbered: list[tuple[int, str]]) -> None:
        self._again.extendleft(reversed(numbered))


def _rows(lines: _Lines, reader: Iterator[list[str]], path: str, on_reject: RejectHandler) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for every parseable, non-empty row; CSV-level errors are rejects."""
    while True:
        lines.taken = []
        try:
            row = next(reader)
        except StopIteration:
            if lines.taken:  # the file ended inside a quoted field
                on_reject(path, lines.taken[0][0], "unterminated quoted field at the end of the file")
                lines.read_again(lines.taken[1:])
                continue
            return
        except csv.Error as exc:
            on_reject(path, lines.taken[0][0] if lines.taken else 0, f"unreadable CSV: {exc}")
            lines.read_again(lines.taken[1:])
            continue
        if len(lines.taken) > 1:
            on_reject(path, lines.taken[0][0], "unterminated quoted field (a row must be on one line)")
            lines.read_again(lines.taken[1:])
            continue
        if row:
            yield lines.taken[0][0], row


def _missing(header: list[str], required: Iterable[str]) -> list[str]:
    present = set(header)
    return [name for name in required if name not in present]


def read_csv(
    stream: BinaryIO, *, path: str, on_reject: RejectHandler, local_hostname: str | None = None
) -> Iterator[Sample]:
    """Samples from one CSV stream, its format detected from the header."""
    lines = _Lines(iter(_open_text(stream)))
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise SourceFormatError(f"{path}: empty file, expected a CSV header") from None
    except csv.Error as exc:
        raise SourceFormatError(f"{path}: unreadable header: {exc}") from None
    header = [name.strip() for name in header]
    dcgm_hint = {"metric_name", "labels_raw"} & set(header)
    if dcgm_hint or "gpu_id" not in header:
        missing = _missing(header, DCGM_COLUMNS)
        if missing:
            raise SourceFormatError(
                f"{path}: unrecognised header; a DCGM CSV needs the columns {', '.join(missing)}"
                + ("" if dcgm_hint else " (or a wide CSV needs a gpu_id column)")
            )
        yield from _read_dcgm(lines, reader, header, path, on_reject)
    else:
        metrics = [name for name in header if name not in _WIDE_ATTRIBUTE_COLUMNS]
        if not metrics:
            raise SourceFormatError(f"{path}: a wide CSV needs at least one metric column besides gpu_id")
        yield from _read_wide(lines, reader, header, metrics, path, on_reject, local_hostname or socket.gethostname())


def _read_dcgm(lines: _Lines, reader, header: list[str], path: str, on_reject: RejectHandler) -> Iterator[Sample]:
    column = {name: header.index(name) for name in DCGM_COLUMNS}
    (c_ts, c_metric, c_gpu, c_device, c_uuid, c_model, c_host, c_container, c_pod, c_ns, c_value, c_labels) = (
        column[name] for name in DCGM_COLUMNS
    )
    width = len(header)
    times: _Cache = _Cache()
    gpus: _Cache = _Cache()
    labels: _Cache = _Cache()
    extra_labels = _LabelParser()
    for line, row in _rows(lines, reader, path, on_reject):
        try:
            if len(row) != width:
                raise RowError(f"expected {width} columns, found {len(row)}")
            _check_text(row)
            uuid = row[c_uuid].strip()
            if not uuid:
                raise RowError("no GPU UUID")
            metric = row[c_metric].strip()
            if not metric:
                raise RowError("no metric name")
            gpu_key = (uuid, row[c_host], row[c_gpu], row[c_device], row[c_model])
            gpu = gpus.get(gpu_key)
            if gpu is None:
                try:
                    index = int(row[c_gpu])
                except ValueError:
                    raise RowError(f"bad gpu_id {row[c_gpu]!r}") from None
                if not 0 <= index <= 32767:
                    raise RowError(f"gpu_id {index} out of range")
                gpu = gpus.remember(gpu_key, GpuInfo(uuid, row[c_host], index, row[c_device], row[c_model]))
            stamp = row[c_ts]
            timestamp = times.get(stamp)
            if timestamp is None:
                timestamp = times.remember(stamp, parse_timestamp_us(stamp))
            value = parse_value(row[c_value])
            extra = extra_labels(row[c_labels], uuid, metric, row[c_host], row[c_device], row[c_gpu])
            label_key = (row[c_container], row[c_pod], row[c_ns], extra)
            sample_labels = labels.get(label_key)
            if sample_labels is None:
                sample_labels = labels.remember(label_key, Labels(row[c_container], row[c_pod], row[c_ns], extra))
        except RowError as exc:
            on_reject(path, line, str(exc))
            continue
        yield Sample(gpu, metric, timestamp, value, sample_labels)


def _wide_index(gpu_id: str) -> int:
    match = _TRAILING_DIGITS.search(gpu_id)
    return int(match.group(1)) % 32768 if match else 0


def _read_wide(
    lines: _Lines, reader, header: list[str], metrics: list[str], path: str, on_reject: RejectHandler, local_hostname: str
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
    width = len(header)
    for line, row in _rows(lines, reader, path, on_reject):
        try:
            if len(row) != width:
                raise RowError(f"expected {width} columns, found {len(row)}")
            _check_text(row)
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


class RejectLog:
    """Counts and logs rejected rows, with their file and line number."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, path: str, line: int, reason: str) -> None:
        self.count += 1
        logger.warning("rejected row %s:%d: %s", path, line, reason, extra={"path": path, "line": line, "reason": reason})
