"""Prometheus as a peer: its own backfill and range query next to ours, on the same samples, in one run.

    python -m bench.prometheus_peer            # 10 GPUs × 10 metrics every 10 s for two days (1.728M samples)
    python -m bench.prometheus_peer --smoke    # 2 GPUs for three hours: checks that every step runs

(a) Backfill: `promtool tsdb create-blocks-from openmetrics` of an OpenMetrics file against
`manage.py backfill` of the same values as a DCGM CSV, each timed from its command's start.
(b) Window: one GPU's 1 h window (10 metrics × 360 steps) through our API over HTTP (gunicorn, both
shapes) against Prometheus's HTTP API answering `{gpu="3"}[1h]` from the blocks promtool made.

Prometheus 2.x (Debian: `apt-get install prometheus`) is run
as a subprocess of this bench on a port of its own and stopped at the end. Without `promtool` and
`prometheus` on PATH the Prometheus side is skipped, said so, and our side is still measured.
Creates and drops its own database (telemetry_bench_prometheus); the files go to bench/results/.
"""
import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

from bench import harness
from bench.fleet import HEADER, METRICS, MODEL

RESULTS = harness.REPO / "bench" / "results"
DB_NAME = "telemetry_bench_prometheus"
# The targets: our backfill at least promtool's rate; our 1 h window's p99 at most 2× Prometheus's (goal 1×).
BACKFILL_TARGET = 1.0
WINDOW_TARGET, WINDOW_GOAL = 2.0, 1.0
START = datetime(2025, 7, 18, tzinfo=timezone.utc)
HOSTNAME = "bench-dgx-00000"
DRIVER = "535.129.03"
FB_TOTAL_MIB = 81559  # an H100 80GB's framebuffer as DCGM reports it (used + free)
WINDOW_GPU = 3
WINDOW_STEPS = 360  # a 1 h window at 10 s: 10 metrics × 360 steps = 3,600 samples


@dataclass(frozen=True)
class Workload:
    gpus: int = 10
    hours: int = 48
    interval_s: int = 10
    requests: int = 500  # timed requests per endpoint, after a warm-up of a tenth as many

    @property
    def steps(self) -> int:
        return self.hours * 3600 // self.interval_s

    @property
    def samples(self) -> int:
        return self.gpus * len(METRICS) * self.steps

    def time(self, step: int) -> datetime:
        return START + timedelta(seconds=step * self.interval_s)


FULL = Workload()
SMOKE = Workload(gpus=4, hours=3, requests=20)


# --- The samples: one set of values written as OpenMetrics for promtool and as a DCGM CSV for us ---


def _uuid(gpu: int) -> str:
    return f"GPU-{gpu:08x}-peer-4000-8000-{gpu:012x}"


def gpu_values(gpu: int, steps: int) -> dict[str, list[str]]:
    """One GPU's values of every metric at each step, as the text both files carry.

    Jobs of 20 minutes to 6 hours with idle gaps: utilisation, copy utilisation and power are
    noisy around each job's level, temperature follows the load slowly, framebuffer use and SM
    clock change only between jobs, and the encoder, decoder and memory clock are constant.
    """
    rng = random.Random(1000 + gpu)
    columns: dict[str, list[str]] = {name: [] for name in METRICS}
    remaining, level, memory = 0, 0.0, 0
    temperature = 32.0
    for _ in range(steps):
        if remaining == 0:  # the next job, or an idle gap
            busy = rng.random() < 0.7
            remaining = rng.randint(120, 2160)  # steps of 10 s: 20 min to 6 h
            level = rng.uniform(55, 98) if busy else 0.0
            memory = rng.randrange(20_000, 78_000) if busy else 0
        remaining -= 1
        util = min(100, max(0, round(level + rng.gauss(0, 6)))) if level else 0
        temperature += (30 + 0.45 * util - temperature) * 0.02 + rng.gauss(0, 0.05)
        columns["DCGM_FI_DEV_GPU_UTIL"].append(str(util))
        columns["DCGM_FI_DEV_MEM_COPY_UTIL"].append(str(min(100, max(0, round(util * 0.45 + rng.gauss(0, 3))))) if util else "0")
        columns["DCGM_FI_DEV_ENC_UTIL"].append("0")
        columns["DCGM_FI_DEV_DEC_UTIL"].append("0")
        columns["DCGM_FI_DEV_FB_FREE"].append(str(FB_TOTAL_MIB - memory))
        columns["DCGM_FI_DEV_FB_USED"].append(str(memory))
        columns["DCGM_FI_DEV_GPU_TEMP"].append(str(round(temperature)))
        power = 90 + 5.4 * util + rng.gauss(0, 12) if util else 68 + rng.gauss(0, 0.4)
        columns["DCGM_FI_DEV_POWER_USAGE"].append(f"{power:.3f}")
        columns["DCGM_FI_DEV_SM_CLOCK"].append("1980" if level else "345")
        columns["DCGM_FI_DEV_MEM_CLOCK"].append("2619")
    return columns


