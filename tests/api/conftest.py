"""Fixtures for the API tests: the bundled sample stored through the collector's own service."""
from pathlib import Path

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from telemetry.api import selectors
from telemetry.ingest.streamer.batching import BatchBuilder
from telemetry.ingest.collector.services import samples_persist
from tests.ingest.factories import file_batch

SAMPLE_CSV = Path(__file__).resolve().parents[2] / "data" / "dcgm_metrics_20250718_134233.csv"


def load_sample(path: Path = SAMPLE_CSV):
    return samples_persist(batch=file_batch(path), max_per_gpu=0)


@pytest.fixture(autouse=True)
def _fresh_caches():
    # Test transactions roll back, but sequences do not: metric ids differ from test to test.
    cache.clear()
    selectors.metric_names_forget()
    yield
    cache.clear()


@pytest.fixture
def sample_data(db):
    """The sample CSV (2,470 samples, 247 GPUs, 31 hosts, 10 metrics) stored via samples_persist."""
    result = load_sample()
    assert result.stored == 2470
    selectors.metric_names_refresh()
    return result


@pytest.fixture
def api():
    return APIClient()


GPU_UUID = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
GPU_HOST = "mtv5-dgx1-hgpu-031"


def store_samples(*, uuid: str, hostname: str, index: int, rows: list[tuple[str, int, float]]):
    """Store (metric name, microseconds since the epoch, value) samples of one GPU through the collector's service."""
    from telemetry.ingest.wire import GpuInfo, Sample

    gpu = GpuInfo(uuid, hostname, index, f"nvidia{index}", "NVIDIA H100 80GB HBM3")
    builder = BatchBuilder()
    for metric, ts_us, value in rows:
        builder.add(Sample(gpu, metric, ts_us, value, None))
    return samples_persist(batch=builder.build(), max_per_gpu=0)
