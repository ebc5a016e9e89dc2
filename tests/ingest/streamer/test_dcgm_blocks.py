"""DCGM ranges read by pyarrow a block at a time (telemetry/ingest/streamer/dcgm_blocks.py).

Whatever a file holds, the block reader gives the readings, samples and rejects (line numbers and
reasons) that the Python reader gives for the same range; clean blocks take pyarrow's path, and a
block with a row the Python reader would reject is read by that reader.
"""
import csv

import numpy as np

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from telemetry.ingest.streamer import dcgm_blocks
from telemetry.ingest.streamer.batching import HeldReadings
from telemetry.ingest.streamer.dcgm_blocks import DcgmBlockReader, dcgm_header
from telemetry.ingest.streamer.file_ranges import line_ranges, open_range
from telemetry.ingest.streamer.sources import DCGM_COLUMNS, read_csv
from tests.conftest import REPO, SAMPLE_COUNT, SAMPLE_CSV

MIG_CSV = REPO / "tests" / "data" / "dcgm_mig.csv"
BIG_WINDOW = 1 << 30  # every reading whole, in both readers


def _line(n: int, *, metric: str = "DCGM_FI_DEV_GPU_UTIL", value: str | None = None, gpu: int | None = None,
          second: int = 0) -> str:
    gpu = n % 3 if gpu is None else gpu
    value = str(n) if value is None else value
    return (f'"2025-07-18T20:42:{second:02d}Z","{metric}","{gpu}","nvidia{gpu}","GPU-{gpu}","NVIDIA H100 80GB HBM3",'
            f'"host-1","","","","{value}","job=""dcgm"",__name__=""{metric}"""')


def read_blocks(path, parts: int, *, batch_size: int = 50, window: int = BIG_WINDOW):
    """(batches of each range, rejects, readers), each range read as a backfill worker reads its share."""
    rejects = []
    batches = []
    readers = []
    for line_range in line_ranges(path, parts):
        reader = DcgmBlockReader(batch_size=batch_size, reorder_window=window,
                                 on_reject=lambda p, line, why: rejects.append((line, why)))
        header = dcgm_header(line_range)
        assert header is not None
        batches.append([batch.batch() for batch in [*reader.batches(line_range, header), *reader.drain()]])
        readers.append(reader)
    return batches, rejects, readers


def read_python(path, parts: int, *, batch_size: int = 50, window: int = BIG_WINDOW):
    """(batches of each range, rejects) of the same ranges through the Python reader and HeldReadings."""
    rejects = []
    batches = []
    for line_range in line_ranges(path, parts):
        held = HeldReadings(batch_size, window, flush_interval=None)
        with open_range(line_range) as stream:
            samples = read_csv(stream, path=str(path), on_reject=lambda p, line, why: rejects.append((line, why)),
                               first_line=line_range.first_line)
            batches.append([batch for burst in held.feed(samples) for batch in burst])
        batches[-1] += held.drain()
    return batches, rejects


def readings(ranges) -> list[dict]:
    """Per range, (device key, time) → (device, labels, [(metric, value), …] in order)."""
    return [_readings(batches) for batches in ranges]


def _readings(batches) -> dict:
    found = {}
    for batch in batches:
        for g, ts, label, metrics, values in batch.readings():
            gpu = batch.gpus[g]
            key = (gpu.key, ts)
            assert key not in found, "a reading split between batches"
            found[key] = (gpu, batch.labels[label], [(batch.metrics[m], v) for m, v in zip(metrics, values)])
    return found


def samples(ranges) -> list:
    return sorted((batch.gpus[g].key, ts, batch.metrics[m], v) for batches in ranges
                  for batch in batches for g, ts, _, metrics, values in batch.readings() for m, v in zip(metrics, values))


@pytest.fixture
def small_blocks(monkeypatch):
    def set_size(size: int) -> None:
        monkeypatch.setattr(dcgm_blocks, "BLOCK_BYTES", size)
    return set_size