def _labels(gpu: int, metric: str) -> list[tuple[str, str]]:
    """dcgm-exporter's labels of one series, as Prometheus scrapes them and DCGM's CSV keeps them in labels_raw."""
    return [
        ("DCGM_FI_DRIVER_VERSION", DRIVER), ("Hostname", HOSTNAME), ("UUID", _uuid(gpu)), ("__name__", metric),
        ("device", f"nvidia{gpu}"), ("gpu", str(gpu)), ("instance", f"{HOSTNAME}:9400"), ("job", "dgx_dcgm_exporter"),
        ("modelName", MODEL),
    ]


def files_write(work: Path, workload: Workload = FULL) -> dict:
    """The workload's samples as `samples.om` (OpenMetrics, a family per metric, each series in time order)
    and `samples.csv` (DCGM's CSV: per time, per metric, per GPU, as the exporter writes it), the same value text in both."""
    work.mkdir(parents=True, exist_ok=True)
    values = [gpu_values(gpu, workload.steps) for gpu in range(workload.gpus)]
    seconds = [int(workload.time(step).timestamp()) for step in range(workload.steps)]
    openmetrics, csv = work / "samples.om", work / "samples.csv"
    with open(openmetrics, "w", encoding="ascii") as out:
        for metric in METRICS:
            out.write(f"# TYPE {metric} gauge\n")
            for gpu in range(workload.gpus):
                labels = ",".join(f'{k}="{v}"' for k, v in _labels(gpu, metric) if k != "__name__")
                head = f"{metric}{{{labels}}} "
                out.write("".join(f"{head}{value} {ts}\n" for value, ts in zip(values[gpu][metric], seconds)))
        out.write("# EOF\n")
    with open(csv, "w", encoding="ascii", newline="") as out:
        out.write(HEADER)
        rows = {}  # (gpu, metric) → the quoted columns around the value
        for gpu in range(workload.gpus):
            for metric in METRICS:
                raw = ",".join(f'{k}="{v}"' for k, v in _labels(gpu, metric)).replace('"', '""')
                rows[gpu, metric] = (f'"{metric}","{gpu}","nvidia{gpu}","{_uuid(gpu)}","{MODEL}","{HOSTNAME}","","",""',
                                     f'"{raw}"\n')
        for step in range(workload.steps):
            stamp = workload.time(step).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.write("".join(
                f'"{stamp}",{rows[gpu, metric][0]},"{values[gpu][metric][step]}",{rows[gpu, metric][1]}'
                for metric in METRICS for gpu in range(workload.gpus)
            ))
    return {"openmetrics": openmetrics, "csv": csv, "samples": workload.samples,
            "openmetrics_bytes": openmetrics.stat().st_size, "csv_bytes": csv.stat().st_size}


# --- (a) Backfill, each command timed from its start ---


