"""Fixtures for the admin tests: the bundled sample stored through the collector's service."""
import pytest

from telemetry.api import selectors
from tests.api.conftest import load_sample


@pytest.fixture(autouse=True)
def _fresh_metric_names():
    selectors.metric_names_forget()
    yield
    selectors.metric_names_forget()


@pytest.fixture
def sample_data(db):
    result = load_sample()
    assert result.stored == 2470
    return result
