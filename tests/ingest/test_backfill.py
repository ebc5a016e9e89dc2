"""`manage.py backfill` in parallel: files cut into line ranges, a worker process per share."""
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError
from psycopg import errors

from bench.fleet import Fleet
from telemetry.ingest.wire import Batch
from telemetry.ingest.streamer.file_ranges import line_ranges, open_range
from telemetry.ingest.streamer.sources import read_csv
from telemetry.management.commands import backfill
from telemetry.models import Gpu, IngestCounter
from tests.conftest import REPO, SAMPLE_COUNT, SAMPLE_CSV, SAMPLE_GPUS, SAMPLE_VALUE_SUM, subprocess_env, wait_until
from tests.samples import device_id, stored_count, stored_samples, stored_sum

SUMMARY = re.compile(r"backfill (done|interrupted): (\d+) rows read, (\d+) stored, (\d+) duplicates, (\d+) rejected")


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def line_starts(data: bytes) -> list[int]:
    """Offsets at which a line starts, as the text reader splits lines (LF, CR LF, lone CR)."""
    starts = [0]
    for match in re.finditer(rb"\r\n|\n|\r", data):
        starts.append(match.end())
    return starts


def read_ranges(path: Path, parts: int) -> tuple[list, list[tuple[int, str]]]:
    """(samples, rejects as (line, reason)) of every range, in order."""
    samples, rejects = [], []
    for line_range in line_ranges(path, parts):
        with open_range(line_range) as stream:
            samples += read_csv(stream, path=str(path), on_reject=lambda _p, line, why: rejects.append((line, why)),
                                first_line=line_range.first_line)
    return samples, rejects


def read_whole(path: Path) -> tuple[list, list[tuple[int, str]]]:
    rejects = []
    with open(path, "rb") as stream:
        samples = list(read_csv(stream, path=str(path), on_reject=lambda _p, line, why: rejects.append((line, why))))
    return samples, rejects


# --- file_ranges ---


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("parts", [1, 2, 3, 5, 12])
def test_ranges_cover_the_lines_after_the_header_exactly(tmp_path, ending, bom, parts):
    lines = [b"a,b"] + [b"%d,%s" % (i, b"x" * (i % 7)) for i in range(10)]
    data = bom + ending.join(lines) + ending
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    ranges = line_ranges(path, parts)
    starts = line_starts(data)
    assert len(ranges) == parts
    assert ranges[0].start == starts[1] == len(bom) + len(b"a,b" + ending)
    assert ranges[-1].end == len(data)
    for before, after in zip(ranges, ranges[1:]):
        assert before.end == after.start
    for line_range in ranges:
        assert line_range.start in starts  # never inside a line
        assert line_range.first_line == starts.index(line_range.start) + 1
        if line_range.start < len(data) and line_range is not ranges[0] and ending != b"\r":
            assert data[line_range.start - 1:line_range.start] == b"\n"


@pytest.mark.parametrize("time_first", [True, False])
@pytest.mark.parametrize("parts", [2, 3, 7])
def test_cuts_move_on_to_where_the_time_changes(tmp_path, time_first, parts):
    # Six time steps of 40 lines: a cut inside one would split its readings between two workers.
    def row(tick: int, n: int) -> bytes:
        time = b'"2025-07-18T20:42:%02dZ"' % tick
        return b"%s,m%d,1" % (time, n) if time_first else b"m%d,%s,1" % (n, time)

    header = b"timestamp,metric_name,value" if time_first else b"metric_name,timestamp,value"
    path = tmp_path / "ticks.csv"
    path.write_bytes(b"\n".join([header, *(row(tick, n) for tick in range(6) for n in range(40))]) + b"\n")
    ranges = line_ranges(path, parts)
    firsts = [r.first_line - 2 for r in ranges if r.size]  # row index of each non-empty range's first line
    assert firsts[0] == 0 and len(firsts) > 1 and all(first % 40 == 0 for first in firsts)
    assert all(before.end == after.start for before, after in zip(ranges, ranges[1:]))
    assert ranges[-1].end == path.stat().st_size


def test_one_time_step_is_not_cut(tmp_path):
    path = tmp_path / "one-step.csv"
    path.write_bytes(b"timestamp,v\n" + b"2025-07-18T20:42:00Z,1\n" * 100)
    assert [r.size for r in line_ranges(path, 3)][1:] == [0, 0]


def test_lone_carriage_returns_leave_the_file_to_the_first_range(tmp_path):
    path = tmp_path / "old-mac.csv"
    path.write_bytes(b"a,b\r1,2\r3,4\r")
    assert [(r.start, r.end, r.first_line) for r in line_ranges(path, 3)] == [(4, 12, 2), (12, 12, 4), (12, 12, 4)]


