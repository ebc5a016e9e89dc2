"""Faults in the middle of a 100,000-sample stream through the real RabbitMQ and PostgreSQL: nothing lost, nothing twice.

Each test streams the fleet CSV at a set rate into collector workers, injects one fault while the
stream runs, and ends with every sample stored exactly once (count and sum of values equal the source's).
"""
import time

import pytest
from kombu import Connection

from telemetry.models import IngestCounter
from tests.conftest import wait_until
from tests.faults.conftest import (
    BROKER_URL, FAULT_QUEUE, assert_stored_exactly_once, counter, dead_letter_count, ingest_queues,
    postgresql_stopped, rabbitmq_stopped, stored_count,
)

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]

# 100,000 samples at 5,000 per second: a stream of about 20 seconds for the faults to land in.
RATE = 5000


def test_collector_killed_three_times_mid_stream(fleet_csv, collectors, stream):
    worker = collectors()
    run = stream(fleet_csv, rate=RATE)
    kills = []
    for _ in range(3):
        before = stored_count()
        # Kill while batches are in flight: after this worker has stored something new.
        assert wait_until(lambda: stored_count() > before, timeout=60), worker.output()[-3000:]
        kills.append((stored_count(), run.running()))
        worker.kill()
        worker = collectors()
    run.finish()
    assert_stored_exactly_once(fleet_csv)
    assert [stored for stored, _ in kills] == sorted(stored for stored, _ in kills)
    assert any(running for _, running in kills), "every kill came after the stream had ended"
    assert kills[0][0] < fleet_csv.count
    assert counter(IngestCounter.BATCHES_DEAD_LETTERED) == 0


def test_rabbitmq_restarted_mid_stream(fleet_csv, collectors, stream):
    collectors()
    run = stream(fleet_csv, rate=RATE)
    assert wait_until(lambda: stored_count() > 0, timeout=60)
    with rabbitmq_stopped():
        assert run.running(), "the stream ended before the broker was stopped"
        time.sleep(5)
        at_restart = stored_count()
    output = run.finish(timeout=240)
    assert at_restart < fleet_csv.count
    # The streamer saw the broker go, held its batch, and re-sent it once the broker was back.
    assert "broker unavailable" in output
    assert "broker reachable again" in output
    assert_stored_exactly_once(fleet_csv)
    assert counter(IngestCounter.BATCHES_DEAD_LETTERED) == 0


def test_postgresql_stopped_20_seconds_mid_stream(fleet_csv, collectors, stream):
    worker = collectors()
    run = stream(fleet_csv, rate=RATE)
    assert wait_until(lambda: stored_count() > 0, timeout=60)
    with postgresql_stopped():
        assert run.running(), "the stream ended before PostgreSQL was stopped"
        time.sleep(20)
    run.finish(timeout=240)
    # Done when everything is stored, or as soon as a batch has been given up on.
    wait_until(lambda: stored_count() >= fleet_csv.count or dead_letter_count() > 0, timeout=180, interval=0.5)
    assert "database error, retry" in worker.output()
    assert dead_letter_count() == 0, f"{dead_letter_count()} batches were dead-lettered during a 20 s outage"
    assert counter(IngestCounter.BATCHES_DEAD_LETTERED) == 0
    assert_stored_exactly_once(fleet_csv)


def test_undecodable_batch_is_dead_lettered_and_counted(fleet_csv, collectors, stream):
    from telemetry.ingest.collector.tasks import persist_batch

    collectors()
    run = stream(fleet_csv, rate=RATE)
    assert wait_until(lambda: stored_count() > 0, timeout=60)
    with Connection(BROKER_URL) as broker:
        persist_batch.apply_async(args=(b"\xc1 not a batch",), connection=broker, queue=ingest_queues()[0],
                                  routing_key=FAULT_QUEUE)
    assert run.running(), "the stream ended before the bad batch was sent"
    run.finish()
    assert_stored_exactly_once(fleet_csv)
    assert wait_until(lambda: dead_letter_count() == 1, timeout=30)
    assert counter(IngestCounter.BATCHES_DEAD_LETTERED) == 1
