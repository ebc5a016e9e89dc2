"""The collector task with a real worker on RabbitMQ: redelivery stores nothing twice, garbage is dead-lettered."""
import pytest

from config.celery import app
from telemetry.ingest.wire import encode_batch
from telemetry.ingest.queues import dead_letter_queue
from telemetry.ingest.collector.tasks import persist_batch, retry_delay
from telemetry.models import IngestCounter
from tests.conftest import wait_until
from tests.ingest.factories import fleet_batch
from tests.samples import stored_count

pytestmark = pytest.mark.django_db(transaction=True)


def counter(name: str) -> int:
    row = IngestCounter.objects.filter(name=name).first()
    return row.value if row else 0


def dead_lettered_messages() -> int:
    with app.connection_for_write() as connection:
        return dead_letter_queue().bind(connection.default_channel).queue_declare(passive=True).message_count


def test_one_batch_delivered_twice_is_stored_once(worker_process):
    worker_process()
    payload = encode_batch(fleet_batch(gpus=5, ticks=3))
    persist_batch.apply_async(args=(payload,))
    persist_batch.apply_async(args=(payload,))
    assert wait_until(lambda: counter("samples_stored") + counter("samples_duplicate") == 60)
    assert stored_count() == 30
    assert (counter("samples_stored"), counter("samples_duplicate")) == (30, 30)


def test_an_undecodable_batch_is_dead_lettered_and_the_rest_stored(worker_process):
    worker = worker_process()
    persist_batch.apply_async(args=(encode_batch(fleet_batch(gpus=2, ticks=1)),))
    persist_batch.apply_async(args=(b"\x00 this is not a batch",))
    persist_batch.apply_async(args=(encode_batch(fleet_batch(gpus=2, ticks=1, start_us=0)),))
    assert wait_until(lambda: dead_lettered_messages() == 1 and stored_count() == 8)
    assert counter("batches_dead_lettered") == 1
    assert "dead-lettering batch" in worker.output()


def test_retry_backoff_grows_and_is_capped():
    assert [retry_delay(n) for n in (0, 1, 2, 3, 10)] == [1, 2, 4, 8, 60]
