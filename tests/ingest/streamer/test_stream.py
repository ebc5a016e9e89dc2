"""The streamer end to end: CSV → RabbitMQ → a real collector worker → PostgreSQL."""
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timezone

import pytest
from django.core.management import CommandError, call_command

from telemetry.ingest.streamer import stream as streamer
from telemetry.ingest.streamer.file_ranges import line_ranges
from telemetry.ingest.streamer.sources import read_path
from telemetry.ingest.streamer.stream import StreamConfig, Streamer, in_share, parse_shard, restamp_now
from telemetry.ingest.wire import GpuInfo, Sample as SourceSample
from telemetry.ingest.streamer.batching import HeldReadings
from telemetry.models import Gpu, IngestCounter
from tests.ingest.factories import PublisherStandIn
from tests.samples import stored_count, stored_samples, stored_sum
from tests.conftest import (
    REPO, SAMPLE_COUNT, SAMPLE_CSV, SAMPLE_GPUS, SAMPLE_HOSTS, SAMPLE_VALUE_SUM, manage, subprocess_env, wait_until,
)


def stored_set() -> set[tuple]:
    return {
        (uuid, metric, int(ts.astimezone(timezone.utc).timestamp() * 1_000_000), value)
        for uuid, metric, ts, value in stored_samples()
    }


def source_set() -> set[tuple]:
    return {(s.gpu.uuid, s.metric, s.timestamp_us, s.value) for s in read_path(SAMPLE_CSV, on_reject=lambda *a: None)}


def counter(name: str) -> int:
    row = IngestCounter.objects.filter(name=name).first()
    return row.value if row else 0


@pytest.mark.django_db(transaction=True)
def test_sample_csv_lands_exactly_once_and_a_replay_stores_nothing(worker_process):
    worker_process()
    run = manage("stream", str(SAMPLE_CSV), "--timestamps", "source", "--batch-size", "500")
    assert run.returncode == 0, run.stderr
    assert "streamed 2470 samples in 5 batches" in run.stdout
    assert wait_until(lambda: stored_count() >= SAMPLE_COUNT)
    assert stored_count() == SAMPLE_COUNT
    assert stored_set() == source_set()
    assert Gpu.objects.count() == SAMPLE_GPUS
    assert Gpu.objects.values("hostname").distinct().count() == SAMPLE_HOSTS
    assert stored_sum() == pytest.approx(SAMPLE_VALUE_SUM, abs=1e-6)

    again = manage("stream", str(SAMPLE_CSV), "--timestamps", "source", "--batch-size", "1000")
    assert again.returncode == 0, again.stderr
    assert wait_until(lambda: counter("samples_duplicate") == SAMPLE_COUNT)
    assert stored_count() == SAMPLE_COUNT


