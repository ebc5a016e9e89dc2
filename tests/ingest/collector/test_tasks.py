"""The collector task with a real worker on RabbitMQ: batches stored as groups, redelivery stores
nothing twice, garbage and refused batches are dead-lettered alone."""
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import msgpack
import pytest
from celery_batches import SimpleRequest
from django.db import connection
from kombu import Consumer
from kombu.asynchronous.timer import Timer

from config.celery import app
from telemetry.ingest.wire import encode_batch
from telemetry.ingest.queues import dead_letter_queue, ingest_queue
from telemetry.ingest.collector.tasks import GroupedBatches, message_samples, persist_batch, retry_delay, retry_delays
from telemetry.ingest.wire import GpuInfo
from telemetry.models import Gpu, IngestCounter
from tests.conftest import broker_connections_drop, purge_ingest_queues, wait_until
from tests.ingest.collector.devices import DEVICES, MIG_UUID, WHOLE_UUID, devices_batch
from tests.ingest.factories import fleet_batch, gpu
from tests.samples import device_id, stored_count, stored_samples

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


def test_a_message_whose_body_cannot_be_decoded_is_dead_lettered_and_counted(worker_process):
    """Celery itself acknowledges such a message, and it is gone; the collector keeps it."""
    worker = worker_process()
    with app.connection_for_write() as broker:
        broker.Producer().publish(b"\xc1\xc1 not msgpack", exchange=ingest_queue().exchange,
                                  routing_key=ingest_queue().routing_key, content_type="application/x-msgpack",
                                  content_encoding="binary", headers={"task": persist_batch.name, "id": "garbled"})
    persist_batch.apply_async(args=(encode_batch(fleet_batch(gpus=2, ticks=1)),))
    assert wait_until(lambda: dead_lettered_messages() == 1 and stored_count() == 4)
    assert counter("batches_dead_lettered") == 1
    assert "the message's body cannot be decoded (DecodeError" in worker.output()


def ingest_queue_count() -> int:
    with app.connection_for_write() as connection:
        return ingest_queue().bind(connection.default_channel).queue_declare(passive=True).message_count


class PoolOfCallbacks:
    """Stands in for the worker's process pool: keeps each group's requests and callbacks."""

    def __init__(self) -> None:
        self.groups: list[tuple[list[SimpleRequest], object, object]] = []

    def apply_async(self, _target, args, callback, error_callback) -> None:
        _task, (requests,), _loglevel, _logfile = args
        self.groups.append((requests, callback, error_callback))


@pytest.mark.django_db(transaction=False)
def test_groups_settled_out_of_order_acknowledge_and_dead_letter_only_their_own_messages():
    """RabbitMQ acknowledges every message up to a delivery tag at once: a group stored before an
    older one waits for it, or it would acknowledge that group's messages."""
    purge_ingest_queues()
    for n in range(9):
        persist_batch.apply_async(args=(encode_batch(fleet_batch(gpus=1, ticks=1, start_us=n * 1_000_000)),))
    pool = PoolOfCallbacks()
    grouped = GroupedBatches()
    grouped.flush_interval = 3600
    with app.connection_for_write() as broker:
        channel = broker.channel()
        received = []
        with Consumer(channel, queues=[ingest_queue()], on_message=received.append, accept=["msgpack"]):
            while len(received) < 9:
                broker.drain_events(timeout=10)
            gather = grouped.Strategy(persist_batch, app, SimpleNamespace(
                pool=pool, hostname="test", connection_errors=(), connection=broker, timer=Timer()))
            for group in (received[0:3], received[3:6], received[6:9]):
                for message in group:
                    gather(message, None, None, None, set())
                grouped._do_flush()
            assert [[request.delivery_info["delivery_tag"] for request in requests]
                    for requests, _, _ in pool.groups] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
            assert grouped.held() == 9
            (_, settle_first, _), (_, settle_second, _), (_, settle_third, _) = pool.groups
            settle_second([None, None, None])  # stored while the first group is still being stored
            assert grouped.held() == 9  # acknowledged only with the first group's
            settle_first([None, "refused", None])
            assert grouped.held() == 3
            settle_third(None)  # the group's task failed
            assert grouped.held() == 0
            channel.basic_qos(0, 10, False)  # a channel closed by an unknown delivery tag would raise here
        channel.close()  # anything still unacknowledged goes back to the queue
    assert wait_until(lambda: dead_lettered_messages() == 4, timeout=10)
    assert ingest_queue_count() == 0


class GatheredMessage:
    """What the worker's strategy reads of a queued message."""

    def __init__(self, samples: int, tag: int) -> None:
        self.body, self.headers, self.delivery_tag = b"", {"samples": samples}, tag

    def decode(self) -> tuple:
        return (b"",), {}, {}


