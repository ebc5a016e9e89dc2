"""The read endpoints against PostgreSQL holding the bundled sample (stored by the collector's service)."""
import random
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import override_settings

from telemetry.models import Gpu, Metric, Reading
from telemetry.times import to_microseconds
from tests.api.conftest import GPU_HOST, GPU_UUID, store_samples

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 7, 18, 20, 42, 34, tzinfo=timezone.utc)
US = 1_000_000


def us(moment: datetime) -> int:
    return int(moment.timestamp()) * US


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC, the API's form: no fraction when whole seconds, else without trailing zeros."""
    text = moment.astimezone(timezone.utc).isoformat().replace("+00:00", "")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "Z"


def db_rows(uuid, start=None, end=None, metrics=None):
    """The GPU's samples from its readings as the API writes them: (time, metric, value) by (time, metric id)."""
    names = dict(Metric.objects.values_list("id", "name"))
    readings = Reading.objects.filter(gpu__uuid=uuid)
    if start:
        readings = readings.filter(timestamp__gte=start)
    if end:
        readings = readings.filter(timestamp__lte=end)
    samples = sorted(
        (reading.timestamp, metric_id, value) for reading in readings
        for metric_id, value in reading.samples() if not metrics or names[metric_id] in metrics
    )
    return [(iso(ts), names[metric_id], value) for ts, metric_id, value in samples]


def as_rows(results):
    return [(r["timestamp"], r["metric"], r["value"]) for r in results]


def assert_bad(response, parameter):
    assert response.status_code == 400, response.content
    body = response.json()
    assert parameter in body["errors"], body
    assert body["errors"][parameter] and all(isinstance(m, str) and m for m in body["errors"][parameter])
    assert parameter in body["detail"]


# --- GPUs ---


def test_gpus_lists_every_gpu_of_the_sample(sample_data, api):
    body = api.get("/api/v1/gpus").json()
    assert body["count"] == 247
    assert len(body["results"]) == 247
    assert len({g["uuid"] for g in body["results"]}) == 247
    first = body["results"][0]
    assert set(first) == {
        "id", "uuid", "mig_instance", "mig_profile", "parent", "hostname", "index", "device", "model",
        "namespace", "pod", "container", "first_seen", "last_seen", "sample_count",
    }
    # The sample has whole GPUs only, each with its UUID as its id, and no attribution.
    assert all(g["id"] == g["uuid"] and g["mig_instance"] is g["parent"] is g["mig_profile"] is None for g in body["results"])
    assert all(g["namespace"] is g["pod"] is g["container"] is None for g in body["results"])
    assert [(g["hostname"], g["index"]) for g in body["results"]] == sorted((g["hostname"], g["index"]) for g in body["results"])


def test_gpus_filter_by_hostname_and_model(sample_data, api):
    on_host = api.get("/api/v1/gpus", {"hostname": GPU_HOST}).json()
    assert on_host["count"] == Gpu.objects.filter(hostname=GPU_HOST).count() > 0
    assert {g["hostname"] for g in on_host["results"]} == {GPU_HOST}
    h100 = api.get("/api/v1/gpus", {"model": "NVIDIA H100 80GB HBM3"}).json()
    assert h100["count"] == Gpu.objects.filter(model_name="NVIDIA H100 80GB HBM3").count() > 0
    assert api.get("/api/v1/gpus", {"model": "no such model"}).json()["count"] == 0


def test_gpus_seen_since_and_stale(sample_data, api):
    assert api.get("/api/v1/gpus", {"seen_since": "2025-07-18T20:42:00Z"}).json()["count"] == 247
    assert api.get("/api/v1/gpus", {"seen_since": "2025-07-18T20:43:00Z"}).json()["count"] == 0
    # The sample is from 2025: every GPU has been silent for more than a day, none for ten years.
    assert api.get("/api/v1/gpus", {"stale": 86400}).json()["count"] == 247
    assert api.get("/api/v1/gpus", {"stale": 10 * 365 * 86400}).json()["count"] == 0
    store_samples(uuid="GPU-fresh", hostname="fresh-host", index=0,
                  rows=[("DCGM_FI_DEV_GPU_UTIL", us(datetime.now(timezone.utc)), 1.0)])
    stale = api.get("/api/v1/gpus", {"stale": 3600}).json()
    assert stale["count"] == 247 and "GPU-fresh" not in {g["uuid"] for g in stale["results"]}