def backfill_promtool(openmetrics: Path, blocks: Path, *, expected: int, promtool: str = "promtool") -> dict:
    """`promtool tsdb create-blocks-from openmetrics --max-block-duration=72h` into `blocks` (emptied first)."""
    shutil.rmtree(blocks, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=72h",
                           str(openmetrics), str(blocks)], capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"promtool exited {done.returncode}: {done.stderr[-2000:]}")
    # Its table of the blocks made: ULID, min time, max time, duration, samples, chunks, series, size.
    rows = [line.split() for line in done.stdout.splitlines()[1:] if line.strip()]
    samples = sum(int(row[4]) for row in rows)
    if samples != expected:
        raise RuntimeError(f"promtool wrote {samples} samples, expected {expected}:\n{done.stdout}")
    return {"samples": samples, "seconds": round(wall, 3), "samples_per_s": samples / wall, "blocks": len(rows),
            "bytes": sum(int(row[7]) for row in rows)}


def backfill_ours(csv: Path, *, expected: int) -> dict:
    """`manage.py backfill` with its defaults (2 workers, 50,000-sample batches) and no per-GPU limit, into emptied tables."""
    from django.db import connection

    harness.tables_truncate()
    harness.database_settle()
    started = time.perf_counter()
    done = harness.run_command([sys.executable, "manage.py", "backfill", str(csv), "--max-per-gpu", "0"],
                               cwd=harness.REPO, env=os.environ.copy(), capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0 or f"{expected} stored" not in done.stdout:
        raise RuntimeError(f"backfill exited {done.returncode} without storing {expected}: {done.stdout[-500:]} {done.stderr[-2000:]}")
    harness.tables_vacuum()  # what autovacuum does soon after a load, before the window queries
    with connection.cursor() as cursor:
        size = harness.table_bytes(cursor, "telemetry_reading")["total"]
    return {"samples": expected, "seconds": round(wall, 3), "samples_per_s": expected / wall, "bytes": size,
            "output": done.stdout.strip().splitlines()[-1]}


# --- (b) One GPU's 1 h window over HTTP: our API (gunicorn) and Prometheus, requests interleaved ---


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(port: int, path: str) -> tuple[float, int, bytes]:
    """(seconds, status, body) of one GET on a new connection, as a dashboard's request makes it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        began = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return time.perf_counter() - began, response.status, body
    finally:
        connection.close()


def _wait_ready(port: int, path: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"exited {process.returncode} before it was ready:\n{log.read_text()[-3000:]}")
        try:
            if _get(port, path)[1] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Gunicorn:
    """The API as deployed (`gunicorn -c config/gunicorn.conf.py`), 2 sync workers, no access log."""

    def __init__(self, work: Path) -> None:
        self.port = _free_port()
        self.log = work / "gunicorn.log"

    def __enter__(self) -> "Gunicorn":
        env = dict(os.environ, GUNICORN_BIND=f"127.0.0.1:{self.port}", GUNICORN_WORKERS="2", GUNICORN_ACCESSLOG="",
                   GUNICORN_LOGLEVEL="warning")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi:application"],
                                        cwd=harness.REPO, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        try:
            _wait_ready(self.port, "/health", self.process, self.log)
        except BaseException:
            _stop(self.process)
            raise
        return self

    def __exit__(self, *exc) -> None:
        _stop(self.process)


class Prometheus:
    """`prometheus` serving the blocks in `storage` on a port of its own, retention long enough to keep them."""

    def __init__(self, storage: Path, work: Path, binary: str = "prometheus") -> None:
        self.storage, self.binary = storage, binary
        self.port = _free_port()
        self.config = work / "prometheus.yml"
        self.log = work / "prometheus.log"

    def __enter__(self) -> "Prometheus":
        self.config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.storage}",
             "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(self.port, "/-/ready", self.process, self.log)
        except BaseException:
            _stop(self.process)
            raise
        return self

    def __exit__(self, *exc) -> None:
        _stop(self.process)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def window_paths(workload: Workload, last_step: int, *, prometheus: bool) -> dict[str, str]:
    """The requests for the window of WINDOW_STEPS steps ending at `last_step`, by name."""
    end = workload.time(last_step)
    start = workload.time(last_step - WINDOW_STEPS + 1)
    api = {"start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "end_time": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
           "limit": WINDOW_STEPS * len(METRICS)}
    paths = {
        "ours, shape=samples": f"/api/v1/gpus/{_uuid(WINDOW_GPU)}/telemetry?{urlencode(api)}",
        "ours, shape=series": f"/api/v1/gpus/{_uuid(WINDOW_GPU)}/telemetry?{urlencode({**api, 'shape': 'series'})}",
    }
    if prometheus:
        # Both ends of a 2.x range are inclusive: evaluated half a step after the last sample, [1h] holds 360 steps.
        at = end.timestamp() + workload.interval_s / 2
        selector = '{gpu="%d"}[%ds]' % (WINDOW_GPU, WINDOW_STEPS * workload.interval_s)
        paths["prometheus"] = f"/api/v1/query?{urlencode({'query': selector, 'time': at})}"
    return paths


def window_samples(name: str, body: bytes) -> dict[str, list[tuple[float, float]]]:
    """metric → [(unix time, value)] of one answer, whichever its shape."""
    data = json.loads(body)
    epoch = lambda text: datetime.fromisoformat(text).timestamp()  # noqa: E731
    if name == "prometheus":
        if data.get("status") != "success" or data["data"]["resultType"] != "matrix":
            raise RuntimeError(f"prometheus answered {body[:300]!r}")
        return {s["metric"]["__name__"]: [(float(t), float(v)) for t, v in s["values"]] for s in data["data"]["result"]}
    if "series" in data:
        return {s["metric"]: list(zip(map(epoch, s["times"]), s["values"])) for s in data["series"]}
    by_metric: dict[str, list[tuple[float, float]]] = {}
    for row in data["results"]:
        by_metric.setdefault(row["metric"], []).append((epoch(row["timestamp"]), row["value"]))
    return by_metric


def window_latency(workload: Workload, work: Path, *, prometheus: Prometheus | None) -> dict:
    """p50/p99 of each window request, interleaved round by round; every answer's first round is checked against the others."""
    rng = random.Random(3)
    timings: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    warm_up = max(5, workload.requests // 10)
    with Gunicorn(work) as api:
        ports = {"ours, shape=samples": api.port, "ours, shape=series": api.port}
        if prometheus is not None:
            ports["prometheus"] = prometheus.port
        for round_ in range(warm_up + workload.requests):
            last_step = rng.randrange(WINDOW_STEPS - 1, workload.steps)
            answers = {}
            for name, path in window_paths(workload, last_step, prometheus=prometheus is not None).items():
                seconds, status, body = _get(ports[name], path)
                if status != 200:
                    raise RuntimeError(f"{name} answered {status}: {body[:300]!r}")
                if round_ >= warm_up:
                    timings.setdefault(name, []).append(seconds * 1000)
                if round_ == 0:
                    answers[name] = window_samples(name, body)
                    sizes[name] = len(body)
            for name, samples in answers.items():  # the same 3,600 samples from every endpoint
                count = sum(len(points) for points in samples.values())
                if count != WINDOW_STEPS * len(METRICS) or samples != answers["ours, shape=samples"]:
                    raise RuntimeError(f"{name}: {count} samples, or not the same as ours in the samples shape")
    return {name: {"p50_ms": round(percentile(ms, 0.5), 3), "p90_ms": round(percentile(ms, 0.9), 3),
                   "p99_ms": round(percentile(ms, 0.99), 3), "max_ms": round(max(ms), 3),
                   "requests": len(ms), "response_bytes": sizes[name]} for name, ms in timings.items()}


# --- The whole comparison ---


def prometheus_binaries() -> tuple[str, str] | None:
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    return (promtool, prometheus) if promtool and prometheus else None


def measure(workload: Workload = FULL, *, work: Path | None = None, keep_db: bool = False) -> dict:
    """Every figure of the comparison as a dict; the Prometheus side is None, with `skipped` saying why, where it could not run.

    Needs no Django set-up: it creates, migrates and drops its own database.
    """
    work = work or RESULTS / "work-prometheus"
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"workload": {"gpus": workload.gpus, "metrics": len(METRICS), "interval_s": workload.interval_s,
                                 "hours": workload.hours, "samples": workload.samples,
                                 "window": f"GPU {WINDOW_GPU}, {WINDOW_STEPS} steps × {len(METRICS)} metrics"},
                    "skipped": None}
    binaries = prometheus_binaries()
    if binaries is None:
        report["skipped"] = ("promtool and prometheus are not both on PATH (Debian: apt-get install prometheus), "
                             "so Prometheus's side is not measured")
        print(f"  SKIPPED: {report['skipped']}", flush=True)
    else:
        report["prometheus_version"] = subprocess.run([binaries[1], "--version"], capture_output=True,
                                                      text=True).stdout.splitlines()[0]
    harness.database_recreate(DB_NAME)
    harness.configure_django(DB_NAME, f"telemetry.ingest.{DB_NAME}")
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    report["machine"] = harness.machine()
    try:
        print(f"generating {workload.samples:,} samples ({workload.gpus} GPUs × {len(METRICS)} metrics × "
              f"{workload.steps:,} steps of {workload.interval_s} s) as OpenMetrics and as a DCGM CSV", flush=True)
        files = files_write(work, workload)
        report["files"] = {k: v for k, v in files.items() if k.endswith("bytes")}
        blocks = work / "prometheus-data"
        promtool = None
        if binaries is not None:
            print("backfill: promtool tsdb create-blocks-from openmetrics", flush=True)
            try:
                promtool = backfill_promtool(files["openmetrics"], blocks, expected=workload.samples, promtool=binaries[0])
                print(f"  {promtool['samples_per_s']:,.0f} samples/s ({promtool['seconds']} s)", flush=True)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                report["skipped"] = f"promtool failed, so Prometheus's side is not measured: {exc}"
                print(f"  SKIPPED: {report['skipped']}", flush=True)
        print("backfill: manage.py backfill", flush=True)
        ours = backfill_ours(files["csv"], expected=workload.samples)
        print(f"  {ours['samples_per_s']:,.0f} samples/s ({ours['seconds']} s)", flush=True)
        ratio = ours["samples_per_s"] / promtool["samples_per_s"] if promtool else None
        report["backfill"] = {"ours": ours, "promtool": promtool, "ratio": ratio, "target": f">= {BACKFILL_TARGET:g}",
                              "met": None if ratio is None else ratio >= BACKFILL_TARGET}
        for path in (files["openmetrics"], files["csv"]):
            path.unlink()

        print(f"window: one GPU's 1 h over HTTP, {workload.requests} requests each, interleaved", flush=True)
        harness.database_settle()  # the backfill's dirty pages written now, not by a checkpoint among the requests
        with contextlib.ExitStack() as running:
            prometheus = None
            if promtool is not None:
                try:
                    prometheus = running.enter_context(Prometheus(blocks, work, binaries[1]))
                except (RuntimeError, OSError) as exc:
                    report["skipped"] = f"prometheus did not start on promtool's blocks, so its side is not measured: {exc}"
                    print(f"  SKIPPED: {report['skipped']}", flush=True)
            window = window_latency(workload, work, prometheus=prometheus)
        peer = window.get("prometheus")
        for name, figures in window.items():
            print(f"  {name}: p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms", flush=True)
        report["window"] = {"endpoints": window, "target": f"p99 <= {WINDOW_TARGET:g}x Prometheus's (goal {WINDOW_GOAL:g}x)"}
        for shape in ("samples", "series"):
            ratio = window[f"ours, shape={shape}"]["p99_ms"] / peer["p99_ms"] if peer else None
            report["window"][f"ratio_p99_{shape}"] = ratio
            report["window"][f"met_{shape}"] = None if ratio is None else ratio <= WINDOW_TARGET
            report["window"][f"goal_met_{shape}"] = None if ratio is None else ratio <= WINDOW_GOAL
    finally:
        connection.close()
        harness.queues_delete()
        if not keep_db:
            harness.database_drop(DB_NAME)
        shutil.rmtree(work / "prometheus-data", ignore_errors=True)
    return report


def summary(report: dict) -> str:
    """The figures as lines: each next to Prometheus's and the target."""
    def rate(side):
        return "skipped" if side is None else f"{side['samples_per_s']:,.0f} samples/s ({side['seconds']} s)"

    def verdict(met):
        return {True: "met", False: "NOT met", None: "—"}[met]

    backfill, window = report["backfill"], report["window"]
    lines = [f"workload: {report['workload']['samples']:,} samples; window: {report['workload']['window']}",
             f"backfill, ours (manage.py backfill, its defaults): {rate(backfill['ours'])}",
             f"backfill, promtool create-blocks-from openmetrics: {rate(backfill['promtool'])}"]
    if backfill["ratio"] is not None:
        lines.append(f"  ratio {backfill['ratio']:.3f}, target {backfill['target']}: {verdict(backfill['met'])}")
    samples = report["workload"]["samples"]
    stored = [f"ours {backfill['ours']['bytes'] / samples:.1f} (telemetry_reading's partitions, indexes included)"]
    if backfill["promtool"]:
        stored.append(f"promtool's blocks {backfill['promtool']['bytes'] / samples:.1f}")
    lines.append(f"bytes per sample after the backfill: {', '.join(stored)}")
    for name, figures in window["endpoints"].items():
        lines.append(f"window 1 h, {name}: p50 {figures['p50_ms']:.2f} ms, p90 {figures['p90_ms']:.2f} ms, "
                     f"p99 {figures['p99_ms']:.2f} ms ({figures['response_bytes']:,} bytes)")
    for shape in ("samples", "series"):
        ratio = window[f"ratio_p99_{shape}"]
        if ratio is not None:
            lines.append(f"  p99 ratio, shape={shape}: {ratio:.2f}, target {window['target']}: {verdict(window[f'met_{shape}'])}"
                         f", goal {verdict(window[f'goal_met_{shape}'])}")
    if report["skipped"]:
        lines.append(f"SKIPPED: {report['skipped']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small run that checks every step, not the targets")
    parser.add_argument("--requests", type=int, help=f"timed window requests per endpoint (default {FULL.requests})")
    parser.add_argument("--keep-db", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--work", type=Path, help="folder for the generated files (default bench/results/work-prometheus)")
    parser.add_argument("--report", type=Path, help="also write the figures here as JSON (make bench reads it)")
    args = parser.parse_args(argv)
    workload = SMOKE if args.smoke else FULL
    if args.requests:
        workload = Workload(workload.gpus, workload.hours, workload.interval_s, args.requests)
    began = time.perf_counter()
    report = measure(workload, work=args.work, keep_db=args.keep_db)
    report["seconds"] = round(time.perf_counter() - began, 1)
    report["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"prometheus-peer-{'smoke' if args.smoke else 'full'}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    if args.report:
        args.report.write_text(out.read_text())
    print()
    print(summary(report))
    machine = report["machine"]
    print(f"\nmachine: {machine['cores']} cores ({machine['cpu']}), PostgreSQL {machine['postgresql']}, "
          f"{report.get('prometheus_version', 'no prometheus')}; load at start {machine['load_average_at_start']}")
    print(f"results: {out.relative_to(harness.REPO)}  ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
