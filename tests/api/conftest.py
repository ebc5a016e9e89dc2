"""Fixtures for the API tests: the bundled sample stored through the collector's own service."""
from datetime import datetime, timedelta, timezone
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


def store_samples(
    *, uuid: str, hostname: str, index: int, rows: list[tuple], mig_instance: int | None = None, mig_profile: str = "",
):
    """Store samples of one device through the collector's service: each row (metric name, microseconds
    since the epoch, value), or with a fourth item, the reading's (namespace, pod, container)."""
    from telemetry.ingest.wire import GpuInfo, Labels, Sample

    gpu = GpuInfo(uuid, hostname, index, f"nvidia{index}", "NVIDIA H100 80GB HBM3", mig_instance, mig_profile)
    builder = BatchBuilder()
    for metric, ts_us, value, *attribution in rows:
        labels = None
        if attribution and attribution[0]:
            namespace, pod, container = attribution[0]
            labels = Labels(container, pod, namespace, ())
        builder.add(Sample(gpu, metric, ts_us, value, labels))
    return samples_persist(batch=builder.build(), max_per_gpu=0)


# A whole GPU and two MIG instances of it, and the exporter's attributions of their readings.
MIG_PARENT = "GPU-7c1e5a2d-0000-4000-8000-00000000a100"
MIG_HOST = "mig-host-01"
MIG_T0 = datetime(2025, 7, 18, 20, 0, tzinfo=timezone.utc)
UTIL, TEMP, GR_ACTIVE = "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
TEAM_A_OLD = ("team-a", "prep-0", "prep")
TEAM_A = ("team-a", "trainer-1", "trainer")
TEAM_B = ("team-b", "infer-0", "server")


def mig_us(seconds: float) -> int:
    return int((MIG_T0 + timedelta(seconds=seconds)).timestamp() * 1_000_000)


def store_mig_devices():
    """MIG_PARENT as a whole GPU (util and temperature, no attribution) and two MIG instances of it,
    which report DCGM_FI_PROF_GR_ENGINE_ACTIVE only, as DCGM does: instance 1 (3g.40gb) ran team-a's
    prep pod for its first ten readings and its trainer pod since, instance 2 (1g.10gb) team-b's server."""
    store_samples(uuid=MIG_PARENT, hostname=MIG_HOST, index=0, rows=[
        row for step in range(20) for row in ((UTIL, mig_us(step), 50.0 + step), (TEMP, mig_us(step), 40.0))
    ])
    store_samples(uuid=MIG_PARENT, hostname=MIG_HOST, index=0, mig_instance=1, mig_profile="3g.40gb", rows=[
        (GR_ACTIVE, mig_us(step), step / 20, TEAM_A_OLD if step < 10 else TEAM_A) for step in range(20)
    ])
    store_samples(uuid=MIG_PARENT, hostname=MIG_HOST, index=0, mig_instance=2, mig_profile="1g.10gb", rows=[
        (GR_ACTIVE, mig_us(step + 0.5), 0.25, TEAM_B) for step in range(20)
    ])