def grouping(flush_samples: int, flush_interval: float) -> tuple[Callable, PoolOfCallbacks, Timer]:
    """A GroupedBatches strategy on a pool that keeps the groups it is handed, and the timer it uses."""
    grouped = GroupedBatches()
    grouped.flush_samples, grouped.flush_interval = flush_samples, flush_interval
    pool, timer = PoolOfCallbacks(), Timer()
    gather = grouped.Strategy(persist_batch, app, SimpleNamespace(
        pool=pool, hostname="test", connection_errors=(), connection=app.connection_for_write(), timer=timer))
    return (lambda message: gather(message, None, None, None, set())), pool, timer


def grouped_tags(pool: PoolOfCallbacks) -> list[list[int]]:
    return [[request.delivery_info["delivery_tag"] for request in requests] for requests, _, _ in pool.groups]


def test_a_group_holds_at_most_flush_samples_and_a_message_that_would_overflow_it_starts_the_next():
    """Batches of a node's tick are not all of one size: a group of 20,004 samples was stored as
    two parts, the second a transaction for a single batch."""
    gather, pool, _ = grouping(flush_samples=500, flush_interval=3600)
    for tag, samples in enumerate((200, 200, 200, 100, 200, 600), start=1):
        gather(GatheredMessage(samples, tag))
    assert grouped_tags(pool) == [[1, 2], [3, 4, 5], [6]]


def pending(timer: Timer) -> list:
    """The timer's entries that will still run: (when, entry)."""
    return [(eta, entry) for eta, _priority, entry in timer.queue if not entry.canceled]


def test_a_group_waits_from_its_own_first_message():
    """A timer on a fixed period, started by the first group, cut short the group that followed a
    full one: here it would have stored message 3 alone when the first group's period came round."""
    gather, pool, timer = grouping(flush_samples=400, flush_interval=60)
    gather(GatheredMessage(200, 1))
    gather(GatheredMessage(200, 2))  # full: stored at once
    assert grouped_tags(pool) == [[1, 2]] and pending(timer) == []
    arrived = time.monotonic()
    gather(GatheredMessage(200, 3))
    [(eta, flush)] = pending(timer)
    assert eta >= arrived + 60
    timer.apply_entry(flush)
    assert grouped_tags(pool) == [[1, 2], [3]] and pending(timer) == []


def refused_batch() -> bytes:
    """A batch that decodes but that PostgreSQL refuses: a GPU index beyond its smallint column."""
    batch = fleet_batch(gpus=1, ticks=1, start_us=5_000_000)
    batch.gpus = [GpuInfo("GPU-refused", "host-x", 99999, "nvidia0", "NVIDIA H100 80GB HBM3")]
    return encode_batch(batch)


def request(payload: bytes, tag: int) -> SimpleRequest:
    return SimpleRequest(id=f"r{tag}", name=persist_batch.name, args=(payload,), kwargs={},
                         delivery_info={"delivery_tag": tag}, hostname="test", ignore_result=True, reply_to=None,
                         correlation_id=None, request_dict={})


def test_a_group_stores_its_good_batches_and_refuses_the_bad_ones_alone():
    good = [encode_batch(fleet_batch(gpus=3, ticks=2, start_us=n * 10_000_000)) for n in range(3)]
    group = [good[0], b"\x00 not a batch", good[1], refused_batch(), good[2]]
    verdicts = persist_batch([request(payload, tag) for tag, payload in enumerate(group)])
    assert [verdict is None for verdict in verdicts] == [True, False, True, False, True]
    assert verdicts[1].startswith("not a msgpack batch")
    assert "database refused the batch" in verdicts[3] and "smallint" in verdicts[3]
    assert stored_count() == 3 * 12
    assert counter("batches_dead_lettered") == 2
    assert not Gpu.objects.filter(uuid="GPU-refused").exists()


def test_a_group_that_failed_closes_its_database_session_and_a_stored_one_keeps_it():
    persist_batch([request(encode_batch(fleet_batch(gpus=1, ticks=1)), 1)])
    assert connection.connection is not None
    persist_batch([request(refused_batch(), 2)])
    assert connection.connection is None  # a session a failure may have left unusable is not reused


def worker_sessions() -> set[tuple[int, object]]:
    """The database's client sessions other than this test's: (pid, start)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid, backend_start FROM pg_stat_activity WHERE datname = current_database() "
                       "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
        return set(cursor.fetchall())


def test_a_worker_keeps_its_database_session_from_group_to_group(worker_process):
    """Celery's Django fixup closes it after every task: each group would pay for a new session,
    its staging table and the server's caches."""
    worker_process(concurrency=1)
    seen = []
    for n in range(3):
        persist_batch.apply_async(args=(encode_batch(fleet_batch(gpus=2, ticks=1, start_us=n * 1_000_000)),))
        assert wait_until(lambda: stored_count() == 4 * (n + 1))
        assert wait_until(lambda: len(worker_sessions()) == 1, timeout=10)
        seen.append(worker_sessions())
    assert seen[0] == seen[1] == seen[2]


