"""The admin: GPU list and page (latest values, chart, samples link), read-only samples that stay cheap."""
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from telemetry.admin import BoundedCountPaginator
from telemetry.models import Gpu, Metric, Sample
from tests.api.conftest import GPU_HOST, GPU_UUID

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


def test_gpu_page_has_latest_values_chart_and_samples_link(sample_data, admin_client):
    gpu = Gpu.objects.get(uuid=GPU_UUID)
    html = admin_client.get(f"/admin/telemetry/gpu/{gpu.pk}/change/").content.decode()
    assert '<svg id="gpu-chart"' in html
    assert len(re.findall(r'<g class="metric"', html)) == Metric.objects.count() == 10
    assert "Latest values" in html and "156.596" in html  # this GPU's power usage in the sample
    assert f"/admin/telemetry/sample/?gpu__id__exact={gpu.pk}" in html
    assert 'name="_save"' not in html  # read-only


def test_samples_are_read_only(sample_data, admin_client):
    sample = Sample.objects.first()
    assert admin_client.get("/admin/telemetry/sample/add/").status_code == 403
    assert admin_client.post(f"/admin/telemetry/sample/{sample.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Sample.objects.filter(pk=sample.pk).exists()


def test_samples_filter_by_metric_gpu_and_date(sample_data, admin_client):
    util = Metric.objects.get(name="DCGM_FI_DEV_GPU_UTIL")
    html = admin_client.get("/admin/telemetry/sample/", {"metric__id__exact": util.pk}).content.decode()
    assert "247 samples" in html
    gpu = Gpu.objects.get(uuid=GPU_UUID)
    html = admin_client.get("/admin/telemetry/sample/", {"gpu__id__exact": gpu.pk}).content.decode()
    assert "10 samples" in html
    # The date drill-down starts at the sample's only month and lists its days.
    html = admin_client.get("/admin/telemetry/sample/").content.decode()
    assert "timestamp__day=18" in html
    day = admin_client.get("/admin/telemetry/sample/", {"timestamp__year": 2025, "timestamp__month": 7, "timestamp__day": 18})
    assert "2470 samples" in day.content.decode()
    other = admin_client.get("/admin/telemetry/sample/", {"timestamp__year": 2025, "timestamp__month": 7, "timestamp__day": 19})
    assert "0 samples" in other.content.decode()


def test_samples_page_never_counts_or_scans_the_whole_table(sample_data, admin_client, monkeypatch):
    monkeypatch.setattr(BoundedCountPaginator, "LIMIT", 500)
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get("/admin/telemetry/sample/").content.decode()
    assert "500 samples" in html  # the bounded count, not 2,470
    on_samples = [q["sql"] for q in queries.captured_queries if "telemetry_sample" in q["sql"]]
    assert on_samples
    for sql in on_samples:
        assert "LIMIT" in sql, sql  # every query on the sample table is bounded
        assert "DISTINCT" not in sql.upper() and "DATE_TRUNC" not in sql.upper(), sql
    # Column headers do not offer sorting by unindexed columns.
    assert "o=1" not in html and "sortable" not in html