@pytest.mark.parametrize("path", [SAMPLE_CSV, MIG_CSV], ids=["sample", "mig"])
@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("block", [300, 4096, 1 << 24])
def test_blocks_give_the_readings_the_python_reader_gives(path, parts, block, small_blocks):
    small_blocks(block)
    batches, rejects, readers = read_blocks(path, parts)
    expected, expected_rejects = read_python(path, parts)
    assert readings(batches) == readings(expected)
    assert rejects == expected_rejects == []
    assert sum(r.blocks_careful for r in readers) == 0 and sum(r.blocks_fast for r in readers) > 0


@pytest.mark.parametrize("strain", ["every hash the same", "texts forgotten after three"])
def test_combinations_found_again_are_exact_when_hashes_collide_or_tables_are_forgotten(small_blocks, monkeypatch,
                                                                                        strain):
    small_blocks(4096)
    if strain == "every hash the same":
        monkeypatch.setattr(dcgm_blocks._Combinations, "_MIX", np.zeros(12, np.uint64))
    else:
        monkeypatch.setattr(dcgm_blocks._Combinations, "LIMIT", 3)
    batches, rejects, readers = read_blocks(SAMPLE_CSV, 2)
    assert readings(batches) == readings(read_python(SAMPLE_CSV, 2)[0])
    assert rejects == []
    if strain == "every hash the same":  # a block whose combinations share a hash goes to the Python reader
        assert sum(r.blocks_careful for r in readers) > 0


def test_the_sample_is_every_row_once(small_blocks):
    small_blocks(8192)
    batches, rejects, _ = read_blocks(SAMPLE_CSV, 2, window=0)
    assert len(samples(batches)) == SAMPLE_COUNT and rejects == []


def test_batches_are_whole_readings_of_at_least_the_batch_size_oldest_first(tmp_path, small_blocks):
    small_blocks(2000)
    path = tmp_path / "ticks.csv"
    # 30 time steps, each listed metric by metric as DCGM does: a GPU's reading is spread over the step.
    lines = [_line(n, gpu=gpu, metric=f"M{m}", second=step)
             for step in range(30) for m in range(4) for n, gpu in enumerate(range(3))]
    path.write_text(",".join(DCGM_COLUMNS) + "\n" + "\n".join(lines) + "\n")
    (batches,), _, _ = read_blocks(path, 1, batch_size=10, window=12)  # a step's 12 samples held for the rest of it
    assert all(len(batch) >= 10 for batch in batches[:-1])
    assert all(size == 4 for batch in batches for size in batch.size)  # whole readings
    times = [ts for batch in batches for ts in batch.ts]
    assert times == sorted(times)


def test_readings_not_handed_on_when_the_caller_stops_are_drained(small_blocks):
    small_blocks(1 << 24)  # the sample in one block: many batches due at once
    line_range = line_ranges(SAMPLE_CSV, 1)[0]
    reader = DcgmBlockReader(batch_size=100, reorder_window=0, on_reject=lambda *_: None)
    batches = reader.batches(line_range, dcgm_header(line_range))
    first = next(batches).batch()
    batches.close()  # as a backfill told to stop does after a batch
    rest = [batch.batch() for batch in reader.drain()]
    assert len(first) + sum(map(len, rest)) == SAMPLE_COUNT
    assert samples([[first, *rest]]) == samples(read_python(SAMPLE_CSV, 1)[0])


# --- Bad rows: read by the Python reader, block by block ---

HEADER = ",".join(DCGM_COLUMNS)
GOOD = [_line(n) for n in range(40)]
BAD = {
    "columns": "x,y",
    "bad number": _line(0, value="abc"),
    "nan": _line(0, value="nan"),
    "infinite": _line(0, value="1e400"),
    "empty value": _line(0, value=""),
    "spaces around the value": _line(0, value=" 7 "),
    "bad time": _line(0).replace("2025-07-18T20:42:00Z", "yesterday"),
    "no uuid": _line(0).replace('"GPU-0"', '"  "'),
    "bad gpu index": _line(0).replace('"0","nvidia0"', '"x","nvidia0"'),
    "cut off": _line(0)[:40],
    "two lines": _line(0).replace('"host-1"', '"host\n1"'),
    "nul": _line(0).replace("host-1", "host\0-1"),
    "not utf-8": _line(0).replace("host-1", "host-\udcff"),
    "long metric": _line(0, metric="M" * 200),
    "bad mig id": _line(0).replace('job=""dcgm""', 'GPU_I_ID=""x"",job=""dcgm""'),
    "empty line": "",
    "stray quote": _line(0).replace('"host-1"', 'ho"st-1'),
}


