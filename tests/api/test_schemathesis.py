"""Property-based tests of the live schema (schemathesis): no input gives a 500 or breaks the schema."""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from config.wsgi import application
from tests.api.conftest import GPU_HOST, GPU_UUID, MIG_T0, store_samples

pytestmark = pytest.mark.django_db

# The schema as the running app serves it, called in-process through the WSGI app (real PostgreSQL).
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
# Valid and invalid inputs alike (NUL bytes included), a fixed seed-free database-less run each time.
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], allow_x00=True, database="none", max_examples=60
)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def keep_test_connection():
    """Like Django's test client: a request's end must not close the test's transaction's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def mig_instance_of_the_example(sample_data):
    """A MIG instance of the schema's example GPU, its readings attributed, so the examples' MIG id and filters find data."""
    start = int(MIG_T0.timestamp()) * 1_000_000
    store_samples(uuid=GPU_UUID, hostname=GPU_HOST, index=0, mig_instance=1, mig_profile="3g.40gb", rows=[
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", start + step * 1_000_000, 0.5, ("ml-training", "trainer-7d9f8c6b5-x2vqp", "trainer"))
        for step in range(30)
    ])


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_answers_every_input_within_its_schema(case, sample_data, mig_instance_of_the_example, keep_test_connection):
    response = case.call()
    case.validate_response(response, checks=CHECKS)
