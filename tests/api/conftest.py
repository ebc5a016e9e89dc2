"""Fixtures for the API tests: the bundled sample stored through the collector's own service."""
from pathlib import Path

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from telemetry.api import selectors
from telemetry.ingest.batch import BatchBuilder
from telemetry.ingest.services import samples_persist
from telemetry.ingest.sources import read_path

SAMPLE_CSV = Path(__file__).resolve().parents[2] / "data" / "dcgm_metrics_20250718_134233.csv"


def load_sample(path: Path = SAMPLE_CSV):
    builder = BatchBuilder()
    for sample in read_path(path, on_reject=lambda *args: None):
        builder.add(sample)
    return samples_persist(batch=builder.build(), max_per_gpu=0)


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