@pytest.mark.django_db(transaction=True)
def test_sharded_streamers_and_workers_never_emit_the_same_row(worker_process):
    worker_process()
    runs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "stream", str(SAMPLE_CSV), "--timestamps", "source",
             "--shard", f"{i}/3", "--workers", str(i + 1), "--batch-size", "100"],
            cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(3)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    assert wait_until(lambda: counter("samples_stored") >= SAMPLE_COUNT)
    assert stored_set() == source_set()
    assert counter("samples_duplicate") == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_flushes_what_it_holds_and_exits_zero(worker_process, workers):
    worker_process()
    run = subprocess.Popen(
        [sys.executable, "manage.py", "stream", str(SAMPLE_CSV), "--loop", "--rate", "400",
         "--batch-size", "100000", "--flush-interval", "60", "--workers", workers],
        cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(4)
    assert stored_count() == 0  # everything is still held in the workers' batches
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    streamed = int(stdout.split("streamed ")[1].split()[0])
    assert streamed > 500 * int(workers)  # --rate is per worker
    assert wait_until(lambda: stored_count() == streamed)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_wrong_header_exits_non_zero_naming_the_missing_columns(tmp_path, workers):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,uuid,value\n2025-07-18T20:42:34Z,GPU-1,1\n2025-07-18T20:42:35Z,GPU-1,1\n")
    run = manage("stream", str(bad), "--workers", workers)
    assert run.returncode == 1
    assert run.stderr.count("needs the columns metric_name, gpu_id, device, modelName, Hostname") == 1
    assert "Traceback" not in run.stderr


def test_nvml_without_a_driver_is_a_one_line_error():
    run = manage("stream", "nvml")
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0 and "NVML" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("2/4", (2, 4))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "x", "1/0", "-1/2"])
def test_parse_shard_rejects_bad_input(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_shards_partition_the_gpus():
    uuids = [f"GPU-{n}" for n in range(1000)]
    owners = [[i for i in range(3) if in_share(u, (i, 3))] for u in uuids]
    assert all(len(o) == 1 for o in owners)


def test_now_timestamps_keep_a_tick_together():
    gpu = GpuInfo("GPU-1", "h", 0, "", "")
    source = [SourceSample(gpu, m, t, 1.0, None) for t in (5, 5, 6) for m in ("a",)]
    restamped = list(restamp_now(iter(source)))
    assert restamped[0].timestamp_us == restamped[1].timestamp_us < restamped[2].timestamp_us


def test_held_readings_leave_whole_when_a_time_step_is_listed_metric_by_metric():
    gpus = [GpuInfo(f"GPU-{n}", "h", n, "", "") for n in range(50)]
    held = HeldReadings(batch_size=100, reorder_window=600, flush_interval=None)
    source = (SourceSample(gpu, f"m{metric}", t, 1.0, None) for t in range(3) for metric in range(10) for gpu in gpus)
    fed = [batch for burst in held.feed(source) for batch in burst]
    assert len(fed) == 9  # (1,500 samples - a window of 600) / 100: sent while the source runs
    batches = [*fed, *held.drain()]
    assert sum(len(b) for b in batches) == 1500
    assert {size for b in batches for size in b.size} == {10}  # every reading whole


def test_a_replays_small_batches_are_published_in_bursts(monkeypatch):
    monkeypatch.setattr(streamer, "BURST_SAMPLES", 1000)
    bursts: list[list[int]] = []  # the samples of each batch published, burst by burst
    outside: list[int] = []

    class BurstRecorder(PublisherStandIn):
        def __init__(self) -> None:
            self.open = False

        def publish(self, payload: bytes, *, samples: int) -> None:
            (bursts[-1] if self.open else outside).append(samples)

        @contextmanager
        def burst(self) -> Iterator[None]:
            bursts.append([])
            self.open = True
            yield
            self.open = False

    config = StreamConfig(str(SAMPLE_CSV), batch_size=100, reorder_window=0)
    stats = Streamer(config, publisher_factory=BurstRecorder, stop=threading.Event(), abort=threading.Event()).run()
    assert outside == [] and sum(map(sum, bursts)) == stats.samples == SAMPLE_COUNT
    # Full batches leave about 1,000 samples at a time (whole readings), the rest at the end.
    assert len(bursts) >= 3 and all(len(burst) >= 9 and sum(burst) >= 900 for burst in bursts[:-1])


def test_a_paced_stream_sends_what_it_holds_every_flush_interval():
    published: list[tuple[float, int]] = []

    class Recorder(PublisherStandIn):
        def publish(self, payload: bytes, *, samples: int) -> None:
            published.append((time.monotonic(), samples))

    stop = threading.Event()
    config = StreamConfig(str(SAMPLE_CSV), rate=500, batch_size=100_000, flush_interval=0.2, loop=True)
    streamer = Streamer(config, publisher_factory=Recorder, stop=stop, abort=threading.Event())
    threading.Timer(1.5, stop.set).start()
    began = time.monotonic()
    stats = streamer.run()
    # Batches far from full went out while the source was paced, not only at the stop.
    assert len([t for t, _ in published if t - began < 1.4]) >= 3
    assert sum(samples for _, samples in published) == stats.samples > 500


# --- worker processes ---


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("workers", ["2", "3"])
def test_worker_processes_store_the_sample_exactly_once(worker_process, workers):
    worker_process()
    run = manage("stream", str(SAMPLE_CSV), "--timestamps", "source", "--batch-size", "300", "--workers", workers)
    assert run.returncode == 0, run.stderr
    assert "streamed 2470 samples in " in run.stdout and ", 0 rows rejected" in run.stdout
    assert run.stdout.count("\n") == 1  # the summary is stdout's one line
    assert wait_until(lambda: counter("samples_stored") >= SAMPLE_COUNT)
    assert stored_count() == SAMPLE_COUNT
    assert stored_sum() == pytest.approx(SAMPLE_VALUE_SUM, abs=1e-6)
    assert stored_set() == source_set()
    assert counter("samples_duplicate") == 0


@pytest.mark.django_db(transaction=True)
def test_rejects_in_the_second_workers_range_keep_their_line_numbers_and_count_once(worker_process, tmp_path):
    worker_process()
    lines = SAMPLE_CSV.read_text().splitlines(keepends=True)
    second = line_ranges(SAMPLE_CSV, 2)[1].first_line
    bad_lines = [second, second + 1, 2000, len(lines)]  # the last one after the second worker's last sample
    for number in bad_lines:
        lines[number - 1] = lines[number - 1].split(",")[0] + "\n"  # one column
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines))
    assert line_ranges(bad, 2)[1].first_line == second  # the bad lines open the second worker's range
    run = manage("stream", str(bad), "--timestamps", "source", "--workers", "2")
    assert run.returncode == 0, run.stderr
    assert "streamed 2466 samples in " in run.stdout and ", 4 rows rejected" in run.stdout
    rejected = sorted(int(line.split(f"{bad}:")[1].split(":")[0]) for line in run.stderr.splitlines()
                      if "rejected row" in line)
    assert rejected == bad_lines
    assert wait_until(lambda: counter("rows_rejected") == 4 and stored_count() == SAMPLE_COUNT - 4)