def test_gpus_ordering_and_pages(sample_data, api):
    newest_first = api.get("/api/v1/gpus", {"ordering": "-index,uuid"}).json()["results"]
    assert [(-g["index"], g["uuid"]) for g in newest_first] == sorted((-g["index"], g["uuid"]) for g in newest_first)
    pages = [api.get("/api/v1/gpus", {"limit": 100, "offset": offset}).json() for offset in (0, 100, 200)]
    assert [len(p["results"]) for p in pages] == [100, 100, 47]
    assert len({g["uuid"] for p in pages for g in p["results"]}) == 247
    assert pages[2]["next"] is None and pages[0]["next"].endswith("offset=100")


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"seen_since": "yesterday"}, "seen_since"),
        ({"stale": "-1"}, "stale"),
        ({"stale": "1e400"}, "stale"),
        ({"ordering": "value"}, "ordering"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5001"}, "limit"),
        ({"offset": "x"}, "offset"),
    ],
)
def test_gpus_bad_input_is_a_400_naming_the_parameter(sample_data, api, params, parameter):
    assert_bad(api.get("/api/v1/gpus", params), parameter)


def test_gpu_detail_and_unknown_uuid(sample_data, api):
    gpu = api.get(f"/api/v1/gpus/{GPU_UUID}").json()
    assert gpu["uuid"] == GPU_UUID and gpu["hostname"] == GPU_HOST and gpu["index"] == 0
    assert gpu["first_seen"] == "2025-07-18T20:42:34Z" and gpu["last_seen"] == "2025-07-18T20:42:37Z"
    missing = api.get("/api/v1/gpus/GPU-00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/json"
    assert "GPU-00000000" in missing.json()["detail"]


# --- Hosts and metrics ---


def test_hosts_and_their_gpus(sample_data, api):
    hosts = api.get("/api/v1/hosts").json()
    assert hosts["count"] == 31
    assert sum(h["gpu_count"] for h in hosts["results"]) == 247
    gpus = api.get(f"/api/v1/hosts/{GPU_HOST}/gpus").json()
    assert gpus["count"] == next(h["gpu_count"] for h in hosts["results"] if h["hostname"] == GPU_HOST)
    assert [g["index"] for g in gpus["results"]] == sorted(g["index"] for g in gpus["results"])
    unknown = api.get("/api/v1/hosts/no-such-host/gpus")
    assert unknown.status_code == 404 and "no-such-host" in unknown.json()["detail"]


def test_metrics_count_first_and_last(sample_data, api):
    body = api.get("/api/v1/metrics").json()
    assert len(body["results"]) == 10
    assert all(m["sample_count"] == 247 for m in body["results"])
    util = next(m for m in body["results"] if m["name"] == "DCGM_FI_DEV_GPU_UTIL")
    assert util["first"] == util["last"] == "2025-07-18T20:42:34Z"


def test_metrics_totals_are_cached_for_the_configured_time(sample_data, api, settings):
    api.get("/api/v1/metrics")
    store_samples(uuid=GPU_UUID, hostname=GPU_HOST, index=0, rows=[("DCGM_FI_DEV_GPU_UTIL", us(T0 + timedelta(hours=1)), 5.0)])
    cached = next(m for m in api.get("/api/v1/metrics").json()["results"] if m["name"] == "DCGM_FI_DEV_GPU_UTIL")
    assert cached["sample_count"] == 247
    settings.API_METRICS_CACHE_SECONDS = 0
    fresh = next(m for m in api.get("/api/v1/metrics").json()["results"] if m["name"] == "DCGM_FI_DEV_GPU_UTIL")
    assert fresh["sample_count"] == 248 and fresh["last"] == "2025-07-18T21:42:34Z"


# --- A GPU's telemetry ---


def test_telemetry_returns_exactly_the_samples_in_the_window(sample_data, api):
    everything = api.get(f"/api/v1/gpus/{GPU_UUID}/telemetry").json()
    assert as_rows(everything["results"]) == db_rows(GPU_UUID)
    assert len(everything["results"]) == 10 and everything["next"] is None and everything["previous"] is None
    start, end = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    window = api.get(f"/api/v1/gpus/{GPU_UUID}/telemetry", {"start_time": iso(start), "end_time": iso(end)}).json()
    expected = db_rows(GPU_UUID, start, end)
    assert as_rows(window["results"]) == expected
    # Both ends are inclusive, and the window holds samples at both of them.
    assert {r[0] for r in expected} == {iso(start), iso(end)}


def test_telemetry_time_without_zone_is_utc(sample_data, api):
    url = f"/api/v1/gpus/{GPU_UUID}/telemetry"
    naive = api.get(url, {"start_time": "2025-07-18T20:42:35", "end_time": "2025-07-18T20:42:36"}).json()
    zoned = api.get(url, {"start_time": "2025-07-18T22:42:35+02:00", "end_time": "2025-07-18T20:42:36Z"}).json()
    assert as_rows(naive["results"]) == as_rows(zoned["results"]) == db_rows(GPU_UUID, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))


