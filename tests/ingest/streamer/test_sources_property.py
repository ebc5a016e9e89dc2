"""Property tests of the CSV readers (telemetry/ingest/sources.py) over bad and odd input.

Any bytes give samples or SourceFormatError, never another exception; a malformed row is rejected
with its line number and the valid rows around it still come through, whatever the file's byte-order
mark, line ends, column order, extra columns, empty lines, truncated last line or non-UTF-8 bytes.
"""
import csv
import io
import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from telemetry.ingest.streamer import sources
from telemetry.ingest.wire import Sample
from telemetry.ingest.streamer.sources import DCGM_COLUMNS, SourceFormatError, parse_labels, parse_timestamp_us, read_csv

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DCGM_HEADER = ",".join(DCGM_COLUMNS).encode()


def read_all(data: bytes) -> tuple[list[Sample], list[tuple[str, int, str]]]:
    rejects: list[tuple[str, int, str]] = []
    samples = list(read_csv(io.BytesIO(data), path="fuzz.csv", on_reject=lambda *args: rejects.append(args),
                            local_hostname="this-host"))
    return samples, rejects


def assert_samples_or_format_error(data: bytes) -> None:
    try:
        samples, rejects = read_all(data)
    except SourceFormatError as exc:
        assert str(exc).startswith("fuzz.csv:")
        return
    for sample in samples:
        assert isinstance(sample, Sample)
        assert isinstance(sample.timestamp_us, int) and isinstance(sample.value, float)
        assert sample.value == sample.value and abs(sample.value) != float("inf")
        assert sample.gpu.uuid.strip() and sample.metric.strip()
    for path, line, reason in rejects:
        assert path == "fuzz.csv" and isinstance(line, int) and line >= 1 and reason


# --- Any bytes ---


@PROPERTY_SETTINGS
@given(st.binary(max_size=2000))
@example(b"")
@example(b"\xef\xbb\xbf")
@example(b"\x00\x00")
@example(b'"unclosed')
def test_any_bytes_give_samples_or_a_format_error(data):
    assert_samples_or_format_error(data)


@PROPERTY_SETTINGS
@given(
    header=st.sampled_from([DCGM_HEADER, b"gpu_id,uuid,hostname,timestamp,util,temp", b"gpu_id,util"]),
    body=st.binary(max_size=2000),
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
@example(header=DCGM_HEADER, body=b'"2025-07-18T20:42:34Z"\x00', eol=b"\n")
@example(header=b"gpu_id,util", body=b"0,\xff\xfe", eol=b"\r\n")
def test_any_body_under_a_valid_header_gives_samples_or_rejects(header, body, eol):
    """Behind a header that parses, garbage is only ever rejected rows (with line numbers), never an exception."""
    assert_samples_or_format_error(header + eol + body)


# --- Valid rows mixed with malformed ones ---

_SAFE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12
)
_NAME = st.builds(lambda head, tail: head + tail, st.sampled_from("ABCDGHMPTUxyz019"), _SAFE_TEXT)
_TIMESTAMPS = st.sampled_from([
    "2025-07-18T20:42:34Z", "2025-07-18T20:42:34.5+00:00", "2025-07-18 20:42:35", "2025-07-18T22:42:36+02:00",
])
_VALUES = st.floats(allow_nan=False, allow_infinity=False, width=64)


@dataclass(frozen=True)
class Row:
    fields: dict[str, str]
    expected: tuple | None  # (uuid, metric, timestamp_us, value) if the row is valid, None if it must be rejected
    raw_bytes: bool = False  # the row carries non-UTF-8 bytes


