"""Prometheus metrics: the API's own request counters and latencies, and the collector's shared counters.

Request metrics live in prometheus-client objects. Under gunicorn (PROMETHEUS_MULTIPROC_DIR set)
each worker writes them to files in that folder and a scrape merges every worker's files, so the
totals add up whichever worker answers. The collector's counters (samples stored, duplicates, rows
rejected, batches dead-lettered) are rows of the database's IngestCounter table, which every
collector process adds to in the same transaction style, so one read gives the cluster-wide total.
"""
import os
import time

from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from telemetry.api import selectors
from telemetry.models import IngestCounter

# Metrics of this process; in multiprocess mode their values go to PROMETHEUS_MULTIPROC_DIR.
API_REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "telemetry_api_requests", "HTTP requests answered by the API, by method, route and status.",
    ["method", "route", "status"], registry=API_REGISTRY,
)
LATENCY = Histogram(
    "telemetry_api_request_duration_seconds", "Time to answer an HTTP request, by method and route.",
    ["method", "route"], registry=API_REGISTRY,
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

INGEST_COUNTERS = {
    IngestCounter.SAMPLES_STORED: "Samples stored by the collectors.",
    IngestCounter.SAMPLES_DUPLICATE: "Samples ignored because they were already stored.",
    IngestCounter.ROWS_REJECTED: "Source rows rejected as malformed.",
    IngestCounter.BATCHES_DEAD_LETTERED: "Batches that could never be stored and went to the dead-letter queue.",
}


class IngestCollector:
    """Read at scrape time from the database, so every collector process is counted once."""

    def collect(self):
        up = GaugeMetricFamily("telemetry_database_up", "1 when the API could read the ingest counters from the database.")
        try:
            values = selectors.ingest_counters()
            newest = selectors.ingest_newest_sample_time()
        except DatabaseError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, help_text in INGEST_COUNTERS.items():
            family = CounterMetricFamily(f"telemetry_{name}", help_text)
            family.add_metric([], values[name])
            yield family
        lag = GaugeMetricFamily(
            "telemetry_ingest_lag_seconds", "Now minus the time of the newest stored sample (NaN when none is stored)."
        )
        lag.add_metric([], (timezone.now() - newest).total_seconds() if newest else float("nan"))
        yield lag


class _ThisProcess:
    def collect(self):
        return API_REGISTRY.collect()


def metrics_text() -> bytes:
    registry = CollectorRegistry(auto_describe=True)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(IngestCollector())
    return generate_latest(registry)


def request_observe(*, method: str, route: str, status: int, started: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(time.perf_counter() - started)
