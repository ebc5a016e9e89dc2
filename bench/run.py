"""`make bench`: every benchmark of issue 5 against a fresh database, each next to a baseline from the same run.

    python -m bench.run            # the full run (1M-sample ingest, 10M-sample storage and queries, 1 GB CSV)
    python -m bench.run --smoke    # a small run (under a minute) that checks the benchmarks run and give sane figures

Prints a table (figure, baseline, ratio, target, met?) and writes the same figures as JSON under
bench/results/. The run creates and drops its own database (telemetry_bench, or
telemetry_bench_smoke) and its own RabbitMQ queue, so it never touches the tests' or `make run`'s data.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench import harness
from bench.fleet import METRICS, Fleet

RESULTS = harness.REPO / "bench" / "results"


@dataclass(frozen=True)
class Size:
    hosts: int               # ingest fleet: hosts × 8 GPUs × 10 metrics per tick
    ingest_ticks: int        # ticks in the ingest/backfill file (13 × 80,000 = 1.04M samples)
    storage_gpus: int        # storage/query fleet
    storage_ticks: int       # 1,000 ticks × 1,000 GPUs × 10 metrics = 10M samples
    queries: int             # timed requests per endpoint
    memory_ticks: tuple[int, int]  # the small and the large streamer-memory files, in ticks of `hosts`
    baseline_runs: int = 3


FULL = Size(hosts=1000, ingest_ticks=13, storage_gpus=1000, storage_ticks=1000, queries=300, memory_ticks=(3, 27))
SMOKE = Size(hosts=25, ingest_ticks=20, storage_gpus=100, storage_ticks=200, queries=30, memory_ticks=(2, 10), baseline_runs=1)
STORAGE_INTERVAL_S = 15  # one GPU × 10 metrics × 1 h = 2,400 samples, as in MEASURED.md


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    details: dict = field(default_factory=dict)


class Run:
    def __init__(self, size: Size, *, smoke: bool, work: Path) -> None:
        self.size = size
        self.smoke = smoke
        self.work = work
        self.figures: list[Figure] = []
        self.problems: list[str] = []
        self.notes: list[str] = []

    def check(self, ok: bool, message: str) -> None:
        """A sanity check: a failure means the benchmark itself is broken, whatever the targets."""
        if not ok:
            self.problems.append(message)
            print(f"  SANITY CHECK FAILED: {message}", flush=True)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        shown = "skipped" if figure.value is None else f"{figure.value:,.4g} {figure.unit}"
        print(f"  {figure.name}: {shown}", flush=True)
        return figure


# --- Baseline: PostgreSQL's own COPY of the same rows into an empty table with the same indexes ---


def copy_baseline(rows_file: Path, count: int) -> float:
    from django.db import connection

    raw = connection.connection
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_copy_baseline")
        cursor.execute("CREATE TABLE bench_copy_baseline (LIKE telemetry_sample INCLUDING ALL)")
    connection.ensure_connection()
    started = time.perf_counter()
    with raw.cursor() as cursor, open(rows_file, "rb") as source:
        with cursor.copy(
            "COPY bench_copy_baseline (gpu_id, metric_id, \"timestamp\", value, label_set_id) FROM STDIN"
        ) as copy:
            while chunk := source.read(1 << 20):
                copy.write(chunk)
    raw.commit()
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_copy_baseline")
        copied = cursor.fetchone()[0]
        cursor.execute("DROP TABLE bench_copy_baseline")
    if copied != count:
        raise RuntimeError(f"baseline COPY stored {copied} rows, expected {count}")
    return count / elapsed


# --- Ingest end to end: streamer → RabbitMQ → collector workers → PostgreSQL ---


def stored_total() -> tuple[int, float]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(value), 0) FROM telemetry_sample")
        count, total = cursor.fetchone()
    return count, float(total)


def ingest(run: Run, csv: Path, expected: int, *, max_per_gpu: int = 0, timeout: float = 600) -> dict:
    """Stream `csv` through real workers; samples/s from the first publish to the last commit."""
    from config.celery import app
    from telemetry.ingest.publisher import BatchPublisher
    from telemetry.ingest.services import SAMPLES_DUPLICATE, SAMPLES_STORED
    from telemetry.ingest.streamer import StreamConfig, Streamer

    harness.queues_purge()
    with harness.Worker(run.work, max_per_gpu=max_per_gpu) as worker:
        already = harness.counter(SAMPLES_STORED) + harness.counter(SAMPLES_DUPLICATE)
        first_publish: list[float] = []
        stop, abort = threading.Event(), threading.Event()

        def publisher_factory() -> BatchPublisher:
            publisher = BatchPublisher(app=app, abort=abort)
            publish = publisher.publish

            def timed(payload: bytes, *, samples: int) -> None:
                if not first_publish:
                    first_publish.append(time.perf_counter())
                publish(payload, samples=samples)

            publisher.publish = timed
            return publisher

        groups = {"collector": worker.pids(), "streamer": {os.getpid()}}
        cpu_before = harness.cpu_seconds(groups)
        config = StreamConfig(source=str(csv), batch_size=20000, flush_interval=5.0, timestamps="source",
                              progress_interval=3600)
        stats = Streamer(config, publisher_factory=publisher_factory, stop=stop, abort=abort).run()
        streamed_at = time.perf_counter()
        deadline = time.monotonic() + timeout
        while harness.counter(SAMPLES_STORED) + harness.counter(SAMPLES_DUPLICATE) - already < stats.samples:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ingest did not finish in {timeout}s; see {worker.log}")
            time.sleep(0.02)
        done = time.perf_counter()
        wall = done - first_publish[0]
        cpu = harness.cpu_share(cpu_before, harness.cpu_seconds(groups), wall)
    run.check(stats.samples == expected, f"streamer sent {stats.samples} samples, expected {expected}")
    return {
        "samples": stats.samples, "batches": stats.batches, "seconds": round(wall, 3),
        "samples_per_s": stats.samples / wall, "streamer_seconds": round(streamed_at - first_publish[0], 3),
        "cpu_share": cpu,
    }


def bench_ingest_and_trim(run: Run, fleet: Fleet, baseline: float, a_csv: Path, a_sum: int, b_csv: Path) -> None:
    count = fleet.samples_per_tick() * run.size.ingest_ticks
    print("ingest, end to end (streamer → RabbitMQ → 2 collector processes → PostgreSQL)", flush=True)
    harness.tables_truncate()
    result = ingest(run, a_csv, count)
    stored, total = stored_total()
    run.check(stored == count, f"ingest stored {stored} samples, expected {count}")
    run.check(total == a_sum, f"ingest stored a value sum of {total}, expected {a_sum}")
    ratio = result["samples_per_s"] / baseline
    run.add(Figure("ingest end to end", result["samples_per_s"], "samples/s", baseline, "COPY, one session", ratio,
                   ">= 0.6 of baseline", ratio >= 0.6, result))

    print("trimming: the same ingest with no limit, then with every GPU at its limit", flush=True)
    untrimmed = ingest(run, b_csv, count)  # table holds A; nothing to trim
    harness.tables_truncate()
    backfill_result = backfill(run, a_csv, count)
    stored, total = stored_total()
    run.check(stored == count, f"backfill stored {stored} samples, expected {count}")
    run.check(total == a_sum, f"backfill stored a value sum of {total}, expected {a_sum}")
    ratio = backfill_result["samples_per_s"] / baseline
    run.add(Figure("backfill (CSV parsing included)", backfill_result["samples_per_s"], "samples/s", baseline,
                   "COPY, one session", ratio, ">= 0.6 of baseline", ratio >= 0.6, backfill_result))
    limit = run.size.ingest_ticks * len(METRICS)  # every GPU holds exactly this many samples of A
    trimmed = ingest(run, b_csv, count, max_per_gpu=limit)
    stored, _ = stored_total()
    run.check(stored == count, f"after trimming {stored} samples remain, expected {count} (each GPU at {limit})")
    ratio = trimmed["samples_per_s"] / untrimmed["samples_per_s"]
    run.add(Figure("ingest with every batch trimming", trimmed["samples_per_s"], "samples/s",
                   untrimmed["samples_per_s"], "same ingest, no limit", ratio, "at most 10% slower (>= 0.9)",
                   ratio >= 0.9, {"trimmed": trimmed, "untrimmed": untrimmed, "max_per_gpu": limit}))
    print("evidence: the collector alone, batches in file order and grouped by GPU", flush=True)
    bench_collector_batch_shape(run, a_csv, baseline, ticks=min(4, run.size.ingest_ticks))


# --- Evidence: the collector alone, on batches in file order and on batches grouped by GPU ---


def bench_collector_batch_shape(run: Run, csv: Path, baseline: float, ticks: int) -> None:
    """`samples_persist` in this one process on the same samples, batched two ways.

    In the DCGM file's order (per tick, per metric, per host) a 20,000-sample batch touches every
    GPU of a large fleet, so the per-GPU bookkeeping is paid per sample; grouping rows by GPU (as a
    streamer could, with one open batch per GPU shard) makes it per ~150 GPUs.
    """
    import zlib

    from django.db import connection

    from telemetry.ingest.batch import BatchBuilder
    from telemetry.ingest.services import samples_persist
    from telemetry.ingest.sources import read_path

    samples = []
    for sample in read_path(csv, on_reject=lambda *args: None):
        samples.append(sample)
        if len(samples) >= ticks * run.size.hosts * 80:
            break
    shards = max(1, len(samples) // 20000)
    rates = {}
    for shape in ("file order", "grouped by GPU"):
        builders: dict[int, BatchBuilder] = {}
        batches = []
        for sample in samples:
            key = zlib.crc32(sample.gpu.uuid.encode()) % shards if shape != "file order" else 0
            builder = builders.setdefault(key, BatchBuilder())
            builder.add(sample)
            if len(builder) >= 20000:
                batches.append(builder.build())
                builders[key] = BatchBuilder()
        batches += [b.build() for b in builders.values() if len(b)]
        harness.tables_truncate()
        statements: dict[str, float] = {}

        def timed(execute, sql, params, many, context):
            began = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                key = " ".join(sql.split())[:48]
                statements[key] = statements.get(key, 0.0) + time.perf_counter() - began

        began = time.perf_counter()
        with connection.execute_wrapper(timed):
            for batch in batches:
                samples_persist(batch=batch, max_per_gpu=0)
        elapsed = time.perf_counter() - began
        top = sorted(statements.items(), key=lambda item: -item[1])[:4]
        rates[shape] = {
            "samples_per_s": len(samples) / elapsed, "batches": len(batches),
            "gpus_per_batch": round(sum(len(b.gpus) for b in batches) / len(batches)),
            "ms_per_batch": round(elapsed / len(batches) * 1000, 1),
            "top_statements_ms_per_batch": {k: round(v / len(batches) * 1000, 1) for k, v in top},
        }
    harness.tables_truncate()
    grouped, ordered = rates["grouped by GPU"], rates["file order"]
    run.add(Figure(f"collector alone, 1 process, batches of {grouped['gpus_per_batch']} GPUs", grouped["samples_per_s"],
                   "samples/s", ordered["samples_per_s"], f"same, file order ({ordered['gpus_per_batch']} GPUs/batch)",
                   grouped["samples_per_s"] / ordered["samples_per_s"], "evidence, not a target", None,
                   {**rates, "share_of_copy_baseline": round(grouped["samples_per_s"] / baseline, 3)}))


# --- Backfill: manage.py backfill of the same samples as a DCGM CSV ---


def backfill(run: Run, csv: Path, expected: int) -> dict:
    started = time.perf_counter()
    cpu_before = harness.cpu_seconds({})
    process = subprocess.Popen(
        [sys.executable, "manage.py", "backfill", str(csv), "--batch-size", "20000", "--max-per-gpu", "0"],
        cwd=harness.REPO, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    stdout, stderr = process.communicate(timeout=900)
    wall = time.perf_counter() - started
    cpu = harness.cpu_share(cpu_before, harness.cpu_seconds({}), wall)
    run.check(process.returncode == 0, f"backfill exited {process.returncode}: {stderr[-2000:]}")
    run.check(f"{expected} stored" in stdout, f"backfill did not report {expected} stored: {stdout.strip()}")
    return {"samples": expected, "seconds": round(wall, 3), "samples_per_s": expected / wall, "cpu_share": cpu,
            "output": stdout.strip()}


# --- Storage: bytes per sample after 10M samples, and the schema that would meet the target ---


def storage_fill(gpus: int, ticks: int) -> datetime:
    """`gpus` GPUs × 10 metrics × `ticks` ticks written in arrival (time) order, as the collector writes them."""
    from django.db import connection

    start = datetime(2025, 7, 18, tzinfo=timezone.utc)
    harness.tables_truncate()
    hosts = -(-gpus // 8)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO telemetry_labelset (digest, container, pod, namespace, labels) "
            "SELECT md5(h::text), '', '', '', jsonb_build_object('instance', 'bench-dgx-' || h || ':9400') "
            "FROM generate_series(0, %s - 1) AS h", [hosts])
        cursor.execute(
            "INSERT INTO telemetry_gpu (uuid, hostname, index, device, model_name, first_seen, last_seen, sample_count) "
            "SELECT 'GPU-bench-' || lpad(g::text, 8, '0'), 'bench-dgx-' || lpad((g / 8)::text, 5, '0'), g %% 8, "
            "'nvidia' || (g %% 8), 'NVIDIA H100 80GB HBM3', %s, %s, %s FROM generate_series(0, %s - 1) AS g",
            [start, start + timedelta(seconds=(ticks - 1) * STORAGE_INTERVAL_S), ticks * len(METRICS), gpus])
        cursor.execute("INSERT INTO telemetry_metric (name) SELECT unnest(%s::text[])", [list(METRICS)])
        chunk = 50
        for first in range(0, ticks, chunk):
            cursor.execute(
                "INSERT INTO telemetry_sample (gpu_id, metric_id, \"timestamp\", value, label_set_id) "
                "SELECT g.id, m.id, %s + t * interval '15 seconds', ((t * 7 + g.id * 13 + m.id * 3) %% 100)::float8, "
                "(g.id - 1) / 8 + 1 "
                "FROM generate_series(%s, %s) AS t CROSS JOIN telemetry_gpu AS g CROSS JOIN telemetry_metric AS m",
                [start, first, min(first + chunk, ticks) - 1])
        cursor.execute("VACUUM ANALYZE telemetry_sample")
    return start


def relation_sizes(cursor, table: str) -> dict:
    cursor.execute(
        "SELECT pg_total_relation_size(%s), pg_relation_size(%s), pg_indexes_size(%s)", [table, table, table])
    total, heap, indexes = cursor.fetchone()
    cursor.execute(
        "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
        [table])
    return {"total": total, "heap": heap, "indexes": indexes, "per_index": dict(cursor.fetchall())}


def bench_storage(run: Run) -> datetime:
    from django.db import connection

    gpus, ticks = run.size.storage_gpus, run.size.storage_ticks
    count = gpus * ticks * len(METRICS)
    print(f"storage: {count:,} samples over {gpus} GPUs", flush=True)
    started = time.perf_counter()
    start = storage_fill(gpus, ticks)
    fill_s = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM telemetry_sample")
        stored = cursor.fetchone()[0]
        sizes = relation_sizes(cursor, "telemetry_sample")
        # The layout that would meet the target, built from the same rows: one row per (GPU, time).
        cursor.execute("DROP TABLE IF EXISTS bench_wide")
        cursor.execute(
            "CREATE TABLE bench_wide AS SELECT gpu_id::integer AS gpu_id, \"timestamp\", "
            "array_agg(value::real ORDER BY metric_id) AS \"values\", min(label_set_id)::integer AS label_set_id "
            "FROM telemetry_sample GROUP BY gpu_id, \"timestamp\" ORDER BY \"timestamp\", gpu_id")
        cursor.execute("CREATE UNIQUE INDEX bench_wide_gpu_time ON bench_wide (gpu_id, \"timestamp\")")
        cursor.execute("VACUUM ANALYZE bench_wide")
        wide = relation_sizes(cursor, "bench_wide")
        cursor.execute("DROP TABLE bench_wide")
    run.check(stored == count, f"storage holds {stored} samples, expected {count}")
    per_sample = sizes["total"] / stored
    run.check(10 < per_sample < 1000, f"{per_sample:.1f} bytes per sample is not plausible")
    run.add(Figure("storage per sample (table + indexes)", per_sample, "bytes", 95.6,
                   "narrow layout, MEASURED.md (reference)", per_sample / 95.6, "<= 40 bytes", per_sample <= 40,
                   {"samples": stored, "fill_seconds": round(fill_s, 1), "sizes": sizes}))
    run.add(Figure("storage per sample, wide (gpu, time, real[10]) prototype", wide["total"] / stored, "bytes",
                   per_sample, "current layout", wide["total"] / stored / per_sample, "evidence, not a target", None,
                   {"sizes": wide}))
    return start


# --- Query: the API next to the raw SQL it runs, on the 10M-sample table ---


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_query(run: Run, start: datetime) -> None:
    import random

    from django.db import connection
    from django.test import Client

    from telemetry.models import Gpu

    client = Client()
    uuids = list(Gpu.objects.values_list("uuid", flat=True))
    span_end = start + timedelta(seconds=(run.size.storage_ticks - 1) * STORAGE_INTERVAL_S)
    probe = client.get(f"/api/v1/gpus/{uuids[0]}/telemetry", {"limit": 1})
    if probe.status_code == 404 and b"No such GPU" not in probe.content:
        note = f"query benchmark skipped: /api/v1/gpus/{{uuid}}/telemetry answered 404 (the API is not there yet)"
        print(f"  {note}", flush=True)
        run.notes.append(note)
        for name in ("query: telemetry, 1 h window, page of 1000", "query: summary over 24 h, 1m buckets"):
            run.add(Figure(name, None, "ms p99", target="p99 < 20 ms and <= 3x raw SQL", details={"skipped": note}))
        return
    rng = random.Random(5)
    window_span = int((span_end - start).total_seconds()) - 3600

    def window_request() -> tuple[str, dict]:
        begin = start + timedelta(seconds=rng.randrange(0, max(1, window_span)))
        return (f"/api/v1/gpus/{rng.choice(uuids)}/telemetry",
                {"start_time": begin.isoformat(), "end_time": (begin + timedelta(hours=1)).isoformat(), "limit": 1000})

    def summary_request() -> tuple[str, dict]:
        return (f"/api/v1/gpus/{rng.choice(uuids)}/telemetry/summary",
                {"start_time": (span_end - timedelta(hours=24)).isoformat(), "end_time": span_end.isoformat(),
                 "bucket": "1m", "agg": "avg,min,max,last"})

    for name, make, rows_key in (("query: telemetry, 1 h window, page of 1000", window_request, "results"),
                                 ("query: summary over 24 h, 1m buckets", summary_request, "series")):
        api_ms, sql_ms, sizes = [], [], []
        for i in range(run.size.queries // 5 + run.size.queries):
            path, params = make()
            captured: list[tuple[str, tuple]] = []

            def capture(execute, sql, sql_params, many, context):
                if "telemetry_sample" in sql:
                    captured.append((sql, sql_params))
                return execute(sql, sql_params, many, context)

            with connection.execute_wrapper(capture):
                began = time.perf_counter()
                response = client.get(path, params)
                api = time.perf_counter() - began
            if response.status_code != 200:
                run.check(False, f"{path} answered {response.status_code}: {response.content[:300]!r}")
                break
            raw = 0.0
            with connection.connection.cursor() as cursor:
                for sql, sql_params in captured:
                    began = time.perf_counter()
                    cursor.execute(sql, sql_params)
                    cursor.fetchall()
                    raw += time.perf_counter() - began
            if i >= run.size.queries // 5:  # the first fifth warms the caches
                api_ms.append(api * 1000)
                sql_ms.append(raw * 1000)
                body = response.json()
                sizes.append(len(body.get(rows_key) or []) if isinstance(body, dict) else 0)
        if not api_ms:
            continue
        run.check(min(sizes) > 0, f"{name}: an empty answer")
        p50, p99 = percentile(api_ms, 0.5), percentile(api_ms, 0.99)
        raw50, raw99 = percentile(sql_ms, 0.5), percentile(sql_ms, 0.99)
        ratio = p99 / raw99 if raw99 else None
        run.add(Figure(name, p99, "ms p99", raw99, "same SQL, raw (p99)", ratio, "p99 < 20 ms and <= 3x raw SQL",
                       p99 < 20 and ratio is not None and ratio <= 3,
                       {"api_p50_ms": round(p50, 3), "api_p99_ms": round(p99, 3), "sql_p50_ms": round(raw50, 3),
                        "sql_p99_ms": round(raw99, 3), "requests": len(api_ms), "p50_ratio": round(p50 / raw50, 2),
                        "rows_or_series_per_answer": statistics.median(sizes)}))


# --- Streamer memory: peak RSS while streaming a small and a large CSV ---


class _HighWater:
    """Polls /proc/PID/status for VmHWM (peak resident set of the running program) until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
            self._done.wait(0.02)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def bench_memory(run: Run, fleet: Fleet) -> None:
    peaks = {}
    for ticks in run.size.memory_ticks:
        csv = run.work / f"memory-{ticks}.csv"
        count, _ = fleet.write_dcgm_csv(csv, ticks=ticks, first_tick=1000)
        size = csv.stat().st_size
        harness.queues_purge()
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "manage.py", "stream", str(csv), "--batch-size", "20000", "--timestamps", "source"],
            cwd=harness.REPO, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        # No collector runs: the batches wait in the bench queue, which is purged; only the streamer is measured.
        # Its peak is VmHWM of the exec'd image, read while it runs: wait4's ru_maxrss would also count the
        # moment after fork, when the child still maps this (much larger) bench process.
        high_water = _HighWater(process.pid)
        stdout = process.stdout.read()
        high_water.stop()
        process.wait()
        wall = time.perf_counter() - started
        harness.queues_purge()
        csv.unlink()
        run.check(process.returncode == 0, f"streamer exited {process.returncode} on a {size} byte file")
        run.check(f"streamed {count} samples" in stdout, f"streamer did not stream {count} samples: {stdout.strip()}")
        peaks[size] = {"peak_rss_mb": high_water.peak_kib / 1024, "samples": count, "seconds": round(wall, 2),
                       "samples_per_s": round(count / wall)}
        print(f"  {size / 2**20:,.0f} MiB CSV: peak RSS {high_water.peak_kib / 1024:.1f} MiB", flush=True)
    (small, small_peak), (large, large_peak) = sorted(peaks.items())
    growth = large_peak["peak_rss_mb"] - small_peak["peak_rss_mb"]
    run.check(10 < large_peak["peak_rss_mb"] < 4096, f"peak RSS {large_peak['peak_rss_mb']:.0f} MiB is not plausible")
    run.add(Figure(f"streamer peak RSS, {large / 2**20:,.0f} MiB CSV", large_peak["peak_rss_mb"], "MiB",
                   small_peak["peak_rss_mb"], f"same, {small / 2**20:,.0f} MiB CSV",
                   large_peak["peak_rss_mb"] / small_peak["peak_rss_mb"], "< 100 MiB, flat in file size (+< 10 MiB)",
                   large_peak["peak_rss_mb"] < 100 and growth < 10,
                   {"by_file_bytes": {str(k): v for k, v in peaks.items()}, "growth_mb": round(growth, 1)}))


