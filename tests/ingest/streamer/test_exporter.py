"""dcgm-exporter's /metrics as a source: the parser, the scraper against a real local HTTP server, the
streamer and command around them, and end to end through RabbitMQ and a collector into PostgreSQL."""
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timezone

import pytest
from django.core.management import CommandError

from telemetry.ingest.streamer import stream as stream_module
from telemetry.ingest.streamer.exporter import (
    DEFAULT_METRICS, ExpositionParser, ScrapeError, ScrapeStats, Targets, fetch, parse_label_text, scrape, shown,
)
from telemetry.ingest.streamer.stream import StreamConfig, Streamer
from telemetry.ingest.wire import Batch, GpuInfo, Labels
from telemetry.management.commands.stream import Command, _config_from_options
from tests.conftest import REPO, subprocess_env, wait_until
from tests.ingest.factories import PublisherStandIn
from tests.ingest.streamer.fake_exporter import (
    DRIVER, FIELDS, MODEL, NAN_FIELD, FakeExporter, dcgm_page, expected_values, node_devices,
)
from tests.samples import device_id, stored_samples

HOST = "node-1"
SCRAPE_US = 1_752_871_354_000_000
LOGGER = "telemetry.ingest.streamer"


def parse(text: str, *, metrics: str = DEFAULT_METRICS, default_host: str = "") -> tuple[list, list, ExpositionParser]:
    rejects: list[tuple[str, int, str]] = []
    parser = ExpositionParser("http://node-1:9400/metrics", select=re.compile(metrics).fullmatch,
                              default_host=default_host)
    samples = parser.parse(text, SCRAPE_US, lambda *args: rejects.append(args))
    return samples, rejects, parser


# --- the parser ---


def test_a_dcgm_page_gives_every_finite_sample_at_the_scrape_time():
    devices = node_devices(HOST)
    samples, rejects, parser = parse(dcgm_page(HOST, devices))
    assert rejects == []  # HELP, TYPE and the other exporter's family are no rejects
    got = {(s.gpu.uuid, s.gpu.mig_instance, s.metric): s.value for s in samples}
    assert got == expected_values(devices)
    assert len(samples) == len(FIELDS) * len(devices)
    assert {s.timestamp_us for s in samples} == {SCRAPE_US}
    assert NAN_FIELD not in {s.metric for s in samples}
    assert parser.nonfinite == len(devices)  # the NaNs: skipped and counted


def test_the_device_and_labels_come_from_dcgm_exporter_labels():
    devices = node_devices(HOST)
    samples, _, _ = parse(dcgm_page(HOST, devices))
    by_gpu = {(s.gpu.index, s.gpu.mig_instance): s for s in samples}
    gpu0 = by_gpu[(0, None)]
    assert gpu0.gpu == GpuInfo(devices[0].uuid, HOST, 0, "nvidia0", MODEL, None, "")
    assert gpu0.labels == Labels("main", "trainer-0", "team-a",
                                 (("DCGM_FI_DRIVER_VERSION", DRIVER), ("pci_bus_id", "00000000:18:00.0")))
    assert by_gpu[(2, None)].labels == Labels("", "", "", (("DCGM_FI_DRIVER_VERSION", DRIVER),
                                                            ("pci_bus_id", "00000000:1A:00.0")))


def test_mig_instances_are_devices_of_their_own():
    devices = node_devices(HOST)
    samples, _, _ = parse(dcgm_page(HOST, devices))
    mig = {s.gpu for s in samples if s.gpu.index == 3}
    assert {(g.uuid, g.mig_instance, g.mig_profile) for g in mig} == {
        (devices[3].uuid, 1, "3g.40gb"), (devices[3].uuid, 2, "3g.40gb")}
    assert len({g.key for g in mig}) == 2
    extra = {key for s in samples if s.gpu.index == 3 for key, _ in s.labels.extra}
    assert not extra & {"GPU_I_ID", "GPU_I_PROFILE"}


def test_both_spellings_of_the_host_label_name_the_host():
    devices = node_devices(HOST)
    samples, _, _ = parse(dcgm_page(HOST, devices))
    assert {s.gpu.hostname for s in samples} == {HOST}
    gpu1 = next(s for s in samples if s.gpu.index == 1)
    assert "hostname" not in dict(gpu1.labels.extra) and "Hostname" not in dict(gpu1.labels.extra)
    # No host label at all: the target's host.
    samples, _, _ = parse('DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a"} 30\n', default_host="10.0.0.7")
    assert samples[0].gpu.hostname == "10.0.0.7"


