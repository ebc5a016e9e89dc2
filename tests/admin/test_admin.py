"""The admin: GPU list and page (latest values, chart, readings link, MIG instances), read-only readings that stay cheap."""
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from telemetry.admin import BoundedCountPaginator
from telemetry.api import selectors
from telemetry.models import Gpu, Metric, Reading
from tests.api.conftest import GPU_HOST, GPU_UUID, GR_ACTIVE, MIG_HOST, MIG_PARENT, TEMP, UTIL, store_mig_devices, store_samples
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


def test_gpu_page_lists_its_packed_hours_and_shows_one(db, admin_client):
    from datetime import datetime, timezone

    from telemetry.history.packing import hours_pack
    from telemetry.ingest.collector.services import samples_persist
    from tests.history.history_data import history_batch

    samples_persist(batch=history_batch(hours=2), max_per_gpu=0)
    hours_pack(before=datetime(2026, 1, 1, tzinfo=timezone.utc), chunk=10)
    gpu = Gpu.objects.order_by("id").first()
    page = f"/admin/telemetry/gpu/{gpu.pk}/change/"
    html = admin_client.get(page).content.decode()
    packed = html.split('id="gpu-packed"')[1].split("</fieldset>")[0]
    assert "2025-07-18 11:00" in packed and "2025-07-18 10:00" in packed and "?packed_hour=2025-07-18T10:00:00Z" in packed
    assert 'id="gpu-packed-hour"' not in html
    hour = admin_client.get(page, {"packed_hour": "2025-07-18T10:00:00Z"}).content.decode().split('id="gpu-packed-hour"')[1]
    readings = {h.hour.hour: h.readings for h in selectors.gpu_packed_hours(gpu_id=gpu.pk, limit=2)}[10]
    assert hour.count("<tr><td>2025-07-18T10:") == readings > 350  # about one every 10 s, read back from the packed hour
    assert "DCGM_FI_DEV_GPU_TEMP: 40.0" in hour


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


def test_mig_instances_in_the_gpu_list_and_pages(db, admin_client):
    store_mig_devices()
    whole = Gpu.objects.get(uuid=MIG_PARENT, mig_instance=None)
    first = Gpu.objects.get(uuid=MIG_PARENT, mig_instance=1)
    listing = admin_client.get("/admin/telemetry/gpu/").content.decode()
    assert "3 GPUs" in listing and "MIG instance" in listing and "MIG profile" in listing
    assert "3g.40gb" in listing and "1g.10gb" in listing
    # The whole GPU comes before its instances, which share its host and index.
    assert listing.index(f"/admin/telemetry/gpu/{whole.pk}/change/") < listing.index(f"/admin/telemetry/gpu/{first.pk}/change/")
    assert "1 GPU" in admin_client.get("/admin/telemetry/gpu/", {"mig": "no"}).content.decode()
    instances = admin_client.get("/admin/telemetry/gpu/", {"mig": "yes"}).content.decode()
    assert "2 GPUs" in instances and f"/admin/telemetry/gpu/{whole.pk}/change/" not in instances

    page = admin_client.get(f"/admin/telemetry/gpu/{first.pk}/change/").content.decode()
    assert '<strong id="gpu-mig-instance">1</strong>' in page and '<strong id="gpu-mig-profile">3g.40gb</strong>' in page
    assert f'href="/admin/telemetry/gpu/{whole.pk}/change/" id="gpu-parent-link"' in page
    assert f"/api/v1/gpus/{MIG_PARENT}:mig1/telemetry" in page
    parent = admin_client.get(f"/admin/telemetry/gpu/{whole.pk}/change/").content.decode()
    mig_table = parent.split('id="gpu-mig-instances"')[1].split("</fieldset>")[0]
    assert mig_table.count("/admin/telemetry/gpu/") == 2 and "3g.40gb" in mig_table and "1g.10gb" in mig_table
    assert 'id="gpu-mig"' not in parent and f'"/api/v1/gpus/{MIG_PARENT}/telemetry"' in parent


def test_chart_and_latest_of_an_instance_show_the_metrics_it_has(db, admin_client):
    store_mig_devices()
    instance = Gpu.objects.get(uuid=MIG_PARENT, mig_instance=2)
    html = admin_client.get(f"/admin/telemetry/gpu/{instance.pk}/change/").content.decode()
    assert re.findall(r'<g class="metric" data-metric="([^"]+)"', html) == [GR_ACTIVE]
    assert "latest 0.25" in html
    latest = html.split('id="gpu-latest"')[1]
    assert latest.count("<tr><td>DCGM_FI_") == 1 and f"<tr><td>{GR_ACTIVE}</td>" in latest
    whole = Gpu.objects.get(uuid=MIG_PARENT, mig_instance=None)
    html = admin_client.get(f"/admin/telemetry/gpu/{whole.pk}/change/").content.decode()
    assert re.findall(r'<g class="metric" data-metric="([^"]+)"', html) == [TEMP, UTIL]
    # A parent that is no device of its own: the instance's page names it without a link.
    store_samples(uuid="GPU-miggy", hostname=MIG_HOST, index=3, mig_instance=0, mig_profile="7g.80gb",
                  rows=[(GR_ACTIVE, 1_752_868_800_000_000, 1.0)])
    lone = Gpu.objects.get(uuid="GPU-miggy")
    html = admin_client.get(f"/admin/telemetry/gpu/{lone.pk}/change/").content.decode()
    assert "GPU-miggy (not stored as a device of its own)" in html and 'id="gpu-parent-link"' not in html


def test_readings_gpu_filter_names_mig_instances(db, admin_client):
    store_mig_devices()
    html = admin_client.get("/admin/telemetry/reading/", {"gpu__hostname": MIG_HOST}).content.decode()
    assert f"{MIG_HOST}/0 MIG 1" in html and f"{MIG_HOST}/0 MIG 2" in html
    first = Gpu.objects.get(uuid=MIG_PARENT, mig_instance=1)
    assert "20 readings" in admin_client.get("/admin/telemetry/reading/", {"gpu__id__exact": first.pk}).content.decode()
