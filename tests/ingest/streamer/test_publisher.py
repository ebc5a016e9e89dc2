"""BatchPublisher against the real RabbitMQ: pipelined confirms, the window, and re-sending after broker errors."""
import logging
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest
from celery import Celery
from django.conf import settings
from kombu.message import Message

from config.celery import app
from telemetry.ingest.queues import ingest_queue
from telemetry.ingest.streamer.publisher import BatchPublisher, PublishAborted
from telemetry.ingest.wire import PERSIST_BATCH_TASK, encode_batch
from tests.conftest import broker_connections_drop, purge_ingest_queues, rabbitmqctl, wait_until
from tests.ingest.factories import fleet_batch

# Named after the queue, so that test sessions on other queues keep their own.
POLICY = f"{settings.INGEST_QUEUE}.reject-test"


@pytest.fixture(autouse=True)
def empty_ingest_queue() -> Iterator[None]:
    purge_ingest_queues()
    yield
    purge_ingest_queues()


def payloads(count: int) -> list[bytes]:
    """`count` distinct batches of 200 samples (100 GPUs × 2 metrics), a second apart."""
    return [encode_batch(fleet_batch(gpus=100, ticks=1, start_us=1_752_871_354_000_000 + i * 1_000_000))
            for i in range(count)]


def queued_messages(broker: Celery = app) -> list[Message]:
    """Every message in the ingest queue, oldest first (taken off it)."""
    messages = []
    with broker.connection_for_write() as connection:
        queue = ingest_queue().bind(connection.default_channel)
        while (message := queue.get(no_ack=True, accept=["msgpack"])) is not None:
            messages.append(message)
    return messages


def body_payload(message: Message) -> bytes:
    args, _kwargs, _embed = message.decode()
    return args[0]


def queued_count() -> int:
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue=settings.INGEST_QUEUE, passive=True).message_count


def drop_broker_connections_of_this_process() -> int:
    return broker_connections_drop(os.getpid())


@pytest.fixture
def reject_beyond_two_batches() -> Iterator[None]:
    """A policy on the ingest queue: at most two messages, publishes beyond them nacked."""
    definition = '{"max-length": 2, "overflow": "reject-publish"}'
    rabbitmqctl("set_policy", "--apply-to", "queues", "--priority", "100", POLICY,
                f"^{re.escape(settings.INGEST_QUEUE)}$", definition)
    try:
        assert wait_until(lambda: f"{settings.INGEST_QUEUE}\t{POLICY}" in rabbitmqctl("list_queues", "name", "policy"),
                          timeout=30)
        yield
    finally:
        # Not rabbitmqctl(): the test may have cleared it already.
        subprocess.run(["rabbitmqctl", "-q", "clear_policy", POLICY], capture_output=True, timeout=60)


def test_batches_arrive_once_in_order_with_their_sample_counts():
    sent = payloads(40)
    samples = [200 + i for i in range(40)]  # distinct counts, so a header cannot match by chance
    publisher = BatchPublisher(app=app, abort=threading.Event())
    for payload, count in zip(sent, samples):
        publisher.publish(payload, samples=count)
    publisher.close()
    assert publisher.unconfirmed_batches == 0
    messages = queued_messages()
    assert [body_payload(m) for m in messages] == sent
    assert [m.headers["samples"] for m in messages] == samples
    assert {m.headers["task"] for m in messages} == {PERSIST_BATCH_TASK}


def test_each_message_is_celerys_task_call_with_only_the_headers_that_say_something():
    publisher = BatchPublisher(app=app, abort=threading.Event())
    for payload in payloads(3):
        publisher.publish(payload, samples=200)
    publisher.close()
    messages = queued_messages()
    assert {frozenset(m.headers) for m in messages} == {
        frozenset({"lang", "task", "id", "root_id", "argsrepr", "kwargsrepr", "origin", "samples"})}
    ids = [m.headers["id"] for m in messages]
    assert len(set(ids)) == 3
    assert [m.properties["correlation_id"] for m in messages] == ids == [m.headers["root_id"] for m in messages]
    assert {m.headers["argsrepr"] for m in messages} == {"(<batch of 200 samples>,)"}
    assert [m.decode()[1:] for m in messages] == [[{}, {"callbacks": None, "errbacks": None, "chain": None,
                                                        "chord": None}]] * 3