def test_escaped_label_values_are_unescaped():
    samples, _, _ = parse(dcgm_page(HOST, node_devices(HOST)))
    gpu1 = next(s for s in samples if s.gpu.index == 1)
    assert dict(gpu1.labels.extra)["hpc_job"] == 'say "hi"\\now\nthen'
    assert parse_label_text(r'a="x\"}y",b="\\",c="1\n2",') == [("a", 'x"}y'), ("b", "\\"), ("c", "1\n2")]


def test_a_counter_is_a_sample_like_a_gauge():
    samples, _, _ = parse(dcgm_page(HOST, node_devices(HOST), tick=4))
    energy = sorted(s.value for s in samples if s.metric == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")
    assert energy[0] == 5_000_000


def test_nan_and_infinities_are_skipped_and_counted():
    text = "".join(f'DCGM_FI_DEV_GPU_TEMP{{gpu="0",UUID="GPU-a"}} {v}\n' for v in ("NaN", "+Inf", "-Inf", "31"))
    samples, rejects, parser = parse(text)
    assert [s.value for s in samples] == [31.0]
    assert (parser.nonfinite, rejects) == (3, [])


def test_a_given_timestamp_is_in_milliseconds():
    text = ('DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a"} 31 1752871354123\n'
            'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a"} 7\n')
    samples, rejects, _ = parse(text)
    assert [s.timestamp_us for s in samples] == [1_752_871_354_123_000, SCRAPE_US]
    assert rejects == []


def test_bad_lines_are_rejected_by_line_number_and_the_rest_is_used():
    good = 'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a",Hostname="h"} 31'
    lines = [
        "<html>",                                                      # 1: not the text format
        good,                                                          # 2
        'DCGM_FI_DEV_GPU_TEMP{gpu="1",Hostname="h"} 31',               # 3: no UUID
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a"} warm',             # 4: not a number
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a} 31',                # 5: a quote left open
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a",x="\\t"} 31',       # 6: not an escape of the format
        "DCGM_FI_DEV_GPU_TEMP 31",                                     # 7: no labels, so no UUID
        'DCGM_FI_DEV_GPU_TEMP{gpu="zero",UUID="GPU-a"} 31',            # 8: gpu is not an index
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a",GPU_I_ID="x"} 31',  # 9: nor GPU_I_ID
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a"} 31 soon',          # 10: a time is milliseconds
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a"',                   # 11: cut off
        "go_goroutines 12",                                            # other families: no noise
        'process_open_fds{job="x"} 9',
        "",
        good,                                                          # 15
    ]
    samples, rejects, _ = parse("\n".join(lines))
    assert len(samples) == 2
    assert [line for _, line, _ in rejects] == [1, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    reasons = dict((line, reason) for _, line, reason in rejects)
    assert "no UUID" in reasons[3] and "bad number" in reasons[4] and "GPU_I_ID" in reasons[9]
    assert {path for path, _, _ in rejects} == {"http://node-1:9400/metrics"}


def test_rejected_label_texts_are_rejected_again_on_every_line():
    line = 'DCGM_FI_DEV_GPU_TEMP{gpu="1"} 31\n'
    _, rejects, _ = parse(line * 3)
    assert [number for _, number, _ in rejects] == [1, 2, 3]


def test_metrics_selects_families_and_others_are_ignored_quietly():
    devices = node_devices(HOST)
    samples, rejects, _ = parse(dcgm_page(HOST, devices), metrics="DCGM_FI_DEV_GPU_TEMP|DCGM_FI_DEV_POWER_USAGE")
    assert {s.metric for s in samples} == {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"}
    assert rejects == []
    samples, _, _ = parse('DCGM_EXP_XID_ERRORS_COUNT{gpu="0",UUID="GPU-a",xid="13"} 1\nOTHER_THING{UUID="GPU-a"} 1\n')
    assert [s.metric for s in samples] == ["DCGM_EXP_XID_ERRORS_COUNT"]


def test_each_label_text_is_parsed_once():
    devices = node_devices(HOST)
    samples, _, parser = parse(dcgm_page(HOST, devices))
    again = parser.parse(dcgm_page(HOST, devices, tick=1), SCRAPE_US + 15_000_000, lambda *a: None)
    first = {(s.gpu.key, s.metric): s for s in samples}
    for sample in again:
        before = first[(sample.gpu.key, sample.metric)]
        assert sample.gpu is before.gpu and sample.labels is before.labels


def test_crlf_lines_and_blank_lines_parse():
    samples, rejects, _ = parse('# TYPE X gauge\r\n\r\nDCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a"} 31\r\n  \n')
    assert [s.value for s in samples] == [31.0] and rejects == []


# --- one scrape: a real HTTP server on 127.0.0.1 ---


@pytest.fixture
def exporter():
    devices = node_devices(HOST)
    fake = FakeExporter(lambda tick: dcgm_page(HOST, devices, tick)).start()
    fake.devices = devices
    yield fake
    fake.stop()


def test_fetch_asks_for_gzip_and_reads_it(exporter):
    _, text = fetch(exporter.url, 2.0)
    assert exporter.accept_encodings == ["gzip"]
    assert text == dcgm_page(HOST, exporter.devices, 0)
    exporter.gzip_when_asked = False
    assert fetch(exporter.url, 2.0)[1] == dcgm_page(HOST, exporter.devices, 1)


@pytest.mark.parametrize("mode, reason", [
    ("error", "HTTP 500"),
    ("truncated", "truncated body (9684 of 9784 bytes)"),
    ("truncated-gzip", "truncated body (gzip stream cut short)"),
    ("slow", "timed out after 0.3 s"),
])
def test_a_scrape_that_gives_no_whole_page_fails_with_a_reason(exporter, mode, reason):
    exporter.mode, exporter.delay = mode, 1.0
    exporter.gzip_when_asked = False
    started = time.monotonic()
    with pytest.raises(ScrapeError) as failure:
        fetch(exporter.url, 0.3)
    assert reason in str(failure.value)
    assert time.monotonic() - started < 0.9


def test_a_refused_connection_fails_with_a_reason(exporter):
    exporter.stop()
    with pytest.raises(ScrapeError, match="connection refused"):
        fetch(exporter.url, 1.0)


def test_a_password_in_a_url_is_not_logged():
    assert shown("http://user:secret@node-1:9400/metrics") == "http://user:***@node-1:9400/metrics"


# --- targets ---


def test_a_url_list_is_read_with_comments_and_read_again_when_it_changes(tmp_path):
    listing = tmp_path / "nodes.txt"
    listing.write_text("# the GPU nodes\nhttp://node-1:9400/metrics\n\nhttp://node-2:9400/metrics  # rack 2\n")
    targets = Targets(["http://node-0:9400/metrics", "http://node-1:9400/metrics"], [str(listing)])
    assert targets.current() == [f"http://node-{n}:9400/metrics" for n in range(3)]
    listing.write_text("https://node-3:9400/metrics\n")
    import os

    os.utime(listing, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert targets.current() == ["http://node-0:9400/metrics", "http://node-1:9400/metrics", "https://node-3:9400/metrics"]


def test_shards_partition_the_urls():
    urls = [f"http://node-{n}:9400/metrics" for n in range(100)]
    shares = [Targets(urls, shard=(i, 3)).current() for i in range(3)]
    assert sorted(sum(shares, [])) == sorted(urls) and all(shares)


# --- the scraper, the streamer and the command ---


class Captured(PublisherStandIn):
    """A publisher that keeps the batches (encode_batch is patched to hand them over as they are)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def publish(self, batch: Batch, *, samples: int) -> None:
        self.batches.append(batch)

    def samples(self) -> list:
        return [sample for batch in self.batches for sample in batch.samples()]


@pytest.fixture
def captured(monkeypatch) -> Captured:
    monkeypatch.setattr(stream_module, "encode_batch", lambda batch: batch)
    return Captured()


class Running:
    """A Streamer of `urls` in a thread, stopped at the end."""

    def __init__(self, captured: Captured, urls: list[str], **options) -> None:
        config = StreamConfig(source=urls[0], urls=tuple(urls), flush_interval=0.05, progress_interval=3600,
                              **{"interval": 0.3, "scrape_timeout": 0.25, **options})
        self.stop = threading.Event()
        self.streamer = Streamer(config, publisher_factory=lambda: captured, stop=self.stop, abort=threading.Event())
        self.stats = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.stats = self.streamer.run()

    def finish(self):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.stats


def test_one_scrape_is_one_reading_per_device_at_the_scrape_time(exporter, captured):
    running = Running(captured, [exporter.url])
    assert wait_until(lambda: exporter.requests >= 3, timeout=10)
    stats = running.finish()
    readings = [(gpu, ts, size) for batch in captured.batches for gpu, ts, _, metrics, _ in batch.readings()
                for size in [len(metrics)]]
    times = sorted({ts for _, ts, _ in readings})
    assert len(times) == exporter.requests  # a time per scrape
    # Every device's six finite fields of one scrape are one reading; MIG instances are devices of their own.
    keys = [(batch.gpus[g].key, ts) for batch in captured.batches for g, ts, *_ in batch.readings()]
    assert len(keys) == len(set(keys)) == len(exporter.devices) * len(times)
    assert {size for *_, size in readings} == {len(FIELDS)}
    assert stats.samples == len(FIELDS) * len(exporter.devices) * len(times)
    assert stats.scrapes.nonfinite == len(exporter.devices) * len(times) and stats.scrapes.failed == 0


def test_several_exporters_are_scraped_at_once_and_a_slow_one_does_not_hold_up_the_others(captured, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    fakes = []
    for n in range(3):
        devices = node_devices(f"node-{n}")
        fakes.append(FakeExporter(lambda tick, n=n, devices=devices: dcgm_page(f"node-{n}", devices, tick)).start())
    fakes[0].mode, fakes[0].delay = "slow", 5.0
    try:
        running = Running(captured, [f.url for f in fakes], interval=1.0, scrape_timeout=0.8)
        assert wait_until(lambda: min(f.requests for f in fakes) >= 3, timeout=15)
        stats = running.finish()
    finally:
        for fake in fakes:
            fake.stop()
    hosts = {s.gpu.hostname for s in captured.samples()}
    assert hosts == {"node-1", "node-2"}
    assert stats.scrapes.failed >= 2 and stats.scrapes.down == 1
    # Each round waits for the slow one's time-out (0.8 s) only, not one after the other.
    assert fakes[1].requests >= fakes[0].requests - 1
    down = [r.getMessage() for r in caplog.records if " down: " in r.getMessage()]
    assert len(down) == 1 and "timed out after 0.8 s" in down[0]


def test_an_exporter_down_and_back_is_logged_once_each_way_and_samples_flow_again(exporter, captured, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    running = Running(captured, [exporter.url], interval=0.2, scrape_timeout=0.2)
    assert wait_until(lambda: len(captured.samples()) > 0, timeout=10)
    exporter.stop()
    assert wait_until(lambda: running.streamer.stats.scrapes.failed >= 4, timeout=10)
    while_down = len(captured.samples())
    exporter.start()  # on the same port
    assert wait_until(lambda: len(captured.samples()) > while_down, timeout=10)
    stats = running.finish()
    lines = [r.getMessage() for r in caplog.records]
    down = [line for line in lines if " down: " in line]
    back = [line for line in lines if " back after " in line]
    # Refused; or reset, when the scrape came as the server was closing.
    assert len(down) == 1 and re.search("connection (refused|reset)", down[0]) and exporter.url in down[0]
    assert len(back) == 1 and exporter.url in back[0]
    assert stats.scrapes.failed >= 4 and stats.scrapes.down == 0
    assert "exporters: 1, 0 down" in stats.line()


@pytest.mark.parametrize("mode, reason", [
    ("slow", "timed out after 0.2 s"),
    ("truncated", "truncated body"),
    ("truncated-gzip", "truncated body (gzip stream cut short)"),
    ("error", "HTTP 500 exporter broken"),
])
def test_a_failing_exporter_keeps_the_stream_running_and_is_retried(exporter, captured, caplog, mode, reason):
    caplog.set_level(logging.INFO, logger=LOGGER)
    exporter.mode, exporter.delay = mode, 0.6
    running = Running(captured, [exporter.url], interval=0.25, scrape_timeout=0.2)
    assert wait_until(lambda: exporter.requests >= 3, timeout=10)
    assert running.thread.is_alive() and captured.samples() == []
    exporter.mode = "ok"
    assert wait_until(lambda: len(captured.samples()) > 0, timeout=10)
    stats = running.finish()
    down = [r.getMessage() for r in caplog.records if " down: " in r.getMessage()]
    assert len(down) == 1 and reason in down[0], down
    assert sum(" back after " in r.getMessage() for r in caplog.records) == 1
    assert stats.scrapes.failed >= 2
    # The good scrapes after it are whole: every device, every finite field.
    first = min(s.timestamp_us for s in captured.samples())
    assert len([s for s in captured.samples() if s.timestamp_us == first]) == len(FIELDS) * len(exporter.devices)


def test_a_page_that_is_not_the_text_format_is_used_where_it_parses_and_its_rejects_reach_the_batch(
        exporter, captured, caplog):
    exporter.mode = "garbage"  # an HTML page around the first family's first sample line
    running = Running(captured, [exporter.url], interval=0.3)
    assert wait_until(lambda: exporter.requests >= 2, timeout=10)
    stats = running.finish()
    samples = captured.samples()
    assert {(s.metric, s.gpu.index) for s in samples} == {("DCGM_FI_DEV_SM_CLOCK", 0), ("DCGM_FI_DEV_SM_CLOCK", 1)}
    assert len(samples) == 2 * exporter.requests
    assert stats.rejected == sum(batch.rejected for batch in captured.batches) == 3 * exporter.requests
    lines = [r.getMessage() for r in caplog.records if "rejected row" in r.getMessage()]
    assert lines[:3] == [f"rejected row {exporter.url}:{n}: not a metric line: {text!r}"
                         for n, text in ((1, "<html>"), (2, "<head><title>502"), (5, "</html>"))]


def test_sigterm_stops_between_scrapes_and_sends_what_it_holds(exporter):
    # The in-process broker: no RabbitMQ needed to see that the command exits 0 and what it sent.
    run = subprocess.Popen(
        [sys.executable, "manage.py", "stream", exporter.url, "--interval", "0.2", "--flush-interval", "60",
         "--batch-size", "100000"],
        cwd=REPO, env=subprocess_env(CELERY_BROKER_URL="memory://localhost//"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_until(lambda: exporter.requests >= 3, timeout=30)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=30)
    assert run.returncode == 0, stderr
    streamed = int(stdout.split("streamed ")[1].split()[0])
    per_scrape = len(FIELDS) * len(exporter.devices)
    assert streamed % per_scrape == 0 and streamed >= 3 * per_scrape
    assert "exporters: 1, 0 down" in stdout and "Traceback" not in stderr


def options(*args: str) -> dict:
    return vars(Command().create_parser("manage.py", "stream").parse_args(list(args)))


def test_nvml_interval_is_another_name_for_interval():
    assert options("nvml", "--nvml-interval", "3")["interval"] == 3.0
    assert options("nvml", "--interval", "4")["interval"] == 4.0
    assert _config_from_options(options("nvml", "--nvml-interval", "3")).interval == 3.0


@pytest.mark.parametrize("env, expected", [({}, 15.0), ({"STREAM_NVML_INTERVAL": "5"}, 5.0),
                                           ({"STREAM_NVML_INTERVAL": "5", "STREAM_INTERVAL": "7"}, 7.0)])
def test_stream_interval_falls_back_to_stream_nvml_interval(env, expected):
    code = "import django; django.setup(); from django.conf import settings; print(settings.STREAM_INTERVAL)"
    base = {k: v for k, v in subprocess_env().items() if k not in ("STREAM_INTERVAL", "STREAM_NVML_INTERVAL")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**base, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == str(expected), done.stderr


def test_the_command_takes_urls_and_url_lists(tmp_path):
    listing = tmp_path / "nodes"
    listing.write_text("# nodes\nhttp://node-2:9400/metrics\n")
    config = _config_from_options(options("http://node-1:9400/metrics", str(listing), "--metrics", "DCGM_FI_DEV_.*"))
    assert config.scrapes and config.urls == ("http://node-1:9400/metrics",) and config.url_files == (str(listing),)
    assert (config.interval, config.scrape_timeout, config.metrics) == (15.0, 5.0, "DCGM_FI_DEV_.*")
    csv = _config_from_options(options(str(REPO / "data" / "dcgm_metrics_20250718_134233.csv")))
    assert not csv.scrapes


@pytest.mark.parametrize("args, message", [
    (["http://node-1:9400/metrics", "nvml"], "several sources are for dcgm-exporter URLs"),
    (["http://:9400/metrics"], "not an http:// or https:// URL with a host"),
    (["http://node-1:9400/metrics", "--metrics", "DCGM_(FI"], "not a regular expression"),
])
def test_the_command_refuses_bad_sources_by_name(args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        _config_from_options(options(*args))


def test_a_bad_line_in_a_url_list_is_named(tmp_path):
    listing = tmp_path / "nodes"
    listing.write_text("http://node-1:9400/metrics\nnode-2:9400\n")
    with pytest.raises(CommandError, match=r"nodes:2: 'node-2:9400' is not an http"):
        _config_from_options(options(str(listing)))


def test_the_scraper_stops_between_scrapes():
    stop = threading.Event()
    calls: list[float] = []

    def fetcher(url: str, timeout: float) -> tuple[int, str]:
        calls.append(time.monotonic())
        return time.time_ns() // 1000, 'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a"} 31\n'

    stats = ScrapeStats()
    samples = scrape(Targets(["http://node-1:9400/metrics"]), interval=0.1, timeout=0.1, stop=stop,
                     on_reject=lambda *a: None, stats=stats, tick=0.02, fetcher=fetcher)
    got = []
    for sample in samples:
        if sample is not None:
            got.append(sample)
        if len(got) == 3:
            stop.set()
    assert len(got) == len(calls) == stats.scrapes == 3
    assert all(0.08 < b - a < 0.5 for a, b in zip(calls, calls[1:]))


# --- end to end: RabbitMQ, a real collector worker, PostgreSQL ---


@pytest.mark.django_db(transaction=True)
def test_scraped_samples_are_stored_as_readings_at_the_scrape_time(worker_process, exporter):
    worker_process()
    run = subprocess.Popen(
        [sys.executable, "manage.py", "stream", exporter.url, "--interval", "0.5", "--flush-interval", "0.2"],
        cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    devices = exporter.devices
    try:
        assert wait_until(lambda: exporter.requests >= 3, timeout=60)
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr
    scrapes = exporter.requests

    # Every device, GPU 3's two MIG instances each one of its own (uuid, GPU_I_ID) with its own readings.
    assert wait_until(lambda: len(stored_samples()) == len(FIELDS) * len(devices) * scrapes, timeout=60), (
        len(stored_samples()), stderr[-2000:])
    rows = stored_samples()
    times = sorted({ts for _, _, ts, _ in rows})
    assert len(times) == scrapes  # every sample of a scrape at that scrape's one time
    for ts in times:
        at = {(device, metric): value for device, metric, t, value in rows if t == ts}
        assert len(at) == len(FIELDS) * len(devices)
    first = {(device, metric): value for device, metric, t, value in rows if t == times[0]}
    expected = expected_values(devices, tick=0)
    assert first == {(device_id(uuid, instance), metric): value for (uuid, instance, metric), value in expected.items()}
    assert all(ts.astimezone(timezone.utc).timestamp() < time.time() for ts in times)
    from telemetry.models import Gpu

    mig = Gpu.objects.filter(mig_instance__isnull=False).order_by("mig_instance")
    assert [(g.uuid, g.mig_instance, g.mig_profile, g.hostname, g.index, g.sample_count) for g in mig] == [
        (d.uuid, d.instance, d.profile, HOST, 3, len(FIELDS) * scrapes) for d in devices if d.instance is not None]
    assert not Gpu.objects.filter(uuid=devices[3].uuid, mig_instance__isnull=True).exists()  # no parent row
    assert Gpu.objects.count() == len(devices)
    gpu0 = Gpu.objects.get(uuid=devices[0].uuid, mig_instance=None)
    assert (gpu0.hostname, gpu0.index, gpu0.device, gpu0.model_name) == (HOST, 0, "nvidia0", MODEL)
