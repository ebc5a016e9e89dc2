"""A CSV file cut into ranges of whole lines, each read as a file of its own, for parsers in parallel.

Every row of this pipeline's CSVs is one physical line (`sources._careful_row` rejects a row that
runs on), so a cut just after a line feed never splits a row. Each range is read behind the file's
header line, and knows the number of its first line, so rejects name the file's own line numbers.
Lines are counted as the text reader splits them: at a line feed, a CR LF, or a lone carriage return.
"""
import csv
import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

# Bytes read at a time when looking for line ends and counting lines: counting runs in C at memory
# speed, so the size only bounds memory.
_CHUNK = 1 << 20
# How far a cut may move on to where the time changes. A DCGM export lists a time step metric by
# metric, so a cut inside one splits every reading of that step between two workers: each is then
# stored in two parts and merged, and at a per-GPU limit trimming cuts readings short on every
# batch after. A large fleet's time step is a few megabytes.
_TICK_SEARCH_BYTES = 64 << 20


@dataclass(frozen=True)
class LineRange:
    """Lines [start, end) of a file (byte offsets), read after its header, bytes [0, header_end)."""

    path: Path
    header_end: int
    start: int
    end: int

    @cached_property
    def first_line(self) -> int:
        """The file's line number of the line at `start` (the header is line 1).

        Counted when first asked, by the process that asks: numbering a worker's range means
        reading the whole file before it, which the block reader needs only for a bad row.
        """
        with open(self.path, "rb") as file:
            return 1 + line_breaks(file, 0, self.start)

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def at_file_end(self) -> bool:
        """Whether the range holds the file's last line."""
        return self.end == self.path.stat().st_size


def line_ranges(path: Path, parts: int) -> list[LineRange]:
    """The file's lines after the header in `parts` ranges of about equal size, in order.

    Cuts are moved forward to just after the next line feed and, in a file with a `timestamp`
    column, on to the next line whose time differs (see `_TICK_SEARCH_BYTES`), so a range may be
    empty (a small file, one time step, a line longer than a range). The ranges cover the lines
    after the header exactly.
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, not {parts}")
    size = path.stat().st_size
    with open(path, "rb") as file:
        header_end = _line_end(file, 0, size)
        body = size - header_end
        time_column = _time_column(file, header_end)
        cuts = [header_end]
        for k in range(1, parts):
            cut = _after_line_feed(file, header_end + body * k // parts, size)
            if time_column is not None:
                cut = _next_time_step(file, cut, size, time_column)
            cuts.append(max(cut, cuts[-1]))
        cuts.append(size)
    return [LineRange(path, header_end, start, end) for start, end in zip(cuts, cuts[1:])]


def worker_shares(files: list[Path], workers: int) -> list[list[LineRange]]:
    """Each file cut into `workers` ranges; worker i's share is range i of every file, in file order."""
    ranges_by_file = [line_ranges(path, workers) for path in files]
    return [[ranges[i] for ranges in ranges_by_file] for i in range(workers)]


def open_range(line_range: LineRange) -> io.BufferedReader:
    """The header line, the range's lines and, unless they end the file, an empty line: one binary stream.

    The empty line keeps a range's last line read as the whole file would read it: a line left open
    inside a quoted field runs on into the next line there and is rejected, and it must run on here
    too, not end at the range's end as a cut-off last line would. An empty line is no row.
    The stream's `raw.range_read` says how many of the range's bytes were read (for progress).
    """
    return io.BufferedReader(_RangeReader(line_range), buffer_size=1 << 16)


class _RangeReader(io.RawIOBase):
    """The bytes of `open_range`: header, range, and an empty line unless the range ends the file."""

    def __init__(self, line_range: LineRange) -> None:
        super().__init__()
        self._file = open(line_range.path, "rb", buffering=0)  # this reader is the buffer
        self._spans = [(0, line_range.header_end), (line_range.start, line_range.end)]
        self._tail = b"" if line_range.at_file_end else b"\n"
        self.range_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._spans:
            begin, stop = self._spans[0]
            if begin < stop:
                self._file.seek(begin)
                read = self._file.readinto(memoryview(buffer)[: stop - begin])
                if read:
                    self._spans[0] = (begin + read, stop)
                    if len(self._spans) == 1:
                        self.range_read += read
                    return read
            self._spans.pop(0)  # done, or the file was cut short since it was split
        tail, self._tail = self._tail, b""
        buffer[: len(tail)] = tail
        return len(tail)

    def close(self) -> None:
        self._file.close()
        super().close()


def _time_column(file: BinaryIO, header_end: int) -> int | None:
    """The position of the header's `timestamp` column, or None."""
    file.seek(0)
    header = file.read(header_end).decode("utf-8-sig", errors="replace")
    names = [name.strip() for name in next(csv.reader([header.rstrip("\r\n")]), [])]
    return names.index("timestamp") if "timestamp" in names else None


def _line_time(line: bytes, column: int) -> bytes | str | None:
    """The time field of a line as written, enough to tell two lines' times apart."""
    if column == 0:  # where DCGM writes it: no need to parse the rest of the line
        return line.split(b",", 1)[0].strip()
    fields = next(csv.reader([line.decode("utf-8", errors="replace")]), [])
    return fields[column].strip() if len(fields) > column else None


def _next_time_step(file: BinaryIO, offset: int, size: int, column: int) -> int:
    """The start of the first line after the line at `offset` whose time differs from that line's; the
    file's end if the time never changes before it; `offset` itself if it does not within `_TICK_SEARCH_BYTES`."""
    file.seek(offset)
    first = file.readline(_TICK_SEARCH_BYTES)
    time, position, limit = _line_time(first, column), offset + len(first), min(size, offset + _TICK_SEARCH_BYTES)
    while position < limit:
        line = file.readline(limit - position)
        if _line_time(line, column) != time:
            return position
        position += len(line)
    return size if position >= size else offset


def _line_end(file: BinaryIO, offset: int, size: int) -> int:
    """The offset just after the line that starts at `offset` (a LF, CR LF or lone CR ends it)."""
    file.seek(offset)
    while chunk := file.read(_CHUNK):
        first = min((i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0), default=-1)
        if first >= 0:
            end = offset + first + 1
            file.seek(end)
            if chunk[first:end - offset] == b"\r" and file.read(1) == b"\n":
                end += 1
            return end
        offset += len(chunk)
    return size


def _after_line_feed(file: BinaryIO, offset: int, size: int) -> int:
    """The offset just after the first line feed at or after `offset`: a line starts there."""
    file.seek(offset)
    while chunk := file.read(_CHUNK):
        found = chunk.find(b"\n")
        if found >= 0:
            return offset + found + 1
        offset += len(chunk)
    return size


def line_breaks(file: BinaryIO, start: int, end: int) -> int:
    """Line ends in bytes [start, end) of a file, where `end` is not between a CR and its LF."""
    file.seek(start)
    breaks = 0
    left = end - start
    carriage_return_before = False  # the previous chunk ended with CR: a LF first here is its CR LF
    while left > 0 and (chunk := file.read(min(_CHUNK, left))):
        left -= len(chunk)
        breaks += chunk.count(b"\n")
        if b"\r" in chunk:  # a file of LF line ends (the usual) is counted in one pass
            breaks += chunk.count(b"\r") - chunk.count(b"\r\n")
        if carriage_return_before and chunk.startswith(b"\n"):
            breaks -= 1
        carriage_return_before = chunk.endswith(b"\r")
    return breaks