def test_connecting_names_the_broker_and_queue_without_the_password(caplog):
    caplog.set_level(logging.INFO, logger="telemetry.ingest.streamer.publisher")
    publisher = BatchPublisher(app=app, abort=threading.Event())
    publisher.publish(payloads(1)[0], samples=200)
    publisher.close()
    broker = app.connection_for_write()
    password = broker.password
    connected = [r.getMessage() for r in caplog.records if r.getMessage().startswith("connected to ")]
    assert connected == [f"connected to {broker.as_uri()}; publishing to queue {settings.INGEST_QUEUE}"]
    assert password and f":{password}@" not in caplog.text


def test_publish_returns_before_the_broker_confirms():
    publisher = BatchPublisher(app=app, abort=threading.Event())
    in_flight = []
    for payload in payloads(200):
        publisher.publish(payload, samples=200)
        in_flight.append(publisher.unconfirmed_batches)
    publisher.close()
    assert max(in_flight) > 1  # one round trip per batch would leave at most the batch just sent
    assert publisher.unconfirmed_batches == 0
    assert queued_count() == 200


def corks_recorded(publisher: BatchPublisher) -> list[int]:
    """Whether the publisher's socket was corked (TCP_CORK) as each batch was written, batch by batch."""
    corked: list[int] = []
    send = publisher._send

    def recording_send(batch) -> None:
        corked.append(publisher._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))
        send(batch)

    publisher._send = recording_send
    return corked


def test_a_burst_is_written_when_it_ends_and_leaves_the_socket_uncorked():
    sent = payloads(10)
    publisher = BatchPublisher(app=app, abort=threading.Event(), window_batches=3)
    corked = corks_recorded(publisher)
    with publisher.burst():
        for payload in sent:
            publisher.publish(payload, samples=200)
        assert queued_count() == 0 and publisher.unconfirmed_batches == 10  # held, none written yet
    # Three times the window: the burst went out in parts, each waiting for confirms.
    assert publisher.unconfirmed_batches <= 3
    # Written corked while more of the burst was to follow; the last batch may go uncorked.
    assert corked[:-1] == [1] * 9
    # Corked writes left once it ended: none waits in the kernel for more to fill a segment.
    assert publisher._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0
    publisher.close()
    assert [body_payload(m) for m in queued_messages()] == sent


def test_a_batch_published_alone_is_written_uncorked():
    publisher = BatchPublisher(app=app, abort=threading.Event())
    publisher.publish(payloads(1)[0], samples=200)  # connects on the first publish
    corked = corks_recorded(publisher)
    for payload in payloads(3):
        publisher.publish(payload, samples=200)
    publisher.close()
    assert corked == [0, 0, 0]  # a live node's tick leaves at once, never held for a segment to fill


def test_a_burst_that_fails_leaves_its_batches_to_close():
    sent = payloads(3)
    publisher = BatchPublisher(app=app, abort=threading.Event())
    with pytest.raises(RuntimeError, match="encoder broken"), publisher.burst():
        for payload in sent[:2]:
            publisher.publish(payload, samples=200)
        raise RuntimeError("encoder broken")
    assert queued_count() == 0
    publisher.close()
    assert [body_payload(m) for m in queued_messages()] == sent[:2]