def test_a_file_smaller_than_its_ranges_is_read_once(tmp_path):
    path = tmp_path / "small.csv"
    header, row = SAMPLE_CSV.read_bytes().split(b"\n")[:2]
    path.write_bytes(header + b"\n" + row + b"\n")
    ranges = line_ranges(path, 6)
    assert sum(r.size > 0 for r in ranges) == 1
    samples, rejects = read_ranges(path, 6)
    assert (len(samples), rejects) == (1, [])


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("crlf", [False, True])
def test_ranges_read_the_sample_as_the_whole_file_does(tmp_path, bom, crlf):
    data = SAMPLE_CSV.read_bytes()
    path = tmp_path / "sample.csv"
    path.write_bytes(bom + (data.replace(b"\n", b"\r\n") if crlf else data))
    for parts in (1, 2, 3, 7):
        samples, rejects = read_ranges(path, parts)
        assert rejects == []
        assert len(samples) == SAMPLE_COUNT
        assert sum(s.value for s in samples) == pytest.approx(SAMPLE_VALUE_SUM, abs=1e-6)


def test_rejects_name_the_files_own_lines_whatever_range_they_fall_in(tmp_path):
    lines = SAMPLE_CSV.read_bytes().splitlines(keepends=True)
    path = tmp_path / "bad.csv"
    path.write_bytes(b"".join(lines))
    ranges = line_ranges(path, 3)
    # Bad lines byte for byte as long as the good ones, so the ranges stay where they were computed.
    cut_off = {ranges[1].first_line - 1, ranges[2].first_line - 1}  # a quoted field left open at a range's end
    bad_time = {ranges[1].first_line, 1500, ranges[2].first_line}
    for number in cut_off:
        lines[number - 1] = lines[number - 1][:-2] + b" \n"
    for number in bad_time:
        lines[number - 1] = b'"oops' + lines[number - 1][5:]
    path.write_bytes(b"".join(lines))
    assert line_ranges(path, 3) == ranges
    whole_samples, whole_rejects = read_whole(path)
    assert sorted(line for line, _ in whole_rejects) == sorted(cut_off | bad_time)
    for parts in (2, 3, 4):
        samples, rejects = read_ranges(path, parts)
        assert sorted(rejects) == sorted(whole_rejects)
        assert sorted(samples) == sorted(whole_samples)


# --- the command ---

NO_BATCH = Batch([], [], [], [], [], [], [], [], [])

committed = pytest.mark.django_db(transaction=True)  # the workers write on connections of their own


@committed
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_backfill_in_workers_stores_the_sample_exactly(workers):
    out, err = run("backfill", str(SAMPLE_CSV), "--workers", str(workers), "--batch-size", "300")
    assert "backfill done: 2470 rows read, 2470 stored, 0 duplicates, 0 rejected" in out
    assert "100.0%" in err
    assert stored_count() == SAMPLE_COUNT
    assert stored_sum() == pytest.approx(SAMPLE_VALUE_SUM, abs=1e-6)
    assert Gpu.objects.count() == SAMPLE_GPUS
    assert IngestCounter.objects.get(name="samples_stored").value == SAMPLE_COUNT


MIG_CSV = REPO / "tests" / "data" / "dcgm_mig.csv"
MIG_UUID = "GPU-0a1b2c3d-1111-2222-3333-444455556666"  # split into GPU instances 1 and 2
WHOLE_UUID = "GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"


@committed
@pytest.mark.parametrize("workers", [1, 2])
def test_mig_instances_of_one_gpu_are_stored_as_devices_of_their_own(workers):
    # Once two instances' samples of one time landed on their parent GPU's row: 18 stored, 9 duplicates.
    out, _ = run("backfill", str(MIG_CSV), "--workers", str(workers))
    assert "backfill done: 27 rows read, 27 stored, 0 duplicates, 0 rejected" in out
    devices = Gpu.objects.order_by("uuid", "mig_instance").values_list(
        "uuid", "mig_instance", "mig_profile", "hostname", "index", "device", "sample_count")
    assert list(devices) == [
        (MIG_UUID, 1, "3g.40gb", "dgx-mig-01", 0, "nvidia0", 9),
        (MIG_UUID, 2, "3g.40gb", "dgx-mig-01", 0, "nvidia0", 9),
        (WHOLE_UUID, None, "", "dgx-mig-01", 1, "nvidia1", 9),
    ]
    used = {(device, value) for device, metric, _, value in stored_samples() if metric == "DCGM_FI_DEV_FB_USED"}
    assert used == {(device_id(MIG_UUID, 1), 1024), (device_id(MIG_UUID, 2), 1025), (device_id(WHOLE_UUID), 1026),
                    (device_id(MIG_UUID, 1), 2048), (device_id(MIG_UUID, 2), 2049), (device_id(WHOLE_UUID), 2050),
                    (device_id(MIG_UUID, 1), 4096), (device_id(MIG_UUID, 2), 4097), (device_id(WHOLE_UUID), 4098)}

    out, _ = run("backfill", str(MIG_CSV), "--workers", str(workers))
    assert "backfill done: 27 rows read, 0 stored, 27 duplicates, 0 rejected" in out
    assert Gpu.objects.count() == 3
    assert stored_count() == 27


