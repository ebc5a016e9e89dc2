"""Devices: a whole GPU and MIG instances of it, each with its own id and URLs, and who used them
(the exporter's namespace, pod and container labels) as filters of the lists and of the telemetry."""
from datetime import timedelta

import pytest

from telemetry.models import Gpu, Metric, Reading
from tests.api.conftest import (
    GR_ACTIVE,
    MIG_HOST as HOST,
    MIG_PARENT as PARENT,
    MIG_T0,
    TEAM_A,
    TEAM_A_OLD,
    TEAM_B,
    TEMP,
    UTIL,
    mig_us as us,
    store_mig_devices,
    store_samples,
)

pytestmark = pytest.mark.django_db

MIG1, MIG2 = f"{PARENT}:mig1", f"{PARENT}:mig2"


def iso(seconds: float) -> str:
    return (MIG_T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def mig(db):
    store_mig_devices()


def ids(body) -> list[str]:
    return [g["id"] for g in body["results"]]


def samples_of(mig_instance: int | None, *, pods: set[str] | None = None) -> list[tuple[str, str, float]]:
    """(time, metric, value) of one device's stored samples, of readings by those pods if given, by (time, metric id)."""
    names = dict(Metric.objects.values_list("id", "name"))
    readings = Reading.objects.filter(gpu__uuid=PARENT, gpu__mig_instance=mig_instance).select_related("label_set")
    rows = sorted(
        (r.timestamp, metric_id, value) for r in readings if pods is None or (r.label_set and r.label_set.pod in pods)
        for metric_id, value in r.samples()
    )
    return [(ts.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z", names[m], v) for ts, m, v in rows]


def as_rows(results):
    return [(r["timestamp"], r["metric"], r["value"]) for r in results]


def walk(api, url, params):
    page, rows = api.get(url, params).json(), []
    while True:
        rows += as_rows(page["results"])
        if not page["next"]:
            return rows
        page = api.get(page["next"]).json()


def assert_bad(response, parameter):
    assert response.status_code == 400, response.content
    body = response.json()
    assert parameter in body["errors"] and parameter in body["detail"], body


# --- Devices and their ids ---


def test_list_has_the_whole_gpu_then_its_instances_each_with_its_own_id(mig, api):
    body = api.get("/api/v1/gpus").json()
    assert body["count"] == 3
    whole, first, second = body["results"]
    assert ids(body) == [PARENT, MIG1, MIG2]
    assert set(whole) == {
        "id", "uuid", "mig_instance", "mig_profile", "parent", "hostname", "index", "device", "model",
        "namespace", "pod", "container", "first_seen", "last_seen", "sample_count",
    }
    assert (whole["uuid"], whole["mig_instance"], whole["mig_profile"], whole["parent"]) == (PARENT, None, None, None)
    assert (first["uuid"], first["mig_instance"], first["mig_profile"], first["parent"]) == (PARENT, 1, "3g.40gb", PARENT)
    assert (second["mig_instance"], second["mig_profile"], second["parent"]) == (2, "1g.10gb", PARENT)
    assert [g["sample_count"] for g in body["results"]] == [40, 20, 20]
    assert {g["hostname"] for g in body["results"]} == {HOST} and {g["index"] for g in body["results"]} == {0}


def test_mig_and_parent_filters(mig, api):
    store_samples(uuid="GPU-other", hostname=HOST, index=1, rows=[(UTIL, us(0), 1.0)])
    assert ids(api.get("/api/v1/gpus", {"mig": "true"}).json()) == [MIG1, MIG2]
    assert ids(api.get("/api/v1/gpus", {"mig": "false"}).json()) == [PARENT, "GPU-other"]
    assert ids(api.get("/api/v1/gpus", {"parent": PARENT}).json()) == [MIG1, MIG2]
    assert ids(api.get("/api/v1/gpus", {"parent": "GPU-other"}).json()) == []
    assert ids(api.get("/api/v1/gpus", {"parent": PARENT, "mig": "false"}).json()) == []
    assert ids(api.get("/api/v1/gpus", {"ordering": "-index"}).json())[0] == "GPU-other"
    assert ids(api.get(f"/api/v1/hosts/{HOST}/gpus").json()) == [PARENT, MIG1, MIG2, "GPU-other"]
    assert [(h["hostname"], h["gpu_count"]) for h in api.get("/api/v1/hosts").json()["results"]] == [(HOST, 4)]


def test_detail_by_id_and_unknown_ids_are_json_404s(mig, api):
    whole = api.get(f"/api/v1/gpus/{PARENT}").json()
    assert whole["id"] == PARENT and whole["mig_instance"] is None and whole["sample_count"] == 40
    instance = api.get(f"/api/v1/gpus/{MIG2}").json()
    assert (instance["id"], instance["uuid"], instance["mig_instance"], instance["parent"]) == (MIG2, PARENT, 2, PARENT)
    # Not a device, not its id as written (one URL per device), beyond a smallint, or digits int() does not read.
    for unknown in (f"{PARENT}:mig3", f"{PARENT}:mig01", f"{PARENT}:mig99999999999999999999", f"{PARENT}:mig²",
                    f"{PARENT}:mig", "GPU-unknown:mig1"):
        for suffix in ("", "/telemetry", "/telemetry/summary", "/latest"):
            response = api.get(f"/api/v1/gpus/{unknown}{suffix}")
            assert response.status_code == 404 and response["Content-Type"] == "application/json", (unknown, suffix)
            assert unknown in response.json()["detail"]


def test_a_parent_that_reports_only_through_its_instances(db, api):
    store_samples(uuid="GPU-miggy", hostname=HOST, index=3, mig_instance=0, mig_profile="7g.80gb",
                  rows=[(GR_ACTIVE, us(0), 1.0)])
    [entry] = api.get("/api/v1/gpus").json()["results"]
    assert (entry["id"], entry["parent"]) == ("GPU-miggy:mig0", "GPU-miggy")
    assert api.get("/api/v1/gpus/GPU-miggy").status_code == 404
    assert api.get("/api/v1/gpus/GPU-miggy:mig0/latest").json()["results"] == [
        {"timestamp": iso(0), "metric": GR_ACTIVE, "value": 1.0},
    ]


def test_telemetry_of_an_instance_is_its_own_and_the_whole_gpus_url_is_unchanged(mig, api):
    instance = api.get(f"/api/v1/gpus/{MIG1}/telemetry").json()
    assert instance["gpu"] == MIG1
    assert as_rows(instance["results"]) == samples_of(1) and len(instance["results"]) == 20
    assert {r["metric"] for r in instance["results"]} == {GR_ACTIVE}
    whole = api.get(f"/api/v1/gpus/{PARENT}/telemetry").json()
    assert whole["gpu"] == PARENT and as_rows(whole["results"]) == samples_of(None) and len(whole["results"]) == 40
    assert walk(api, f"/api/v1/gpus/{MIG2}/telemetry", {"limit": 3, "order": "desc"}) == samples_of(2)[::-1]


def test_summary_and_latest_of_an_instance_list_the_metrics_it_has(mig, api):
    assert Metric.objects.filter(name=UTIL).exists()  # another device reports it; this one does not
    summary = api.get(f"/api/v1/gpus/{MIG1}/telemetry/summary", {"bucket": "1h", "agg": "count,max"}).json()
    assert summary["gpu"] == MIG1
    assert summary["series"] == [{"metric": GR_ACTIVE, "points": [{"time": "2025-07-18T20:00:00Z", "count": 20, "max": 0.95}]}]
    latest = api.get(f"/api/v1/gpus/{MIG1}/latest").json()
    assert latest == {"gpu": MIG1, "results": [{"timestamp": iso(19), "metric": GR_ACTIVE, "value": 0.95}]}
    whole = api.get(f"/api/v1/gpus/{PARENT}/latest").json()
    assert [r["metric"] for r in whole["results"]] == [TEMP, UTIL]
    # Asking for a metric the device never reported is no error: it has no series.
    only_util = api.get(f"/api/v1/gpus/{MIG1}/telemetry/summary", {"metric": UTIL}).json()
    assert only_util["series"] == []


# --- Who used the device: namespace, pod, container ---


def test_list_entries_and_filters_go_by_the_newest_reading(mig, api):
    body = api.get("/api/v1/gpus").json()
    attribution = {g["id"]: (g["namespace"], g["pod"], g["container"]) for g in body["results"]}
    assert attribution == {PARENT: (None, None, None), MIG1: TEAM_A, MIG2: TEAM_B}
    assert ids(api.get("/api/v1/gpus", {"namespace": "team-a"}).json()) == [MIG1]
    assert ids(api.get("/api/v1/gpus", {"namespace": "team-a", "pod": "trainer-1"}).json()) == [MIG1]
    assert ids(api.get("/api/v1/gpus", {"namespace": "team-b", "pod": "trainer-1"}).json()) == []
    assert ids(api.get("/api/v1/gpus", {"container": "server"}).json()) == [MIG2]
    # Instance 1 ran prep-0 before: its older readings carry it, its newest does not.
    assert ids(api.get("/api/v1/gpus", {"pod": "prep-0"}).json()) == []
    assert ids(api.get("/api/v1/gpus", {"pod": "trainer-1", "mig": "true", "parent": PARENT}).json()) == [MIG1]
    # The pod moves: the list follows the newest reading.
    store_samples(uuid=PARENT, hostname=HOST, index=0, mig_instance=2, mig_profile="1g.10gb",
                  rows=[(GR_ACTIVE, us(60), 0.5, TEAM_A_OLD)])
    assert ids(api.get("/api/v1/gpus", {"pod": "prep-0"}).json()) == [MIG2]
    assert ids(api.get("/api/v1/gpus", {"namespace": "team-b"}).json()) == []
    assert api.get(f"/api/v1/gpus/{MIG2}").json()["pod"] == "prep-0"


def test_telemetry_of_the_readings_that_carry_a_pod_keeps_its_cursor_pages(mig, api):
    url = f"/api/v1/gpus/{MIG1}/telemetry"
    prep = api.get(url, {"pod": "prep-0"}).json()
    assert as_rows(prep["results"]) == samples_of(1, pods={"prep-0"}) and len(prep["results"]) == 10
    assert as_rows(api.get(url, {"namespace": "team-a"}).json()["results"]) == samples_of(1)
    assert as_rows(api.get(url, {"namespace": "team-a", "container": "trainer"}).json()["results"]) == samples_of(1, pods={"trainer-1"})
    assert api.get(url, {"namespace": "team-b"}).json()["results"] == []
    # The whole GPU's readings carry no attribution.
    assert api.get(f"/api/v1/gpus/{PARENT}/telemetry", {"pod": "prep-0"}).json()["results"] == []
    # Pages of a filtered window: the links keep the filter, and the walk is the filtered samples in order.
    first = api.get(url, {"pod": "trainer-1", "limit": 3}).json()
    assert "pod=trainer-1" in first["next"]
    assert walk(api, url, {"pod": "trainer-1", "limit": 3}) == samples_of(1, pods={"trainer-1"})
    assert walk(api, url, {"pod": "prep-0", "limit": 4, "order": "desc"}) == samples_of(1, pods={"prep-0"})[::-1]
    last = api.get(url, {"pod": "trainer-1", "limit": 4, "order": "desc"}).json()
    back = api.get(api.get(last["next"]).json()["previous"]).json()
    assert back["results"] == last["results"]


def test_summary_of_the_readings_that_carry_a_pod(mig, api):
    url = f"/api/v1/gpus/{MIG1}/telemetry/summary"
    params = {"bucket": "1h", "agg": "count,min,max"}
    [prep] = api.get(url, {**params, "pod": "prep-0"}).json()["series"]
    assert prep["points"] == [{"time": "2025-07-18T20:00:00Z", "count": 10, "min": 0.0, "max": 0.45}]
    [trainer] = api.get(url, {**params, "namespace": "team-a", "pod": "trainer-1", "container": "trainer"}).json()["series"]
    assert trainer["points"] == [{"time": "2025-07-18T20:00:00Z", "count": 10, "min": 0.5, "max": 0.95}]
    assert api.get(url, {**params, "pod": "infer-0"}).json()["series"] == []
    # An empty value is no filter, as in the list.
    assert api.get(url, {**params, "pod": ""}).json()["series"][0]["points"][0]["count"] == 20


@pytest.mark.parametrize(
    "path, params, parameter",
    [
        ("", {"mig": "maybe"}, "mig"),
        ("", {"mig": "1"}, "mig"),
        ("", {"pod": "a\x00b"}, "pod"),
        ("", {"namespace": "\x00"}, "namespace"),
        ("", {"parent": "GPU-\x00"}, "parent"),
        ("", {"container": "c\x00"}, "container"),
        (f"/{MIG1}/telemetry", {"pod": "x" * 256}, "pod"),
        (f"/{MIG1}/telemetry", {"namespace": "team\x00a"}, "namespace"),
        (f"/{MIG1}/telemetry", {"container": "x" * 300}, "container"),
        (f"/{MIG1}/telemetry/summary", {"pod": "p\x00"}, "pod"),
        (f"/{MIG1}/telemetry/summary", {"namespace": "n" * 256}, "namespace"),
    ],
)
def test_bad_filter_values_are_a_400_naming_the_parameter(mig, api, path, params, parameter):
    assert_bad(api.get(f"/api/v1/gpus{path}", params), parameter)


def test_the_ids_in_the_list_are_the_ones_the_urls_take(mig, api):
    for entry in api.get("/api/v1/gpus").json()["results"]:
        gpu = Gpu.objects.get(uuid=entry["uuid"], mig_instance=entry["mig_instance"])
        assert entry["id"] == gpu.device_id
        assert api.get(f"/api/v1/gpus/{entry['id']}").json() == entry
        assert api.get(f"/api/v1/gpus/{entry['id']}/telemetry", {"limit": 1}).json()["gpu"] == entry["id"]