def test_a_full_window_of_batches_waits_for_confirms():
    publisher = BatchPublisher(app=app, abort=threading.Event(), window_batches=3)
    in_flight = []
    for published, payload in enumerate(payloads(60), start=1):
        publisher.publish(payload, samples=200)
        in_flight.append(publisher.unconfirmed_batches)
        if published % 20 == 0:
            # Confirmed means queued: all but the window's last three are in the queue already.
            assert queued_count() >= published - 3
    assert max(in_flight) <= 3
    publisher.close()
    assert queued_count() == 60


def test_a_full_window_of_bytes_waits_for_confirms_and_a_larger_batch_goes_alone():
    sent = payloads(20)
    publisher = BatchPublisher(app=app, abort=threading.Event(), window_bytes=len(sent[0]) * 5 // 2)
    for payload in sent:
        publisher.publish(payload, samples=200)
        assert publisher.unconfirmed_batches <= 2
    alone = BatchPublisher(app=app, abort=threading.Event(), window_bytes=10)
    for payload in sent:
        alone.publish(payload, samples=200)
        assert alone.unconfirmed_batches <= 1
    publisher.close()
    alone.close()
    assert sorted(body_payload(m) for m in queued_messages()) == sorted(sent * 2)


def test_a_dropped_connection_loses_no_batch_and_says_so(caplog):
    caplog.set_level(logging.INFO, logger="telemetry.ingest.streamer.publisher")
    sent = payloads(300)
    publisher = BatchPublisher(app=app, abort=threading.Event(), backoff_max_s=0.5)
    for i, payload in enumerate(sent):
        if i in (100, 200):
            assert drop_broker_connections_of_this_process() >= 1
        publisher.publish(payload, samples=200)
    publisher.close()
    received = [body_payload(m) for m in queued_messages()]
    firsts = list(dict.fromkeys(received))  # duplicates allowed (re-sent before their confirm came)
    assert firsts == sent
    log = caplog.text
    assert log.count("broker unavailable (") == 2 and "holding " in log
    assert log.count("broker reachable again; sent the held batches of ") == 2


def test_a_nacked_batch_is_sent_again(caplog, reject_beyond_two_batches):
    caplog.set_level(logging.INFO, logger="telemetry.ingest.streamer.publisher")
    sent = payloads(4)
    publisher = BatchPublisher(app=app, abort=threading.Event(), backoff_max_s=0.5)

    def publish_all() -> None:
        for payload in sent:
            publisher.publish(payload, samples=200)
        publisher.close()

    publishing = threading.Thread(target=publish_all, daemon=True)
    publishing.start()
    try:
        assert wait_until(lambda: "broker unavailable (BatchNacked" in caplog.text, timeout=30)
        assert publishing.is_alive()  # holding the refused batches
    finally:
        rabbitmqctl("clear_policy", POLICY)
        publishing.join(60)
    assert not publishing.is_alive()
    assert set(body_payload(m) for m in queued_messages()) == set(sent)
    assert "broker reachable again" in caplog.text


def test_a_forced_shutdown_while_the_broker_is_away_says_what_was_unconfirmed():
    away = Celery(set_as_current=False)
    away.config_from_object("django.conf:settings", namespace="CELERY")
    away.conf.broker_write_url = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens there
    abort = threading.Event()
    publisher = BatchPublisher(app=away, abort=abort)
    threading.Timer(0.3, abort.set).start()
    with pytest.raises(PublishAborted, match="shutdown forced with 200 samples unconfirmed"):
        publisher.publish(payloads(1)[0], samples=200)


def test_the_in_process_broker_has_each_batch_once_it_is_sent():
    in_process = Celery(set_as_current=False)
    in_process.config_from_object("django.conf:settings", namespace="CELERY")
    in_process.conf.broker_write_url = "memory://"
    sent = payloads(3)
    publisher = BatchPublisher(app=in_process, abort=threading.Event())
    for payload in sent:
        publisher.publish(payload, samples=200)
        assert publisher.unconfirmed_batches == 0
    publisher.close()
    assert [body_payload(m) for m in queued_messages(in_process)] == sent

