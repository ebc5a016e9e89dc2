"""CSV sources: format detection, the DCGM and wide formats, malformed rows with line numbers."""
import csv
import io
from datetime import datetime, timezone

import pytest

from telemetry.ingest.streamer import sources
from telemetry.ingest.streamer.sources import SourceFormatError, parse_labels, read_csv, read_path
from tests.conftest import SAMPLE_COUNT, SAMPLE_GPUS, SAMPLE_VALUE_SUM

HEADER = "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw\n"
ROW = '"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","{gpu}","nvidia{gpu}","GPU-{gpu}","H100","host-1","","","","{value}","job=""dcgm"""\n'


def collect(text: str | bytes, **kwargs):
    rejects = []
    data = text.encode() if isinstance(text, str) else text
    samples = list(read_csv(io.BytesIO(data), path="t.csv", on_reject=lambda p, line, r: rejects.append((line, r)), **kwargs))
    return samples, rejects


def test_dcgm_sample_file_reads_every_row():
    rejects = []
    samples = list(read_path(__import__("tests.conftest").conftest.SAMPLE_CSV, on_reject=lambda *a: rejects.append(a)))
    assert len(samples) == SAMPLE_COUNT and not rejects
    assert len({s.gpu.uuid for s in samples}) == SAMPLE_GPUS
    assert sum(s.value for s in samples) == pytest.approx(SAMPLE_VALUE_SUM)
    first = samples[0]
    assert first.gpu.uuid == "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
    assert (first.gpu.hostname, first.gpu.index, first.gpu.device) == ("mtv5-dgx1-hgpu-031", 0, "nvidia0")
    assert first.metric == "DCGM_FI_DEV_GPU_UTIL"
    assert first.timestamp_us == int(datetime(2025, 7, 18, 20, 42, 34, tzinfo=timezone.utc).timestamp()) * 1_000_000
    assert dict(first.labels.extra) == {
        "DCGM_FI_DRIVER_VERSION": "535.129.03", "instance": "mtv5-dgx1-hgpu-031:9400", "job": "dgx_dcgm_exporter",
    }


def test_labels_already_in_columns_are_dropped():
    assert parse_labels('UUID="GPU-1",Hostname="h",job="dcgm",__name__="X"') == (("job", "dcgm"),)


def test_wrong_header_names_the_missing_columns():
    with pytest.raises(SourceFormatError, match="metric_name, gpu_id.*labels_raw"):
        collect("timestamp,uuid,value\n1,2,3\n")


def test_header_that_fits_no_format_says_so():
    with pytest.raises(SourceFormatError, match="wide CSV needs a gpu_id column"):
        collect("a,b,c\n1,2,3\n")


def test_three_malformed_rows_are_reported_and_the_good_rows_kept():
    text = (
        HEADER
        + ROW.format(gpu=0, value=1)
        + ROW.format(gpu=1, value="not-a-number")  # line 3
        + ROW.format(gpu=2, value=3)
        + ROW.format(gpu=3, value=4).replace('"GPU-3"', '""')  # line 5: no UUID
        + '"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","4"\n'  # line 6: wrong column count
        + ROW.format(gpu=5, value=6)
    )
    samples, rejects = collect(text)
    assert [s.value for s in samples] == [1.0, 3.0, 6.0]
    assert rejects == [(3, "bad number 'not-a-number'"), (5, "no GPU UUID"), (6, "expected 12 columns, found 3")]


def test_fields_longer_than_their_columns_reject_their_row_alone():
    """The database would refuse the whole batch such a field travels in, with the good rows next to it."""
    text = (
        HEADER
        + ROW.format(gpu=0, value=1)
        + ROW.format(gpu=1, value=2).replace('"GPU-1"', '"GPU-' + "x" * 70 + '"')  # line 3
        + ROW.format(gpu=2, value=3).replace('"nvidia2"', '"' + "d" * 40 + '"')  # line 4
        + ROW.format(gpu=3, value=4).replace('"DCGM_FI_DEV_GPU_UTIL"', '"' + "M" * 200 + '"')  # line 5
        + ROW.format(gpu=4, value=5)
    )
    samples, rejects = collect(text)
    assert [s.value for s in samples] == [1.0, 5.0]
    assert rejects == [(3, "UUID longer than 64 characters"), (4, "device longer than 32 characters"),
                       (5, "metric name longer than 128 characters")]
    samples, rejects = collect("uuid,gpu_id,modelName,util\nGPU-A,0,H100,5\nGPU-B,1," + "m" * 200 + ",6\n")
    assert [(s.gpu.uuid, s.value) for s in samples] == [("GPU-A", 5.0)]
    assert rejects == [(3, "model name longer than 128 characters")]
    with pytest.raises(SourceFormatError, match="longer than 128 characters"):
        collect("gpu_id," + "u" * 130 + "\n0,1\n")


def test_reordered_and_extra_columns_bom_and_crlf():
    text = "\ufeffuuid,extra," + HEADER.replace("uuid,", "").replace("\n", "\r\n")
    row = '"GPU-9","x","2025-07-18T20:42:34Z","M","9","nvidia9","H100","h","","","","2.5",""\r\n'
    samples, rejects = collect(text + row)
    assert not rejects
    assert [(s.gpu.uuid, s.gpu.index, s.metric, s.value) for s in samples] == [("GPU-9", 9, "M", 2.5)]


def test_non_utf8_row_is_rejected_alone():
    data = (HEADER + ROW.format(gpu=0, value=1)).encode() + b'"\xff\xfe",' + ROW.format(gpu=1, value=2).split(",", 1)[1].encode()
    data += ROW.format(gpu=2, value=3).encode()
    samples, rejects = collect(data)
    assert [s.value for s in samples] == [1.0, 3.0]
    assert rejects == [(3, "not valid UTF-8")]