def test_a_worker_dead_letters_a_refused_batch_alone_and_stores_the_rest_of_its_group(worker_process):
    worker = worker_process()
    payloads = [encode_batch(fleet_batch(gpus=2, ticks=1, start_us=n * 10_000_000)) for n in range(20)]
    payloads.insert(7, refused_batch())
    for payload in payloads:
        persist_batch.apply_async(args=(payload,))
    assert wait_until(lambda: dead_lettered_messages() == 1 and stored_count() == 20 * 4)
    assert counter("batches_dead_lettered") == 1
    assert "storing each alone" in worker.output()


def test_after_its_broker_connection_drops_a_worker_still_stores_groups_by_time(worker_process):
    """Celery clears its timers with a lost connection: groups smaller than COLLECTOR_GROUP_SAMPLES,
    gathered while it dropped and after, must still be stored after COLLECTOR_GROUP_WAIT_MS."""
    worker = worker_process()
    sent = []

    def send_every_50_ms() -> None:
        for n in range(60):
            persist_batch.apply_async(args=(encode_batch(fleet_batch(gpus=2, ticks=1, start_us=n * 1_000_000)),))
            sent.append(n)
            time.sleep(0.05)

    sender = threading.Thread(target=send_every_50_ms)
    sender.start()
    assert wait_until(lambda: len(sent) >= 20)
    assert broker_connections_drop(worker.process.pid) >= 1
    sender.join()
    assert wait_until(lambda: worker.output().count("Connected to amqp") == 2, timeout=60), worker.output()[-3000:]
    assert wait_until(lambda: stored_count() == 60 * 4, timeout=30), worker.output()[-3000:]


def test_retry_backoff_grows_and_is_capped():
    assert [retry_delay(n) for n in (0, 1, 2, 3, 10)] == [1, 2, 4, 8, 60]


def test_retries_stop_within_half_the_soft_time_limit():
    # The defaults: 12 retries allowed, a soft time limit of 270 s.
    assert retry_delays(12, 135) == [1, 2, 4, 8, 16, 32, 60]
    assert retry_delays(3, 1000) == [1, 2, 4]
    assert retry_delays(5, 0.5) == []


class QueuedMessage:
    def __init__(self, body: bytes, headers: dict | None) -> None:
        self.body, self.headers = body, headers


def test_a_message_weighs_its_samples_header_or_else_its_size():
    assert message_samples(QueuedMessage(b"x" * 5000, {"samples": 200})) == 200
    # An older streamer's message, or a header that is not a count: about a sample per 10 bytes.
    assert message_samples(QueuedMessage(b"x" * 5000, None)) == 500
    assert message_samples(QueuedMessage(b"x" * 5000, {"samples": "many"})) == 500
    assert message_samples(QueuedMessage(b"x" * 5000, {"samples": -3})) == 500


def test_mig_instances_reach_the_database_as_devices_of_their_own(worker_process):
    worker_process(max_per_gpu=4)
    batch = devices_batch(ticks=3)
    persist_batch.apply_async(args=(encode_batch(batch),))
    assert wait_until(lambda: counter("samples_stored") == 24)
    rows = Gpu.objects.order_by("uuid", "mig_instance").values_list(
        "uuid", "mig_instance", "mig_profile", "sample_count")
    assert list(rows) == [(MIG_UUID, 1, "3g.40gb", 4), (MIG_UUID, 2, "3g.40gb", 4), (MIG_UUID, None, "", 4),
                          (WHOLE_UUID, None, "", 4)]
    # COLLECTOR_MAX_ENTRIES_PER_GPU counts per device: each keeps its own two newest ticks.
    newest = batch.ts[-1] - 1_000_000
    kept = {(device, value) for device, _, _, value in stored_samples()}
    assert kept == {(device_id(*s.gpu.key), s.value) for s in batch.samples() if s.timestamp_us >= newest}
    assert stored_count() == 4 * len(DEVICES)


def test_a_version_2_batch_still_stores_whole_gpus():
    """What a streamer from before MIG support sent, five entries per GPU, still queued after an upgrade."""
    batch = fleet_batch(gpus=3, ticks=2)
    payload = msgpack.packb({
        "v": 2, "gpus": [list(g)[:5] for g in batch.gpus], "metrics": batch.metrics, "labels": [],
        "gpu": batch.gpu, "ts": batch.ts, "label": batch.label, "size": batch.size, "metric": batch.metric,
        "value": batch.value,
    })
    assert persist_batch.apply(args=(payload,)).get() == [None]
    assert stored_count() == 12
    rows = Gpu.objects.order_by("uuid").values_list("uuid", "mig_instance", "mig_profile", "hostname", "sample_count")
    assert list(rows) == [(gpu(n).uuid, None, "", gpu(n).hostname, 4) for n in range(3)]
    # The same GPUs in today's format are the same devices.
    assert persist_batch.apply(args=(encode_batch(batch),)).get() == [None]
    assert (stored_count(), counter("samples_duplicate")) == (12, 12)
    assert Gpu.objects.count() == 3
