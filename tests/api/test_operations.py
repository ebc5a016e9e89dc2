"""/health, /ready and /metrics, in-process and under gunicorn with several workers."""
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_health_answers_without_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_probes_answer_whatever_the_host_header(client):
    # kubelet and Prometheus address the pod by IP, which ALLOWED_HOSTS does not list.
    assert client.get("/health", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/metrics", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/api/v1/gpus", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_ready_when_postgresql_and_rabbitmq_answer(client):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"PostgreSQL": "ok", "RabbitMQ": "ok"}


def test_not_ready_names_rabbitmq_when_the_broker_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens on port 1
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["unreachable"] == ["RabbitMQ"]
    assert "RabbitMQ" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_not_ready_names_postgresql_when_the_database_is_unreachable(client):
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = 1
    try:
        response = client.get("/ready")
        api_response = client.get("/api/v1/gpus")
        # A prepared statement's cursor (selectors.PREPARED) fails the same way as Django's own.
        window_response = client.get("/api/v1/gpus/GPU-5fd4f087-86f3-7a43-b711-4771313afc50/telemetry")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert response.status_code == 503
    assert response.json()["unreachable"] == ["PostgreSQL"]
    # The API says "retry" rather than failing with a 500.
    assert api_response.status_code == 503 and api_response["Retry-After"] == "5"
    assert window_response.status_code == 503 and window_response["Retry-After"] == "5"
    assert client.get("/ready").status_code == 200


def test_metrics_exposes_ingest_counters_lag_and_requests(sample_data, client):
    client.get("/api/v1/gpus")
    text = client.get("/metrics").content.decode()
    assert "telemetry_samples_stored_total 2470.0" in text
    assert "telemetry_samples_duplicate_total 0.0" in text
    assert "telemetry_rows_rejected_total" in text and "telemetry_batches_dead_lettered_total" in text
    lag = next(line for line in text.splitlines() if line.startswith("telemetry_ingest_lag_seconds "))
    assert float(lag.split()[1]) > 86400  # the sample is from July 2025
    assert 'telemetry_api_requests_total{method="GET",route="/api/v1/gpus",status="200"}' in text
    assert 'telemetry_api_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/v1/gpus"}' in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def gunicorn(tmp_path):
    port = _free_port()
    env = {
        **os.environ, "DEBUG": "false", "SECRET_KEY": "gunicorn-test", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "GUNICORN_WORKERS": "3", "GUNICORN_ACCESSLOG": "", "PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi:application", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if _get(f"{base}/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"gunicorn did not start: {process.stderr.read().decode()[-2000:]}")
    yield base
    process.terminate()
    process.wait(timeout=30)


def test_gunicorn_serves_styled_admin_and_sums_request_metrics_over_workers(gunicorn):
    assert _get(f"{gunicorn}/health")[0] == 200
    # whitenoise serves the admin's and the API docs' assets from the app itself.
    status, css = _get(f"{gunicorn}/static/admin/css/base.css")
    assert status == 200 and b"body" in css
    assert _get(f"{gunicorn}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")[0] == 200
    for _ in range(30):  # a new connection each time, spread over the workers
        assert _get(f"{gunicorn}/api/schema/")[0] == 200
    text = _get(f"{gunicorn}/metrics")[1].decode()
    line = next(line for line in text.splitlines() if line.startswith("telemetry_api_requests_total{") and 'route="/api/schema/"' in line)
    assert float(line.rsplit(" ", 1)[1]) == 30.0
