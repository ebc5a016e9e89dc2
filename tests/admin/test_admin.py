"""The admin: GPU list and page (latest values, chart, readings link), read-only readings that stay cheap."""
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from telemetry.admin import BoundedCountPaginator
from telemetry.models import Gpu, Metric, Reading
from tests.api.conftest import GPU_HOST, GPU_UUID
from tests.samples import stored_count

pytestmark = pytest.mark.django_db


def test_gpu_list_shows_host_model_index_last_seen_and_stale_marker(sample_data, admin_client):
    html = admin_client.get("/admin/telemetry/gpu/").content.decode()
    assert "247 GPUs" in html
    for column in ("Hostname", "Index", "Model name", "Last seen", "Stale"):
        assert column in html
    # The sample is from 2025: every GPU is stale.
    assert html.count('alt="True"') == 100  # first page of 100, all stale
    fresh = admin_client.get("/admin/telemetry/gpu/", {"stale": "no"}).content.decode()
    assert "0 GPUs" in fresh


def test_gpu_list_filters_by_host_and_model_and_searches(sample_data, admin_client):
    on_host = Gpu.objects.filter(hostname=GPU_HOST).count()
    assert f"{on_host} GPUs" in admin_client.get("/admin/telemetry/gpu/", {"hostname": GPU_HOST}).content.decode()
    model = Gpu.objects.first().model_name
    count = Gpu.objects.filter(model_name=model).count()
    assert f"{count} GPU" in admin_client.get("/admin/telemetry/gpu/", {"model_name": model}).content.decode()
    found = admin_client.get("/admin/telemetry/gpu/", {"q": GPU_UUID[:16]}).content.decode()
    assert "1 GPU" in found and GPU_UUID in found
    assert f"{on_host} GPUs" in admin_client.get("/admin/telemetry/gpu/", {"q": GPU_HOST}).content.decode()


def test_gpu_page_has_latest_values_chart_and_readings_link(sample_data, admin_client):
    gpu = Gpu.objects.get(uuid=GPU_UUID)
    html = admin_client.get(f"/admin/telemetry/gpu/{gpu.pk}/change/").content.decode()
    assert '<svg id="gpu-chart"' in html
    assert len(re.findall(r'<g class="metric"', html)) == Metric.objects.count() == 10
    assert "Latest values" in html and "156.596" in html  # this GPU's power usage in the sample
    # Its ten metrics' latest values, each a row, though they came in four readings.
    latest = html.split('id="gpu-latest"')[1]
    assert latest.count("<tr><td>DCGM_FI_") == 10
    assert f"/admin/telemetry/reading/?gpu__id__exact={gpu.pk}" in html
    assert 'name="_save"' not in html  # read-only


def test_readings_are_read_only_and_show_values_by_metric_name(sample_data, admin_client):
    reading = Reading.objects.filter(gpu__uuid=GPU_UUID).order_by("timestamp").first()
    assert admin_client.get("/admin/telemetry/reading/add/").status_code == 403
    assert admin_client.post(f"/admin/telemetry/reading/{reading.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Reading.objects.filter(pk=reading.pk).exists()
    page = admin_client.get(f"/admin/telemetry/reading/{reading.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "DCGM_FI_DEV_POWER_USAGE: 156.596" in html and 'name="_save"' not in html


def test_readings_filter_by_host_gpu_and_date(sample_data, admin_client):
    gpu = Gpu.objects.get(uuid=GPU_UUID)
    html = admin_client.get("/admin/telemetry/reading/", {"gpu__id__exact": gpu.pk}).content.decode()
    # The sample has this GPU's ten samples in four readings, listed newest first with their values by name.
    assert "4 readings" in html and stored_count(gpu=gpu) == 10
    assert html.index("2025-07-18 20:42:37") < html.index("2025-07-18 20:42:34")
    assert "DCGM_FI_DEV_POWER_USAGE: 156.596" in html
    assert admin_client.get("/admin/telemetry/reading/", {"gpu__uuid__exact": GPU_UUID}).content.decode().count(
        'class="metric-values"') == 4
    on_host = Reading.objects.filter(gpu__hostname=GPU_HOST).count()
    html = admin_client.get("/admin/telemetry/reading/", {"gpu__hostname": GPU_HOST}).content.decode()
    assert f"{on_host} readings" in html and on_host < Reading.objects.count()
    # With a host chosen, the GPU filter lists that host's GPUs.
    assert html.count("?gpu__hostname=") and f"gpu__id__exact={gpu.pk}" in html
    # An unknown GPU lists nothing (not every GPU's readings); a malformed id is the admin's bad-filter redirect.
    assert "0 readings" in admin_client.get("/admin/telemetry/reading/", {"gpu__id__exact": 2**31 - 1}).content.decode()
    assert "0 readings" in admin_client.get("/admin/telemetry/reading/", {"gpu__hostname": "no-such-host"}).content.decode()
    assert admin_client.get("/admin/telemetry/reading/", {"gpu__id__exact": "abc"})["Location"].endswith("?e=1")
    # The date drill-down starts at the sample's only month and lists its days.
    html = admin_client.get("/admin/telemetry/reading/").content.decode()
    assert "timestamp__day=18" in html
    july = {"timestamp__year": 2025, "timestamp__month": 7}
    day = admin_client.get("/admin/telemetry/reading/", {**july, "timestamp__day": 18})
    assert f"{Reading.objects.count()} readings" in day.content.decode()
    other = admin_client.get("/admin/telemetry/reading/", {**july, "timestamp__day": 19})
    assert "0 readings" in other.content.decode()


def test_readings_page_never_counts_or_scans_the_whole_table(sample_data, admin_client, monkeypatch):
    monkeypatch.setattr(BoundedCountPaginator, "LIMIT", 500)
    assert Reading.objects.count() > 500
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get("/admin/telemetry/reading/").content.decode()
    assert "500 readings" in html  # the bounded count, not all of them
    on_readings = [q["sql"] for q in queries.captured_queries if "telemetry_reading" in q["sql"]]
    assert on_readings
    for sql in on_readings:
        assert "LIMIT" in sql, sql  # every query on the reading table is bounded
        assert "DISTINCT" not in sql.upper() and "DATE_TRUNC" not in sql.upper(), sql
        assert 'ORDER BY "telemetry_reading"."id" DESC' in sql or "ORDER BY" not in sql, sql  # the primary key, newest first
    # Column headers do not offer sorting by unindexed columns.
    assert "o=1" not in html and "sortable" not in html
    # One GPU's readings: its (gpu, timestamp) index, newest first (a page that fits needs no LIMIT).
    gpu = Gpu.objects.get(uuid=GPU_UUID)
    with CaptureQueriesContext(connection) as queries:
        admin_client.get("/admin/telemetry/reading/", {"gpu__id__exact": gpu.pk})
    listing = [q["sql"] for q in queries.captured_queries if "telemetry_reading" in q["sql"] and "ORDER BY" in q["sql"]]
    by_index = f'"gpu_id" = {gpu.pk} ORDER BY "telemetry_reading"."gpu_id" DESC, "telemetry_reading"."timestamp" DESC'
    assert listing and all(by_index in sql for sql in listing), listing
