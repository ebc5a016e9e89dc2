"""The streamer end to end: CSV → RabbitMQ → a real collector worker → PostgreSQL."""
import signal
import subprocess
import sys
import threading
import time
from datetime import timezone

import pytest

from telemetry.ingest.sources import read_path
from telemetry.ingest.streamer import StreamConfig, Streamer, in_share, parse_shard, restamp_now
from telemetry.ingest.batch import GpuInfo, HeldReadings, Sample as SourceSample
from telemetry.models import Gpu, IngestCounter
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
def test_sigterm_flushes_what_it_holds_and_exits_zero(worker_process):
    worker_process()
    run = subprocess.Popen(
        [sys.executable, "manage.py", "stream", str(SAMPLE_CSV), "--loop", "--rate", "400",
         "--batch-size", "100000", "--flush-interval", "60"],
        cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(4)
    assert stored_count() == 0  # everything is still held in the streamer's batch
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    streamed = int(stdout.split("streamed ")[1].split()[0])
    assert streamed > 500
    assert wait_until(lambda: stored_count() == streamed)


def test_wrong_header_exits_non_zero_naming_the_missing_columns(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,uuid,value\n2025-07-18T20:42:34Z,GPU-1,1\n")
    run = manage("stream", str(bad))
    assert run.returncode == 1
    assert "needs the columns metric_name, gpu_id, device, modelName, Hostname" in run.stderr
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


def test_shards_and_workers_partition_the_gpus():
    uuids = [f"GPU-{n}" for n in range(1000)]
    owners = [[(i, w) for i in range(3) for w in range(2) if in_share(u, (i, 3), w, 2)] for u in uuids]
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
    fed = list(held.feed(source))
    assert len(fed) == 9  # (1,500 samples - a window of 600) / 100: sent while the source runs
    batches = [*fed, *held.drain()]
    assert sum(len(b) for b in batches) == 1500
    assert {size for b in batches for size in b.size} == {10}  # every reading whole


def test_a_paced_stream_sends_what_it_holds_every_flush_interval():
    published: list[tuple[float, int]] = []

    class Recorder:
        def publish(self, payload: bytes, *, samples: int) -> None:
            published.append((time.monotonic(), samples))

        def close(self) -> None:
            pass

    stop = threading.Event()
    config = StreamConfig(str(SAMPLE_CSV), rate=500, batch_size=100_000, flush_interval=0.2, loop=True)
    streamer = Streamer(config, publisher_factory=Recorder, stop=stop, abort=threading.Event())
    threading.Timer(1.5, stop.set).start()
    began = time.monotonic()
    stats = streamer.run()
    # Batches far from full went out while the source was paced, not only at the stop.
    assert len([t for t, _ in published if t - began < 1.4]) >= 3
    assert sum(samples for _, samples in published) == stats.samples > 500