def _write(path, lines, *, eol="\n", bom=False) -> None:
    text = eol.join([HEADER, *lines]) + eol
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", errors="surrogateescape"))


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_a_bad_row_is_rejected_on_its_line_as_the_python_reader_rejects_it(tmp_path, small_blocks, kind, eol):
    small_blocks(1500)  # about eight lines a block
    lines = list(GOOD)
    for at in (0, 7, 8, 23, 39):
        lines[at] = BAD[kind]
    path = tmp_path / "bad.csv"
    _write(path, lines, eol=eol, bom=kind == "nul")
    for parts in (1, 2):
        batches, rejects, readers = read_blocks(path, parts)
        expected, expected_rejects = read_python(path, parts)
        assert rejects == expected_rejects
        assert readings(batches) == readings(expected)
        if eol != "\r":  # a file of lone carriage returns is cut into blocks where a CR ends a line
            assert sum(r.blocks_fast for r in readers) > 0


# --- Any mix of lines ---

_GOOD_LINES = st.builds(lambda n, second, metric: _line(n, second=second, metric=metric),
                       st.integers(0, 50), st.integers(0, 3), st.sampled_from(["DCGM_FI_DEV_GPU_UTIL", "M1", "M2"]))
_LINES = st.one_of(_GOOD_LINES, st.sampled_from(sorted(BAD.values())))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINES, min_size=1, max_size=60), eol=st.sampled_from(["\n", "\r\n", "\r"]),
       final_eol=st.booleans(), block=st.sampled_from([1, 200, 1000, 1 << 20]), parts=st.integers(1, 3),
       window=st.sampled_from([0, 5, BIG_WINDOW]))
def test_any_mix_of_lines_reads_as_the_python_reader_reads_it(tmp_path_factory, lines, eol, final_eol, block, parts,
                                                               window):
    path = tmp_path_factory.mktemp("mix") / "mix.csv"
    text = eol.join([HEADER, *lines]) + (eol if final_eol else "")
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dcgm_blocks, "BLOCK_BYTES", block)
        batches, rejects, _ = read_blocks(path, parts, batch_size=7, window=window)
    expected, expected_rejects = read_python(path, parts, batch_size=7, window=window)
    assert rejects == expected_rejects
    assert samples(batches) == samples(expected)
    if window == BIG_WINDOW:
        assert readings(batches) == readings(expected)


def test_a_combination_of_identity_fields_is_checked_as_a_row_of_its_own():
    names = [name for name in DCGM_COLUMNS if name not in ("timestamp", "value")]
    row = dcgm_blocks._dcgm_row(tuple(names))
    assert row == [name if name in names else "" for name in DCGM_COLUMNS]


def test_only_a_header_with_every_dcgm_column_is_read_in_blocks(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("gpu_id,util\n0,1\n")
    assert dcgm_header(line_ranges(path, 1)[0]) is None
    assert dcgm_header(line_ranges(SAMPLE_CSV, 1)[0]) == next(csv.reader([SAMPLE_CSV.read_text().splitlines()[0]]))


def test_a_reading_keeps_its_samples_in_file_order_for_storage_to_keep_the_first(tmp_path):
    path = tmp_path / "twice.csv"
    _write(path, [_line(1, gpu=0, value="1"), _line(2, gpu=0, metric="M2", value="2"), _line(3, gpu=0, value="3")])
    ((reading,),) = [found.values() for found in readings(read_blocks(path, 1)[0])]
    assert reading[2] == [("DCGM_FI_DEV_GPU_UTIL", 1.0), ("M2", 2.0), ("DCGM_FI_DEV_GPU_UTIL", 3.0)]
    assert readings(read_python(path, 1)[0]) == readings(read_blocks(path, 1)[0])