def test_wide_csv_gives_one_sample_per_metric_column():
    samples, rejects = collect("gpu_id,utilization,temperature,memory_used\ngpu-001,85.5,72.3,4096\ngpu-002,10,,1\n", local_hostname="node-a")
    assert not rejects
    assert [(s.gpu.uuid, s.gpu.hostname, s.gpu.index, s.metric, s.value) for s in samples] == [
        ("node-a:gpu-001", "node-a", 1, "utilization", 85.5),
        ("node-a:gpu-001", "node-a", 1, "temperature", 72.3),
        ("node-a:gpu-001", "node-a", 1, "memory_used", 4096.0),
        ("node-a:gpu-002", "node-a", 2, "utilization", 10.0),
        ("node-a:gpu-002", "node-a", 2, "memory_used", 1.0),
    ]
    # One pass is one snapshot: every row shares the pass's time.
    assert len({s.timestamp_us for s in samples}) == 1


def test_wide_csv_with_its_own_columns_and_a_bad_row():
    samples, rejects = collect(
        "timestamp,hostname,uuid,gpu_id,util\n"
        "2025-07-18T20:42:34Z,h1,GPU-A,0,5\n"
        "2025-07-18T20:42:35,h1,GPU-A,0,x\n"
    )
    assert [(s.gpu.uuid, s.gpu.hostname, s.value) for s in samples] == [("GPU-A", "h1", 5.0)]
    assert rejects == [(3, "bad number 'x'")]


def test_labels_parsed_once_per_shape_keep_each_rows_own_values():
    rows = "".join(
        f'"2025-07-18T20:42:34Z","M{n}","{n}","nvidia{n}","GPU-{n}","H100","host-{n}","","","","1",'
        f'"UUID=""GPU-{n}"",copy=""GPU-{n}"",instance=""host-{n}:9400"",gpu=""{n}"",idx=""{n}"",job=""dcgm"""\n'
        for n in range(3)
    )
    samples, rejects = collect(HEADER + rows)
    assert not rejects
    assert [dict(s.labels.extra) for s in samples] == [
        {"copy": f"GPU-{n}", "instance": f"host-{n}:9400", "idx": str(n), "job": "dcgm"} for n in range(3)
    ]


@pytest.mark.parametrize("block_chars", [1, 700, 1 << 18])
@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_lines_the_fast_path_hands_over_keep_their_numbers(monkeypatch, block_chars, eol):
    """Rows are parsed a window of lines at a time; a window with a line the fast path cannot take
    (a quoted field left open, a field csv.reader refuses) is read line by line instead, and the
    windows after it are fast again. Small blocks put those lines at window edges; the file must read
    as if line by line."""
    monkeypatch.setattr(sources, "_BLOCK_CHARS", block_chars)
    good = [ROW.format(gpu=n, value=n).rstrip("\n") for n in range(40)]
    lines = [
        HEADER.rstrip("\n"),
        *good[:10],                                              # lines 2-11
        '"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","9","nv',  # line 12: cut off inside a quoted field
        *good[10:20],                                            # lines 13-22
        "",                                                      # line 23: empty
        *good[20:25],                                            # lines 24-28
        good[25].replace('"H100"', '"H100 \udcff"'),             # line 29: a byte that is not UTF-8
        good[26].replace('"H100"', '"H100 é"'),                  # line 30: UTF-8 that is not ASCII, kept
        *good[27:30],                                            # lines 31-33
        good[30].replace('"host-1"', '"' + "h" * csv.field_size_limit() + 'x"'),  # line 34: too long a field
        *good[31:40],                                            # lines 35-43
        '"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","7',      # line 44: the last, cut off, no line end
    ]
    samples, rejects = collect(eol.join(lines).encode("utf-8", "surrogateescape"))
    assert [s.value for s in samples] == [n for n in range(40) if n not in (25, 30)]
    assert samples[25].gpu.model_name == "H100 é"
    assert rejects == [
        (12, "unterminated quoted field (a row must be on one line)"),
        (29, "not valid UTF-8"),
        (34, f"unreadable CSV: field larger than field limit ({csv.field_size_limit()})"),
        (44, "expected 12 columns, found 3"),
    ]


MIG_CSV = __import__("tests.conftest").conftest.REPO / "tests" / "data" / "dcgm_mig.csv"


def test_mig_instances_are_devices_of_their_own():
    rejects = []
    samples = list(read_path(MIG_CSV, on_reject=lambda *a: rejects.append(a)))
    assert len(samples) == 27 and not rejects
    devices = {s.gpu.key: s.gpu for s in samples}
    parent = "GPU-0a1b2c3d-1111-2222-3333-444455556666"
    assert sorted(devices, key=str) == sorted(
        [(parent, 1), (parent, 2), ("GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff", None)], key=str)
    assert devices[(parent, 1)].mig_profile == "3g.40gb"
    # The instance's id and profile are the device's, not labels; the rest stay labels.
    instance_labels = {s.labels for s in samples if s.gpu.mig_instance == 1}
    assert [(lab.pod, dict(lab.extra)) for lab in instance_labels] == [("trainer-1", {"DCGM_FI_DRIVER_VERSION": "550.54.15"})]
    assert len({(s.gpu.key, s.metric, s.timestamp_us) for s in samples}) == 27


def test_a_bad_mig_instance_id_rejects_its_row_alone():
    good = ROW.format(gpu=0, value=1)
    bad = good.replace('job=""dcgm""', 'GPU_I_ID=""x"",job=""dcgm""').replace("GPU-0", "GPU-9")
    samples, rejects = collect(HEADER + bad + good)
    assert rejects == [(2, "bad GPU_I_ID 'x'")]
    assert [s.gpu.uuid for s in samples] == ["GPU-0"]