@st.composite
def valid_rows(draw) -> Row:
    uuid = "GPU-" + draw(_SAFE_TEXT)
    metric = draw(_NAME)
    stamp = draw(_TIMESTAMPS)
    value = draw(_VALUES)
    fields = {
        "timestamp": stamp, "metric_name": metric, "gpu_id": str(draw(st.integers(0, 32767))),
        "device": draw(_SAFE_TEXT), "uuid": uuid, "modelName": draw(_SAFE_TEXT), "Hostname": draw(_SAFE_TEXT),
        "container": draw(_SAFE_TEXT), "pod": draw(_SAFE_TEXT), "namespace": draw(_SAFE_TEXT),
        "value": draw(st.sampled_from([repr(value), f"{value:.17g}"])),
        "labels_raw": draw(st.sampled_from(['', 'job="dcgm",instance="h:9400"', 'a="b\\"c",k="v"'])),
    }
    return Row(fields, (uuid.strip(), metric.strip(), parse_timestamp_us(stamp), float(fields["value"])))


@st.composite
def invalid_rows(draw) -> Row:
    row = draw(valid_rows())
    fields = dict(row.fields)
    kind = draw(st.sampled_from(
        ["bad_time", "bad_value", "nan", "inf", "no_uuid", "no_metric", "bad_gpu", "gpu_range", "non_utf8"]
    ))
    if kind == "bad_time":
        fields["timestamp"] = draw(st.sampled_from(["yesterday", "2025-13-01T00:00:00Z", "", "2025-07-18T25:00:00"]))
    elif kind == "bad_value":
        fields["value"] = draw(st.sampled_from(["", "abc", "1,5", "0x10"]))
    elif kind == "nan":
        fields["value"] = "nan"
    elif kind == "inf":
        fields["value"] = draw(st.sampled_from(["inf", "-Infinity", "1e400"]))
    elif kind == "no_uuid":
        fields["uuid"] = draw(st.sampled_from(["", "   "]))
    elif kind == "no_metric":
        fields["metric_name"] = ""
    elif kind == "bad_gpu":
        fields["gpu_id"] = draw(st.sampled_from(["x", "", "1.5"]))
    elif kind == "gpu_range":
        fields["gpu_id"] = draw(st.sampled_from(["-1", "32768", "99999999"]))
    else:
        # A lone surrogate is written out with surrogateescape as a byte that is not UTF-8.
        fields["uuid"] = fields["uuid"] + "\udcff\udcfe"
        return Row(fields, None, raw_bytes=True)
    return Row(fields, None)


@st.composite
def layouts(draw):
    """Column order and extra columns of one file."""
    columns = list(DCGM_COLUMNS)
    if draw(st.booleans()):
        columns = draw(st.permutations(columns))
    extras = draw(st.lists(st.sampled_from(["Extra", "node", "cluster", "x_1"]), unique=True, max_size=3))
    for name in extras:
        columns.insert(draw(st.integers(0, len(columns))), name)
    return columns, extras


