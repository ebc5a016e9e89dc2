"""Publishes encoded batches as the collector's task, by name; holds a batch until the broker confirms it."""
import logging
import threading

import amqp.exceptions
import kombu.exceptions
from celery import Celery
from django.conf import settings
from kombu import Connection

from telemetry.ingest.queues import declare_ingest_queues
from telemetry.ingest.wire import PERSIST_BATCH_TASK

logger = logging.getLogger(__name__)

BROKER_ERRORS = (OSError, kombu.exceptions.KombuError, amqp.exceptions.AMQPError)


class PublishAborted(RuntimeError):
    """Shutdown was forced while a batch was still unconfirmed."""


class BatchPublisher:
    """One broker connection; `publish` returns only once the broker has the batch.

    With publisher confirms on (the amqp transport), a publish that raises may or may not have
    reached the queue; sending it again is safe because the collector stores idempotently.
    """

    def __init__(self, *, app: Celery, abort: threading.Event, backoff_max_s: float = 30.0) -> None:
        self._app = app
        self._abort = abort
        self._backoff_max_s = backoff_max_s
        self._connection: Connection | None = None

    def publish(self, payload: bytes, *, samples: int) -> None:
        attempt = 0
        while True:
            try:
                self._app.send_task(
                    PERSIST_BATCH_TASK,
                    args=(payload,),
                    connection=self._connect(),
                    retry=False,
                    queue=settings.INGEST_QUEUE,
                    routing_key=settings.INGEST_QUEUE,
                )
                if attempt:
                    logger.info("broker reachable again; sent the held batch of %d samples", samples)
                return
            except BROKER_ERRORS as exc:
                self._disconnect()
                delay = min(self._backoff_max_s, 0.5 * 2**attempt)
                attempt += 1
                logger.warning(
                    "broker unavailable (%s: %s); holding %d samples, retry %d in %.1fs",
                    type(exc).__name__, exc, samples, attempt, delay,
                )
                if self._abort.wait(delay):
                    raise PublishAborted(f"shutdown forced with {samples} samples unconfirmed") from exc

    def close(self) -> None:
        self._disconnect()

    def _connect(self) -> Connection:
        if self._connection is None:
            connection = self._app.connection_for_write()
            connection.ensure_connection(max_retries=1)
            declare_ingest_queues(connection)
            self._connection = connection
        return self._connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except BROKER_ERRORS:
                pass
            self._connection = None