def test_telemetry_metric_filter_order_and_limit(sample_data, api):
    url = f"/api/v1/gpus/{GPU_UUID}/telemetry"
    metrics = ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP"]
    picked = api.get(url, {"metric": metrics}).json()
    assert as_rows(picked["results"]) == db_rows(GPU_UUID, metrics=metrics) and len(picked["results"]) == 2
    descending = api.get(url, {"order": "desc"}).json()
    assert as_rows(descending["results"]) == db_rows(GPU_UUID)[::-1]
    first_three = api.get(url, {"limit": 3}).json()
    assert as_rows(first_three["results"]) == db_rows(GPU_UUID)[:3] and first_three["next"]


def _walk(api, url, params, *, between=None):
    pages, page = [], api.get(url, params).json()
    while True:
        pages.append(page)
        if not page["next"]:
            return pages
        if between:
            between(len(pages))
        page = api.get(page["next"]).json()


def test_cursor_pages_stay_correct_while_new_samples_arrive(sample_data, api):
    url = f"/api/v1/gpus/{GPU_UUID}/telemetry"
    existing = db_rows(GPU_UUID)
    arrivals = []

    def insert_between_pages(n):
        # New samples land both after the current page and, for a new metric, at times already paged.
        ts = us(T0) + n * 10 * US
        rows = [("DCGM_FI_DEV_GPU_UTIL", ts, float(n)), ("DCGM_FI_DEV_SM_CLOCK", us(T0) + n * US // 10, float(n))]
        store_samples(uuid=GPU_UUID, hostname=GPU_HOST, index=0, rows=rows)
        arrivals.append(rows)

    pages = _walk(api, url, {"limit": 3}, between=insert_between_pages)
    seen = [row for page in pages for row in as_rows(page["results"])]
    final = db_rows(GPU_UUID)
    positions = [final.index(row) for row in seen]
    # No row repeated, none out of (time, metric) order: the walk is a subsequence of the final table.
    assert positions == sorted(set(positions)), "a row was repeated or came out of order"
    # Every sample stored before the walk was returned, exactly once.
    assert [r for r in seen if r in existing] == existing
    # Samples that arrived ahead of the walk's position were picked up by later pages, up to the newest.
    assert seen[-1] == final[-1]
    assert len(arrivals) == len(pages) - 1 >= 4
    # The previous link of the last page leads back to the rows just before it.
    last = pages[-1]
    back = api.get(last["previous"]).json()
    first_of_last = final.index(as_rows(last["results"])[0])
    assert as_rows(back["results"]) == final[first_of_last - 3:first_of_last]


def test_cursor_pages_descending_and_backwards(sample_data, api):
    url = f"/api/v1/gpus/{GPU_UUID}/telemetry"
    pages = _walk(api, url, {"limit": 4, "order": "desc"})
    assert [row for p in pages for row in as_rows(p["results"])] == db_rows(GPU_UUID)[::-1]
    assert pages[0]["previous"] is None and pages[-1]["next"] is None
    second = api.get(pages[1]["previous"]).json()
    assert second["results"] == pages[0]["results"]


# --- A GPU's telemetry as a series per metric (shape=series) ---


@pytest.fixture
def gappy(sample_data):
    """Two minutes of GPU_UUID at 1.5 s steps (half-second times too), each reading holding some of four metrics."""
    metrics = ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK"]
    rng = random.Random(5)
    rows = [
        (metric, us(T0) + 10 * US + step * 3 * US // 2, rng.randrange(-5000, 5000) / 8)
        for step in range(80) for metric in rng.sample(metrics, rng.randint(1, len(metrics)))
    ]
    store_samples(uuid=GPU_UUID, hostname=GPU_HOST, index=0, rows=rows)


def series_rows(series: list[dict]) -> list[tuple]:
    """The (time, metric, value) samples of a series page, metric by metric."""
    return [(ts, s["metric"], value) for s in series for ts, value in zip(s["times"], s["values"], strict=True)]


def link_query(link: str | None) -> dict | None:
    """A page link's query parameters but `shape`: what must be the same in both shapes' links."""
    if link is None:
        return None
    query = parse_qs(urlsplit(link).query)
    query.pop("shape", None)
    return query


def test_series_shape_is_the_page_of_samples_by_metric(gappy, api):
    url = f"/api/v1/gpus/{GPU_UUID}/telemetry"
    window = {"start_time": iso(T0 + timedelta(seconds=20)), "end_time": iso(T0 + timedelta(seconds=70)), "limit": 50}
    for order in ("asc", "desc"):
        samples = api.get(url, {**window, "order": order}).json()
        series = api.get(url, {**window, "order": order, "shape": "series"}).json()
        assert set(series) == {"gpu", "next", "previous", "series"} and series["gpu"] == GPU_UUID
        assert [s["metric"] for s in series["series"]] == sorted({r["metric"] for r in samples["results"]})
        for s in series["series"]:
            # Each metric's samples in the page's order, the same as the samples shape lists them.
            assert list(zip(s["times"], s["values"])) == [
                (r["timestamp"], r["value"]) for r in samples["results"] if r["metric"] == s["metric"]
            ]
            times = [datetime.fromisoformat(t) for t in s["times"]]
            assert times == sorted(times, reverse=order == "desc") and len(set(times)) == len(times)
        assert sorted(series_rows(series["series"])) == sorted(as_rows(samples["results"]))
        assert len(samples["results"]) == 50 and link_query(series["next"]) == link_query(samples["next"])
        assert parse_qs(urlsplit(series["next"]).query)["shape"] == ["series"]


@pytest.mark.parametrize("params", [
    {"order": "asc"},
    {"order": "desc"},
    {"metric": ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE"], "start_time": "2025-07-18T20:42:50Z"},
    {"order": "desc", "end_time": "2025-07-18T20:43:30.5Z"},
])
def test_series_pages_walk_exactly_the_samples_of_sample_pages(gappy, api, params):
    url = f"/api/v1/gpus/{GPU_UUID}/telemetry"
    params = {**params, "limit": 7}
    samples = _walk(api, url, params)
    series = _walk(api, url, {**params, "shape": "series"})
    assert len(series) == len(samples) > 5
    for by_sample, by_series in zip(samples, series):
        assert sorted(series_rows(by_series["series"])) == sorted(as_rows(by_sample["results"]))
        assert link_query(by_series["next"]) == link_query(by_sample["next"])
        assert link_query(by_series["previous"]) == link_query(by_sample["previous"])
    walked = [row for page in samples for row in as_rows(page["results"])]
    assert sorted(row for page in series for row in series_rows(page["series"])) == sorted(walked)
    assert len(walked) == len(set(walked))
    # Back from the last page, the previous links pass the same pages in both shapes.
    back_samples, back_series = samples[-1], series[-1]
    while back_samples["previous"]:
        back_samples, back_series = api.get(back_samples["previous"]).json(), api.get(back_series["previous"]).json()
        assert sorted(series_rows(back_series["series"])) == sorted(as_rows(back_samples["results"]))
        assert link_query(back_series["previous"]) == link_query(back_samples["previous"])
    assert back_series["series"] and back_series == series[0]


@pytest.mark.parametrize("times", [
    ["2025-07-18T20:42:40Z", "2025-07-18T20:42:50Z"],  # whole seconds: written from numpy's datetime64
    ["2025-07-18T20:42:40Z", "2025-07-18T20:42:40.25Z"],  # a fraction: written as text
    ["9999-12-30T23:00:00Z", "9999-12-31T23:59:59Z"],  # the last day: beyond what orjson writes of a datetime64
])
def test_series_times_are_written_as_the_samples_shape_writes_them(sample_data, api, times):
    moments = [datetime.fromisoformat(t) for t in times]
    store_samples(uuid="GPU-times", hostname=GPU_HOST, index=5,
                  rows=[(metric, to_microseconds(moment), 1.5) for moment in moments for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP")])
    url = "/api/v1/gpus/GPU-times/telemetry"
    window = {"start_time": times[0], "end_time": times[-1]}
    samples = api.get(url, window).json()["results"]
    series = api.get(url, {**window, "shape": "series"}).json()["series"]
    assert [r["timestamp"] for r in samples] == [t for t in times for _ in range(2)]
    assert [s["times"] for s in series] == [times, times]
    assert sorted(series_rows(series)) == sorted(as_rows(samples))
    # An open window holds them too, the last times a datetime holds included, walked either way.
    assert api.get(url).json()["results"] == samples
    assert api.get(url, {"order": "desc", "limit": 1}).json()["results"] == samples[-1:]


def test_series_of_a_window_without_samples_is_empty(sample_data, api):
    response = api.get(f"/api/v1/gpus/{GPU_UUID}/telemetry", {"end_time": "2020-01-01T00:00:00Z", "shape": "series"})
    assert response.status_code == 200
    assert response.json() == {"gpu": GPU_UUID, "next": None, "previous": None, "series": []}
    assert api.get("/api/v1/gpus/GPU-unknown/telemetry", {"shape": "series"}).status_code == 404


def test_bad_shape_is_a_400_saying_which_shapes_there_are(sample_data, api):
    response = api.get(f"/api/v1/gpus/{GPU_UUID}/telemetry", {"shape": "columns"})
    assert_bad(response, "shape")
    assert response.json()["errors"]["shape"] == ['"columns" is not a shape; use samples or series.']


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"start_time": "not-a-time"}, "start_time"),
        ({"end_time": "2025-13-40T00:00:00Z"}, "end_time"),
        ({"start_time": "2025-07-18T20:42:37Z", "end_time": "2025-07-18T20:42:34Z"}, "end_time"),
        ({"metric": "DCGM_FI_NO_SUCH_METRIC"}, "metric"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "eDox"}, "cursor"),
        ({"shape": "Series"}, "shape"),
        ({"shape": ""}, "shape"),
    ],
)
def test_telemetry_bad_input_is_a_400_naming_the_parameter(sample_data, api, params, parameter):
    assert_bad(api.get(f"/api/v1/gpus/{GPU_UUID}/telemetry", params), parameter)


def test_telemetry_of_unknown_gpu_is_a_404(sample_data, api):
    for suffix in ("telemetry", "telemetry/summary", "latest"):
        response = api.get(f"/api/v1/gpus/GPU-unknown/{suffix}")
        assert response.status_code == 404 and "GPU-unknown" in response.json()["detail"]


def test_telemetry_of_a_known_gpu_in_a_window_without_samples_is_an_empty_page(sample_data, api):
    """The GPU is looked up in the window's own query, so no sample must not read as no GPU."""
    response = api.get(f"/api/v1/gpus/{GPU_UUID}/telemetry", {"start_time": "2020-01-01T00:00:00Z",
                                                               "end_time": "2020-01-02T00:00:00Z"})
    assert response.status_code == 200
    assert response.json() == {"gpu": GPU_UUID, "next": None, "previous": None, "results": []}


# --- Summary and latest ---


def test_summary_aggregates_match_the_raw_samples(sample_data, api):
    store_samples(uuid=GPU_UUID, hostname=GPU_HOST, index=0, rows=[
        ("DCGM_FI_DEV_GPU_UTIL", us(T0) + 20 * US, 50.0),
        ("DCGM_FI_DEV_GPU_UTIL", us(T0) + 40 * US, 100.0),
        ("DCGM_FI_DEV_GPU_UTIL", us(T0) + 70 * US, 10.0),
    ])
    body = api.get(f"/api/v1/gpus/{GPU_UUID}/telemetry/summary", {
        "bucket": "1m", "agg": "avg,min,max,first,last,count,sum", "metric": "DCGM_FI_DEV_GPU_UTIL",
    }).json()
    assert body["bucket"] == "1m" and body["aggregates"] == ["avg", "min", "max", "first", "last", "count", "sum"]
    [series] = body["series"]
    assert series["metric"] == "DCGM_FI_DEV_GPU_UTIL"
    # 20:42:34 (0), :54 (50), 20:43:14 (100) share no minute with 20:43:44 (10).
    assert series["points"] == [
        {"time": "2025-07-18T20:42:00Z", "avg": 25.0, "min": 0.0, "max": 50.0, "first": 0.0, "last": 50.0, "count": 2, "sum": 50.0},
        {"time": "2025-07-18T20:43:00Z", "avg": 55.0, "min": 10.0, "max": 100.0, "first": 100.0, "last": 10.0, "count": 2, "sum": 110.0},
    ]
    assert body["end_time"] == "2025-07-18T20:43:44Z"


def test_summary_points_list_the_aggregates_in_the_order_asked(sample_data, api):
    body = api.get(f"/api/v1/gpus/{GPU_UUID}/telemetry/summary", {"bucket": "1h", "agg": "last,count,avg,last"}).json()
    assert body["aggregates"] == ["last", "count", "avg"]
    assert {tuple(point) for series in body["series"] for point in series["points"]} == {("time", "last", "count", "avg")}


def test_summary_defaults_cover_every_metric(sample_data, api):
    body = api.get(f"/api/v1/gpus/{GPU_UUID}/telemetry/summary", {"bucket": "1s"}).json()
    assert body["aggregates"] == ["avg", "min", "max", "last"]
    assert len(body["series"]) == 10
    assert sum(len(s["points"]) for s in body["series"]) == 10


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"bucket": "7m"}, "bucket"),
        ({"agg": "avg,median"}, "agg"),
        ({"agg": ","}, "agg"),
        ({"metric": "nope"}, "metric"),
        ({"start_time": "2020-01-01T00:00:00Z", "bucket": "1s"}, "bucket"),
        ({"start_time": "2025-07-19T00:00:00Z", "end_time": "2025-07-18T00:00:00Z"}, "end_time"),
        ({"start_time": "2025-08-01T00:00:00Z"}, "start_time"),
    ],
)
def test_summary_bad_input_is_a_400_naming_the_parameter(sample_data, api, params, parameter):
    assert_bad(api.get(f"/api/v1/gpus/{GPU_UUID}/telemetry/summary", params), parameter)