def render(columns, extras, rows, *, eol, bom, quote_all, empty_before) -> tuple[bytes, list[int]]:
    """The file's bytes and the line number each row ends on."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=eol, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    line = 1
    lines = []
    for row, empties in zip(rows, empty_before):
        out.write(eol * empties)
        line += empties
        writer.writerow([row.fields.get(name, f"{name}-value") for name in columns])
        line += 1
        lines.append(line)
    data = out.getvalue().encode("utf-8", errors="surrogateescape")
    return (b"\xef\xbb\xbf" if bom else b"") + data, lines


@PROPERTY_SETTINGS
@given(
    layout=layouts(),
    rows=st.lists(st.one_of(valid_rows(), invalid_rows()), min_size=1, max_size=12),
    eol=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    quote_all=st.booleans(),
    data=st.data(),
)
def test_valid_rows_survive_their_malformed_neighbours(layout, rows, eol, bom, quote_all, data):
    columns, extras = layout
    empty_before = data.draw(st.lists(st.integers(0, 2), min_size=len(rows), max_size=len(rows)))
    content, lines = render(columns, extras, rows, eol=eol, bom=bom, quote_all=quote_all, empty_before=empty_before)

    samples, rejects = read_all(content)

    expected = [row.expected for row in rows if row.expected is not None]
    got = [(s.gpu.uuid, s.metric, s.timestamp_us, s.value) for s in samples]
    assert got == expected
    assert [line for _, line, _ in rejects] == [line for row, line in zip(rows, lines) if row.expected is None]


@PROPERTY_SETTINGS
@given(rows=st.lists(valid_rows(), min_size=2, max_size=8), eol=st.sampled_from(["\n", "\r\n"]), data=st.data())
def test_a_truncated_last_line_loses_nothing_before_it(rows, eol, data):
    content, _ = render(list(DCGM_COLUMNS), [], rows, eol=eol, bom=False, quote_all=True, empty_before=[0] * len(rows))
    body = content[: -len(eol)]  # no line end after the last row
    last_start = body.rindex(eol.encode()) + len(eol)
    cut = data.draw(st.integers(last_start + 1, len(body) - 1), label="cut")

    samples, rejects = read_all(body[:cut])

    got = [(s.gpu.uuid, s.metric, s.timestamp_us, s.value) for s in samples]
    assert got[: len(rows) - 1] == [row.expected for row in rows[:-1]]
    # The cut row is either still a valid row (cut inside a field that may be shorter) or rejected on its line.
    assert len(got) + len(rejects) == len(rows)
    assert all(line == len(rows) + 1 for _, line, _ in rejects)


# --- A row cut short in the middle of a file ---


def _dcgm_line(n: int) -> str:
    return (f'"2025-07-18T20:42:3{n}Z","DCGM_FI_DEV_GPU_UTIL","{n}","nvidia{n}","GPU-{n}","NVIDIA H100 80GB HBM3",'
            f'"host-1","","","","{n}","job=""dcgm"""')


@pytest.mark.parametrize("inside", ["2025-07", "DCGM_FI", "GPU-", "NVIDIA H1", 'job=""dc'])
def test_a_row_cut_inside_a_quoted_field_mid_file_does_not_swallow_the_next_rows(inside):
    lines = [_dcgm_line(n) for n in range(5)]
    lines[1] = lines[1][: lines[1].index(inside) + len(inside)]
    content = ("\n".join([",".join(DCGM_COLUMNS), *lines]) + "\n").encode()

    samples, rejects = read_all(content)

    assert [s.gpu.uuid for s in samples] == ["GPU-0", "GPU-2", "GPU-3", "GPU-4"]
    assert [line for _, line, _ in rejects] == [3]


# --- Windows of lines: the fast path and the line-by-line one meet anywhere in a file ---

_CUT = '"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","7'  # a row cut off inside a quoted field
_JUNK = ('x,y', 'x"y,z', '"a","b"')  # two columns each, one with a stray quote


@PROPERTY_SETTINGS
@given(
    kinds=st.lists(st.sampled_from(["good", "good", "good", "cut", "junk", "empty"]), min_size=1, max_size=40),
    junk=st.sampled_from(_JUNK),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    final_eol=st.booleans(),
    block_chars=st.sampled_from([1, 60, 400, 1 << 18]),
)
def test_each_line_reads_the_same_wherever_the_windows_fall(kinds, junk, eol, final_eol, block_chars):
    """Lines are read a block at a time and parsed a window at a time, falling back to one at a time
    where a row does not end on its own line. Whatever the block size, every line reads as it would
    on its own: a cut-off row is rejected on its line (or, last in the file, read as far as it goes)."""
    lines = [_dcgm_line(n % 10) if kind == "good" else {"cut": _CUT, "junk": junk, "empty": ""}[kind]
             for n, kind in enumerate(kinds)]
    content = (eol.join([",".join(DCGM_COLUMNS), *lines]) + (eol if final_eol else "")).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sources, "_BLOCK_CHARS", block_chars)
        samples, rejects = read_all(content)

    expected_rejects = []
    for n, kind in enumerate(kinds):
        if kind == "cut":
            # A cut-off row with nothing after its line is read as far as it goes.
            followed = n < len(kinds) - 1 and (eol.join(lines[n + 1:]) or final_eol)
            reason = "unterminated quoted field (a row must be on one line)" if followed else "expected 12 columns, found 3"
            expected_rejects.append(("fuzz.csv", n + 2, reason))
        elif kind == "junk":
            expected_rejects.append(("fuzz.csv", n + 2, "expected 12 columns, found 2"))
    assert rejects == expected_rejects
    assert [s.value for s in samples] == [float(n % 10) for n, kind in enumerate(kinds) if kind == "good"]


