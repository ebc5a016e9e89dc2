"""Publishes encoded batches as the collector's task, by name; holds each batch until the broker confirms it."""
import logging
import select
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import takewhile
from typing import Any

import amqp.exceptions
import kombu.exceptions
from celery import Celery
from kombu import Connection, Producer
from kombu.entity import PERSISTENT_DELIVERY_MODE
from kombu.utils.uuid import uuid

from telemetry.ingest.queues import declare_ingest_queues, ingest_queue
from telemetry.ingest.wire import PERSIST_BATCH_TASK

logger = logging.getLogger(__name__)

BROKER_ERRORS = (OSError, kombu.exceptions.KombuError, amqp.exceptions.AMQPError)
# Enough batches in flight to hide the broker's round trip; few enough bytes for a streamer pod's memory.
DEFAULT_WINDOW_BATCHES = 128
DEFAULT_WINDOW_BYTES = 8 * 2**20
# How long one wait for confirms lasts before a forced shutdown is noticed.
_CONFIRM_POLL_S = 0.5


class PublishAborted(RuntimeError):
    """Shutdown was forced while a batch was still unconfirmed."""


class BatchNacked(Exception):
    """The broker refused a batch (basic.nack): it is sent again like any batch a broker error left unconfirmed."""


@dataclass(frozen=True)
class _Batch:
    payload: bytes
    samples: int