def test_latest_gives_the_newest_value_of_each_metric(sample_data, api):
    store_samples(uuid=GPU_UUID, hostname=GPU_HOST, index=0, rows=[("DCGM_FI_DEV_GPU_TEMP", us(T0) + 3600 * US, 99.0)])
    body = api.get(f"/api/v1/gpus/{GPU_UUID}/latest").json()
    latest = {r["metric"]: (r["timestamp"], r["value"]) for r in body["results"]}
    assert len(latest) == 10
    assert latest["DCGM_FI_DEV_GPU_TEMP"] == ("2025-07-18T21:42:34Z", 99.0)
    for metric, (ts, value) in latest.items():
        assert db_rows(GPU_UUID, metrics=[metric])[-1] == (ts, metric, value)


# --- Token and CORS ---


def test_api_token_when_configured(sample_data, api, settings):
    settings.API_TOKEN = "s3cret"
    assert api.get("/api/v1/gpus").status_code == 401
    assert api.get("/api/v1/gpus", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert api.get("/api/v1/gpus", HTTP_AUTHORIZATION="Bearer s3cret").json()["count"] == 247
    assert api.get("/health").status_code == 200
    settings.API_TOKEN = ""
    assert api.get("/api/v1/gpus").status_code == 200


@override_settings(CORS_ALLOWED_ORIGINS=["https://dash.example"], CORS_ALLOW_METHODS=["GET", "OPTIONS"])
def test_cors_allows_configured_origins(sample_data, api):
    allowed = api.get("/api/v1/gpus", HTTP_ORIGIN="https://dash.example")
    assert allowed["Access-Control-Allow-Origin"] == "https://dash.example"
    other = api.get("/api/v1/gpus", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in other
    preflight = api.options("/api/v1/gpus", HTTP_ORIGIN="https://dash.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    assert "GET" in preflight["Access-Control-Allow-Methods"]