# --- labels_raw: parsed once per shape, the labels of each row's own text ---

# Plain names, and names that would change how labels_raw parses if swapped out of it: 'a",job="b'
# ends __name__ early and adds a label, "end\\" escapes the quote after it, "k=" starts a label
# where it stands outside one.
_METRIC_NAMES = ["DCGM_FI_DEV_GPU_UTIL", "M2", "job", 'a",job="b', "end\\", "k=", "dcgm"]
_LABEL_VALUES = [*_METRIC_NAMES, "GPU-1", "", 'esc\\"aped', "h:9400"]


@st.composite
def labelled_files(draw) -> list[list[str]]:
    """DCGM rows whose labels_raw share one layout, differing in metric, GPU and container as in an exporter's file."""
    extra_label = st.tuples(st.sampled_from(["job", "instance", "k"]), st.sampled_from([*_LABEL_VALUES, "{metric}"]))
    pairs = [("__name__", "{metric}"), ("UUID", "GPU-{gpu}"), *draw(st.lists(extra_label, max_size=3))]
    layout = ",".join(f'{name}="{value}"' for name, value in draw(st.permutations(pairs)))
    layout += draw(st.sampled_from(["", ",", ',"{metric}",x="v"', ' junk="x']))
    row_keys = st.tuples(st.sampled_from(_METRIC_NAMES), st.sampled_from(["1", "2"]), st.sampled_from(["", "c"]))
    rows = []
    for metric, gpu, container in draw(st.lists(row_keys, min_size=1, max_size=12)):
        fields = {
            "timestamp": "2025-07-18T20:42:34Z", "metric_name": metric, "gpu_id": gpu, "device": f"nvidia{gpu}",
            "uuid": f"GPU-{gpu}", "modelName": "H100", "Hostname": "h", "container": container, "pod": "",
            "namespace": "", "value": "1", "labels_raw": layout.replace("{metric}", metric).replace("{gpu}", gpu),
        }
        rows.append([fields[name] for name in DCGM_COLUMNS])
    return rows


@PROPERTY_SETTINGS
@given(labelled_files())
def test_each_rows_labels_are_those_of_its_own_labels_raw(rows):
    """Rows of one GPU share a cache entry with their metric's name swapped out of labels_raw; whatever
    the names and values (the metric's name also in a kept label, quotes, "=", backslashes), each
    sample's labels are what its own text says. The rows are read twice over, the second time from the caches."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerows([DCGM_COLUMNS, *rows, *rows])

    samples, rejects = read_all(out.getvalue().encode())

    assert not rejects
    assert [s.labels.extra for s in samples] == [parse_labels(row[-1]) for row in [*rows, *rows]]
    assert [s.labels.container for s in samples] == [row[DCGM_COLUMNS.index("container")] for row in [*rows, *rows]]


_ALTERNATION_LABEL_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


@PROPERTY_SETTINGS
@given(st.text(st.sampled_from('aZ_9="\\, x\n'), max_size=40))
def test_label_pairs_are_read_as_the_plain_grammar_reads_them(raw):
    """_LABEL_PAIR is the grammar `name="(plain character | backslash escape)*"` written for speed."""
    assert sources._LABEL_PAIR.findall(raw) == _ALTERNATION_LABEL_PAIR.findall(raw)
