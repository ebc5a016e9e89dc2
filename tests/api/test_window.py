"""A device's window walked page by page over packed and raw readings alike: every sample once, in order."""
import random
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from telemetry.api import selectors
from telemetry.history.packing import hours_pack
from telemetry.ingest.collector.services import samples_persist
from telemetry.ingest.streamer.batching import BatchBuilder
from telemetry.ingest.wire import Sample
from telemetry.models import Gpu, LabelSet, Metric
from telemetry.times import to_rfc3339_short
from tests.history.history_data import POD, START_US, STEP_US, history_batch, readings_between
from tests.ingest.factories import gpu

pytestmark = pytest.mark.django_db

# history_batch's three hours from 10:00: 10:00 and 11:00 packed, 12:00 raw.
PACKED_BEFORE = datetime(2025, 7, 18, 12, tzinfo=timezone.utc)


@pytest.fixture
def device() -> int:
    samples_persist(batch=history_batch(), max_per_gpu=0)
    hours_pack(before=PACKED_BEFORE, chunk=10)
    return Gpu.objects.order_by("id").first().id


def expected_samples(gpu_id: int, start, end, metric_ids, label_set_ids) -> list[tuple]:
    samples = []
    for ts, label, values in readings_between(gpu_id, start, end):
        if label_set_ids is None or label in label_set_ids:
            samples += [(to_rfc3339_short(ts), m, v) for m, v in sorted(values.items()) if not metric_ids or m in metric_ids]
    return samples


def walked(gpu_id: int, *, limit: int, order: str, **window) -> list[tuple]:
    """Every page of the window, each from the position the last one ended at."""
    samples, after = [], None
    while True:
        page = selectors.gpu_telemetry_window(gpu_id=gpu_id, order=order, after=after, limit=limit, **window)
        samples += page
        if len(page) < limit:
            return samples
        after = selectors.Position(datetime.fromisoformat(page[-1][0]), page[-1][1])


@pytest.mark.parametrize("limit", [1, 7, 100, 10_000])
def test_pages_hold_every_sample_once_in_order(device, limit):
    rng = random.Random(limit)
    for _ in range(4):
        start = PACKED_BEFORE - timedelta(seconds=rng.uniform(0, 7200))
        end = start + timedelta(seconds=rng.uniform(60, 5400))
        metric_ids = rng.choice([None, sorted(rng.sample(list(Metric.objects.values_list("id", flat=True)), 2))])
        attribution = rng.choice([selectors.ANY_ATTRIBUTION, selectors.Attribution(namespace=POD.namespace, pod=POD.pod)])
        label_set_ids = None if attribution is selectors.ANY_ATTRIBUTION else set(
            LabelSet.objects.filter(namespace=POD.namespace, pod=POD.pod).values_list("id", flat=True))
        expected = expected_samples(device, start, end, metric_ids, label_set_ids)
        assert expected, "each window holds samples"
        window = {"start": start, "end": end, "metric_ids": metric_ids, "attribution": attribution}
        if limit < 10:
            # A page at a time through the samples of both packed and raw hours would take long: a part of each.
            window["end"] = start + timedelta(minutes=3) if rng.random() < 0.5 else window["end"]
            expected = expected_samples(device, start, window["end"], metric_ids, label_set_ids)
        assert walked(device, limit=limit, order="asc", **window) == expected
        assert walked(device, limit=limit, order="desc", **window) == expected[::-1]


def prepared_window_plans() -> tuple[int, int]:
    """(generic, custom) plans this session's prepared window statements have run."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) FROM pg_prepared_statements "
                       "WHERE statement LIKE '%%telemetry_readinghour%%'")
        return cursor.fetchone()


def test_a_plan_made_without_the_parameters_walks_both_ways(device):
    """The statement is prepared, and PostgreSQL may run one plan for every direction and bound."""
    everything = expected_samples(device, None, None, None, None)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    for limit in (7, 500, 10_000):
        assert walked(device, limit=limit, order="asc") == everything
        assert walked(device, limit=limit, order="desc") == everything[::-1]
    generic, custom = prepared_window_plans()
    assert generic > 0 and custom == 0


def test_the_window_statement_is_not_prepared_when_the_setting_is_off(device, settings):
    settings.DATABASE_PREPARED_STATEMENTS = False
    before = prepared_window_plans()
    assert walked(device, limit=500, order="asc") == expected_samples(device, None, None, None, None)
    assert prepared_window_plans() == before


def test_the_page_before_a_position_is_the_samples_just_before_it(device):
    everything = expected_samples(device, None, None, None, None)
    for at in (0, 17, len(everything) // 2, len(everything) - 1):
        position = selectors.Position(datetime.fromisoformat(everything[at][0]), everything[at][1])
        before = selectors.gpu_telemetry_window(gpu_id=device, before=position, limit=50)
        assert before == everything[max(0, at - 50):at][::-1]
        after = selectors.gpu_telemetry_window(gpu_id=device, after=position, order="desc", limit=50)
        assert after == everything[max(0, at - 50):at][::-1]


def test_a_metric_few_readings_hold_is_walked_in_few_queries():
    """One reading in 200 holds the rare metric: each query that finds none asks for twice the readings."""
    builder = BatchBuilder()
    for step in range(2000):
        builder.add(Sample(gpu(0), "DCGM_FI_DEV_GPU_UTIL", START_US + step * STEP_US, float(step), None))
        if step % 200 == 7:
            builder.add(Sample(gpu(0), "DCGM_FI_RARE", START_US + step * STEP_US, float(step), None))
    samples_persist(batch=builder.build(), max_per_gpu=0)
    hours_pack(before=datetime(2025, 7, 18, 13, tzinfo=timezone.utc), chunk=10)  # packed, then raw
    gpu_id, rare = Gpu.objects.get().id, Metric.objects.get(name="DCGM_FI_RARE").id
    for order in ("asc", "desc"):
        with CaptureQueriesContext(connection) as queries:
            page = selectors.gpu_telemetry_window(gpu_id=gpu_id, metric_ids=[rare], order=order, limit=10)
        assert sorted(value for _, _, value in page) == [float(step) for step in range(7, 2000, 200)]
        assert len([q for q in queries if "telemetry_readinghour" in q["sql"]]) <= 8, order