class BatchPublisher:
    """One broker connection; batches are pipelined: `publish` returns once the batch is written.

    Every batch is held, in order, until the broker confirms it. Only when the window of unconfirmed
    batches (`window_batches`, `window_bytes`) is full does `publish` wait for confirms; `close`
    waits for all of them. Batches published inside `burst()` are written together when it ends.
    After a broker error (or a nack) the publisher reconnects with backoff and sends every held
    batch again: one the broker already had is then stored twice, which is safe because the
    collector stores idempotently.
    """

    def __init__(self, *, app: Celery, abort: threading.Event, backoff_max_s: float = 30.0,
                 window_batches: int = DEFAULT_WINDOW_BATCHES, window_bytes: int = DEFAULT_WINDOW_BYTES) -> None:
        if window_batches < 1 or window_bytes < 1:
            raise ValueError("the window must hold at least one batch and one byte")
        self._app = app
        self._abort = abort
        self._backoff_max_s = backoff_max_s
        self._window_batches = window_batches
        self._window_bytes = window_bytes
        self._queue = ingest_queue()
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        # Only an AMQP broker confirms; the in-process broker has a message once it is sent.
        self._confirms = False
        self._socket: socket.socket | None = None  # an AMQP connection's: polled for confirms, corked for bursts
        self._readable: select.poll | None = None
        self._message = _TaskMessage(app)
        self._next_tag = 1
        # Held batches, oldest first: those still to be sent on this connection, then those sent (by delivery tag).
        self._unsent: deque[_Batch] = deque()
        self._unconfirmed: dict[int, _Batch] = {}
        self._unconfirmed_bytes = 0
        self._bursting = False

    @property
    def unconfirmed_batches(self) -> int:
        """Batches published that the broker has not confirmed yet."""
        return len(self._unsent) + len(self._unconfirmed)

    def publish(self, payload: bytes, *, samples: int) -> None:
        """Send one batch (inside `burst()`, once the burst ends); waits for confirms only while the
        window has no room for it."""
        self._unsent.append(_Batch(payload, samples))
        if not self._bursting:
            self._until_done(self._send_unsent)

    @contextmanager
    def burst(self) -> Iterator[None]:
        """Hold the batches published inside, then write them in one go: the broker reads them
        together instead of waking for each. What an error inside leaves held, `close` sends."""
        self._bursting = True
        try:
            yield
        finally:
            self._bursting = False
        self._until_done(self._send_unsent)

    def close(self) -> None:
        """Wait until the broker has confirmed every batch, then release the connection."""
        try:
            if self.unconfirmed_batches:
                self._until_done(self._confirm_all)
        except BaseException:
            self._drop_connection()  # a forced exit does not wait for the broker's goodbye
            raise
        self._release()

    def _until_done(self, step: Callable[[], None]) -> None:
        """Run `step` on a connection; after a broker error reconnect with backoff and run it again."""
        attempt = 0
        held = 0
        while True:
            try:
                self._connect()
                step()
            except (*BROKER_ERRORS, BatchNacked) as exc:
                held = self._held_samples()
                self._drop_connection()
                delay = min(self._backoff_max_s, 0.5 * 2**attempt)
                attempt += 1
                logger.warning(
                    "broker unavailable (%s: %s); holding %d samples, retry %d in %.1fs",
                    type(exc).__name__, exc, held, attempt, delay,
                )
                if self._abort.wait(delay):
                    raise PublishAborted(f"shutdown forced with {held} samples unconfirmed") from exc
                continue
            if attempt:
                logger.info("broker reachable again; sent the held batches of %d samples", held)
            return

    def _send_unsent(self) -> None:
        """Send the held batches not yet sent on this connection, in order, each once the window has
        room; those the window has room for are written corked, as one burst."""
        while self._unsent:
            while self._window_full(len(self._unsent[0].payload)):
                self._await_confirms()
            with self._corked(len(self._unsent) > 1):
                while self._unsent and not self._window_full(len(self._unsent[0].payload)):
                    batch = self._unsent[0]
                    self._send(batch)
                    self._unsent.popleft()
                    if self._confirms:
                        self._unconfirmed[self._next_tag] = batch
                        self._unconfirmed_bytes += len(batch.payload)
                        self._next_tag += 1
        self._take_ready_confirms()

    @contextmanager
    def _corked(self, several: bool) -> Iterator[None]:
        """Writes inside leave in full TCP segments, and the rest as it ends (Linux's TCP_CORK), so
        that the broker gets several messages in one read; elsewhere, as they are written."""
        sock = self._socket if several and hasattr(socket, "TCP_CORK") else None
        if sock is None:
            yield
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        try:
            yield
        finally:
            with suppress(OSError):  # a broken connection has nothing left to send
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)

    def _confirm_all(self) -> None:
        self._send_unsent()
        while self._unconfirmed:
            self._await_confirms()

    def _window_full(self, size: int) -> bool:
        """Whether a batch of `size` bytes must wait; a batch larger than the window goes alone."""
        in_flight = len(self._unconfirmed)
        return in_flight > 0 and (
            in_flight >= self._window_batches or self._unconfirmed_bytes + size > self._window_bytes
        )

    def _await_confirms(self) -> None:
        if self._abort.is_set():
            raise PublishAborted(f"shutdown forced with {self._held_samples()} samples unconfirmed")
        self._drain(timeout=_CONFIRM_POLL_S)

    def _take_ready_confirms(self) -> None:
        """Process the confirms that have already arrived, without waiting for more.

        The socket is polled first: draining with no wait sets the socket's timeout twice and
        fails a read whenever nothing came, on every batch."""
        if self._confirms:
            while self._readable.poll(0) and self._drain(timeout=0):
                pass

    def _drain(self, *, timeout: float) -> bool:
        """Handle one event from the broker (acks and nacks reach `_on_ack`, `_on_nack`); False if none came."""
        try:
            self._connection.drain_events(timeout=timeout)
        except socket.timeout:
            return False
        return True

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        tags = list(takewhile(lambda tag: tag <= delivery_tag, self._unconfirmed)) if multiple else [delivery_tag]
        for tag in tags:
            self._unconfirmed_bytes -= len(self._unconfirmed.pop(tag).payload)

    def _on_nack(self, delivery_tag: int, _multiple: bool) -> None:
        raise BatchNacked(f"the broker refused delivery tag {delivery_tag}")

    def _send(self, batch: _Batch) -> None:
        """Publish the collector's task message for the batch with kombu's producer: `send_task`
        around the same publish costs as much again (its result object, signals and option
        lookups), on every message."""
        body, headers, properties = self._message.of(batch)
        self._producer.publish(
            body, exchange=self._queue.exchange, routing_key=self._queue.routing_key, headers=headers,
            serializer=self._app.conf.task_serializer, delivery_mode=PERSISTENT_DELIVERY_MODE,
            retry=False, **properties,
        )

    def _held_samples(self) -> int:
        return sum(batch.samples for batch in (*self._unconfirmed.values(), *self._unsent))

    def _connect(self) -> None:
        if self._connection is not None:
            return
        # Confirms are collected as they come (`_on_ack`), not awaited after each message as the app's option would.
        connection = self._app.connection_for_write(transport_options={"confirm_publish": False})
        try:
            connection.ensure_connection(max_retries=1)
            declare_ingest_queues(connection)
            channel = connection.default_channel
            self._confirms = connection.transport.driver_type == "amqp"
            if self._confirms:
                channel.confirm_select()
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
                sock = connection.connection.sock
                # py-amqp turns Nagle's algorithm off, for request and reply. Batches are pipelined:
                # those written while earlier ones are unacknowledged leave together, and the broker
                # reads them in one go.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
                self._socket = sock
                self._readable = select.poll()
                self._readable.register(sock, select.POLLIN)
        except BaseException:
            connection.collect()
            raise
        self._producer = self._app.amqp.Producer(channel, auto_declare=False)
        self._connection = connection
        logger.info("connected to %s; publishing to queue %s", connection.as_uri(), self._queue.name)
        self._next_tag = 1  # a channel numbers its deliveries from 1 once in confirm mode

    def _drop_connection(self) -> None:
        """Forget a broken connection without talking to the broker; everything unconfirmed is to be sent again."""
        self._unsent.extendleft(reversed(self._unconfirmed.values()))
        self._unconfirmed.clear()
        self._unconfirmed_bytes = 0
        if self._connection is not None:
            self._connection.collect()
        self._connection = self._producer = self._socket = self._readable = None

    def _release(self) -> None:
        if self._connection is not None:
            with suppress(*BROKER_ERRORS):
                self._connection.release()
        self._connection = self._producer = self._socket = self._readable = None


class _TaskMessage:
    """Celery's task message for a batch, built by Celery once and reused.

    Celery's protocol carries about twenty headers, most of them empty for this task (no ETA, no
    group, no time limits, no stamps); the broker client encodes each in Python and the collector
    decodes each again, on every message. The message keeps the ones with a value: the task, its
    id, the sender (`origin`), what logs show of the argument, and the batch's samples, by which
    the collector groups messages without decoding them."""

    _EMPTY = (None, 0, False, {}, [None, None])

    def __init__(self, app: Celery) -> None:
        template = app.amqp.as_task_v2("", PERSIST_BATCH_TASK, args=(b"",))
        self._headers = {name: value for name, value in template.headers.items() if value not in self._EMPTY}
        _args, self._kwargs, self._embed = template.body
        self._properties = template.properties

    def of(self, batch: _Batch) -> tuple[Any, dict, dict]:
        """(body, headers, properties) of the batch's message, under a task id of its own."""
        task_id = uuid()
        headers = {**self._headers, "id": task_id, "root_id": task_id, "samples": batch.samples,
                   # What logs and monitors show of the task's argument, instead of a repr of its bytes.
                   "argsrepr": f"(<batch of {batch.samples} samples>,)"}
        return ((batch.payload,), self._kwargs, self._embed), headers, {**self._properties, "correlation_id": task_id}