def test_progress_lines_sum_the_workers(caplog):
    published: list[int] = []

    class SlowDiscard(PublisherStandIn):
        def publish(self, payload: bytes, *, samples: int) -> None:
            published.append(samples)  # in the worker process: never seen here
            time.sleep(0.05)

    caplog.set_level(logging.INFO, logger="telemetry.ingest.streamer")
    config = StreamConfig(str(SAMPLE_CSV), workers=3, batch_size=100, reorder_window=0, progress_interval=0.1)
    stats = Streamer(config, publisher_factory=SlowDiscard, stop=threading.Event(), abort=threading.Event()).run()
    assert (stats.samples, stats.rejected) == (SAMPLE_COUNT, 0)
    assert stats.batches >= SAMPLE_COUNT // 100
    assert published == []
    lines = [r.getMessage() for r in caplog.records if r.name == "telemetry.ingest.streamer.stream"]
    progress = [int(line.split()[1]) for line in lines if line.startswith("streamed ")]
    assert progress and progress == sorted(progress) and progress[-1] <= SAMPLE_COUNT
    assert lines[-1].startswith("done: streamed 2470 samples")


def test_a_worker_that_raises_fails_the_stream_by_name(monkeypatch):
    def refuse(_batch):
        raise RuntimeError("encoder broken")

    monkeypatch.setattr(streamer, "encode_batch", refuse)  # the workers are forked with it
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"stream worker \d of 2 failed: RuntimeError: encoder broken"):
        call_command("stream", str(SAMPLE_CSV), "--workers", "2")
    assert time.monotonic() - started < 30


def test_a_worker_that_dies_fails_the_stream_without_hanging(monkeypatch):
    monkeypatch.setattr(streamer, "encode_batch", lambda _batch: os.kill(os.getpid(), signal.SIGKILL))
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"stream worker \d of 2 was killed by SIGKILL before reporting"):
        call_command("stream", str(SAMPLE_CSV), "--workers", "2", "--loop")
    assert time.monotonic() - started < 30


def test_a_slowly_paced_stream_sends_a_sample_within_two_flush_intervals():
    # Two samples a second, a flush every 0.1 s: the hold must be checked while the source waits,
    # not only when the next sample arrives half a second later.
    published: list[float] = []

    class Recorder(PublisherStandIn):
        def publish(self, payload: bytes, *, samples: int) -> None:
            published.append(time.monotonic())

    stop = threading.Event()
    config = StreamConfig(str(SAMPLE_CSV), rate=2, batch_size=100_000, flush_interval=0.1, reorder_window=0)
    streamer = Streamer(config, publisher_factory=Recorder, stop=stop, abort=threading.Event())
    threading.Timer(1.3, stop.set).start()
    began = time.monotonic()
    streamer.run()
    assert published and published[0] - began < 0.6