# --- Report ---


def table(figures: list[Figure]) -> str:
    def fmt(x, digits=4):
        return "—" if x is None else f"{x:,.{digits}g}"

    rows = [("figure", "value", "baseline", "ratio", "target", "met?")]
    for f in figures:
        rows.append((
            f.name, "skipped" if f.value is None else f"{fmt(f.value)} {f.unit}",
            "—" if f.baseline is None else f"{fmt(f.baseline)} ({f.baseline_label})",
            fmt(f.ratio, 3), f.target, {True: "yes", False: "NO", None: "—"}[f.met],
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the issue 5 benchmarks.")
    parser.add_argument("--smoke", action="store_true", help="a small run that checks the benchmarks, not the targets")
    parser.add_argument("--keep-db", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--work", type=Path, default=None, help="folder for generated files (default: bench/results/work)")
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    db_name = "telemetry_bench_smoke" if args.smoke else "telemetry_bench"
    work = args.work or RESULTS / ("work-smoke" if args.smoke else "work")
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    harness.database_recreate(db_name)
    harness.configure_django(db_name, f"telemetry.ingest.{db_name}")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    run = Run(size, smoke=args.smoke, work=work)
    machine = harness.machine()
    fleet = Fleet(hosts=size.hosts)
    try:
        a_csv, b_csv, a_rows = work / "fleet-a.csv", work / "fleet-b.csv", work / "fleet-a.copy"
        print(f"generating the fleet: {size.hosts} hosts × 8 GPUs × {len(METRICS)} metrics × {size.ingest_ticks} ticks",
              flush=True)
        count, a_sum = fleet.write_dcgm_csv(a_csv, ticks=size.ingest_ticks)
        fleet.write_dcgm_csv(b_csv, ticks=size.ingest_ticks, first_tick=size.ingest_ticks)
        fleet.write_copy_rows(a_rows, ticks=size.ingest_ticks)

        print(f"baseline: COPY of {count:,} sample rows in one session", flush=True)
        baselines = [copy_baseline(a_rows, count) for _ in range(size.baseline_runs)]
        baseline = statistics.median(baselines)
        print(f"  {baseline:,.0f} samples/s (runs: {', '.join(f'{b:,.0f}' for b in baselines)})", flush=True)
        run.check(10_000 < baseline < 10_000_000, f"baseline {baseline:.0f} samples/s is not plausible")
        run.add(Figure("baseline: COPY into an empty sample table", baseline, "samples/s",
                       details={"runs": baselines, "samples": count}))

        bench_ingest_and_trim(run, fleet, baseline, a_csv, a_sum, b_csv)
        for path in (a_csv, b_csv, a_rows):
            path.unlink()
        start = bench_storage(run)
        bench_query(run, start)
        print("streamer memory", flush=True)
        bench_memory(run, fleet)
    except Exception as exc:
        run.problems.append(f"benchmark crashed: {type(exc).__name__}: {exc}")
        raise
    finally:
        from django.db import connection

        connection.close()
        harness.queues_delete()
        if not args.keep_db:
            harness.database_drop(db_name)
        report = {
            "kind": "smoke" if args.smoke else "full",
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - began, 1),
            "machine": machine,
            "size": asdict(size),
            "figures": [asdict(f) for f in run.figures],
            "notes": run.notes,
            "sanity_problems": run.problems,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS / f"{report['kind']}-{stamp}.json"
        out.write_text(json.dumps(report, indent=2, default=str))
        (RESULTS / f"latest-{report['kind']}.json").write_text(out.read_text())
        print()
        print(table(run.figures))
        print(f"\nmachine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
              f"PostgreSQL {machine['postgresql']}; load at start {machine['load_average_at_start']}")
        print(f"results: {out.relative_to(harness.REPO)}  ({report['seconds']} s)")
    if run.problems:
        print("\nsanity checks failed:\n  " + "\n  ".join(run.problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