@committed
def test_rejects_in_the_second_workers_range_keep_their_line_numbers(tmp_path, caplog):
    lines = SAMPLE_CSV.read_text().splitlines(keepends=True)
    second = line_ranges(SAMPLE_CSV, 2)[1].first_line
    bad_lines = [second, second + 1, 2000, len(lines)]
    for number in bad_lines:
        lines[number - 1] = lines[number - 1].split(",")[0] + "\n"  # one column
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines))
    assert line_ranges(bad, 2)[1].first_line == second  # the bad lines open the second worker's range
    out, _ = run("backfill", str(bad), "--workers", "2")
    assert "backfill done: 2470 rows read, 2466 stored, 0 duplicates, 4 rejected" in out
    rejected = sorted(r.line for r in caplog.records if r.getMessage().startswith("rejected row"))
    assert rejected == bad_lines
    assert IngestCounter.objects.get(name="rows_rejected").value == 4


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_fewer_than_one_worker_is_refused_by_name(workers):
    with pytest.raises(CommandError, match="--workers must be at least 1"):
        call_command("backfill", str(SAMPLE_CSV), "--workers", workers)


@committed
def test_a_worker_that_fails_fails_the_backfill_by_name(monkeypatch):
    def refuse(**_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(backfill, "samples_persist", refuse)  # the workers are forked with it
    with pytest.raises(CommandError, match=r"backfill worker \d of 2 failed: RuntimeError: disk full"):
        run("backfill", str(SAMPLE_CSV), "--workers", "2")


@committed
def test_a_worker_that_dies_fails_the_backfill_without_hanging(monkeypatch):
    monkeypatch.setattr(backfill, "samples_persist", lambda **_kwargs: os.kill(os.getpid(), signal.SIGKILL))
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"backfill worker \d of 2 was killed by SIGKILL before reporting"):
        run("backfill", str(SAMPLE_CSV), "--workers", "2")
    assert time.monotonic() - started < 30


@committed
def test_sigterm_stores_every_row_read_and_a_second_backfill_the_rest(tmp_path):
    fleet = Fleet(hosts=50)
    csv = tmp_path / "fleet.csv"
    # Several of the reader's blocks per worker, so that the signal lands before the last (with
    # two blocks each, a fast machine had read them all by the first stored batch).
    count, total = fleet.write_dcgm_csv(csv, ticks=120)
    command = [sys.executable, str(REPO / "manage.py"), "backfill", str(csv), "--workers", "2",
               "--batch-size", "2000", "--reorder-window", "8000", "--max-per-gpu", "0"]
    backfill = subprocess.Popen(command, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: stored_count() > 0, timeout=60, interval=0.02)
        backfill.send_signal(signal.SIGTERM)
        out, err = backfill.communicate(timeout=120)
    finally:
        backfill.kill()
    assert backfill.returncode == 0, err
    head, rows, stored, duplicates, rejected = SUMMARY.search(out).groups()
    assert head == "interrupted", out
    assert int(rows) < count
    assert (int(stored), int(duplicates), int(rejected)) == (int(rows), 0, 0)
    assert stored_count() == int(stored)

    out, _ = run("backfill", str(csv), "--max-per-gpu", "0")
    assert f"backfill done: {count} rows read, {count - int(stored)} stored, {stored} duplicates, 0 rejected" in out
    assert stored_count() == count
    assert stored_sum() == total


@pytest.mark.django_db(transaction=True)
def test_backfill_via_the_queue_parses_in_one_process(worker_process):
    worker_process()
    out, _ = run("backfill", str(SAMPLE_CSV), "--via-queue")
    assert "backfill done: 2470 rows read, 2470 samples queued, 0 rejected" in out
    assert wait_until(lambda: stored_count() == SAMPLE_COUNT, timeout=60)
    assert stored_sum() == pytest.approx(SAMPLE_VALUE_SUM, abs=1e-6)


def test_a_batch_rolled_back_to_break_a_deadlock_is_stored_again(monkeypatch):
    attempts = []

    def deadlock_once(**kwargs):
        attempts.append(kwargs)
        if len(attempts) == 1:
            try:
                raise errors.DeadlockDetected("deadlock detected")
            except errors.DeadlockDetected as cause:
                raise OperationalError("deadlock detected") from cause
        return "stored"

    monkeypatch.setattr(backfill, "samples_persist", deadlock_once)
    assert backfill._persist_retrying_lock_races(NO_BATCH, 0, worker="w") == "stored"
    assert len(attempts) == 2


def test_other_database_errors_are_not_retried(monkeypatch):
    def refuse(**_kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(backfill, "samples_persist", refuse)
    with pytest.raises(OperationalError, match="connection refused"):
        backfill._persist_retrying_lock_races(NO_BATCH, 0, worker="w")
