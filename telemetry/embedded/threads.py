"""One-process mode for `manage.py pipeline`: a real Celery worker and the web server in threads.

The worker is Celery's own WorkController with the `solo` pool (one writer is plenty for a local
run); it installs no signal handlers, so the main thread keeps SIGINT/SIGTERM. The in-process `memory://` broker loses whatever is queued when the process
exits, so shutdown stops the producer first and waits for the queue to drain.
"""
import logging
import threading
import time

from celery import Celery
from celery.worker import WorkController
from celery.worker import state as worker_state
from django.conf import settings
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler as DjangoRequestHandler
from django.core.wsgi import get_wsgi_application

from telemetry.ingest.collector.tasks import persist_batch

logger = logging.getLogger(__name__)


class EmbeddedWorker:
    """A Celery worker consuming the ingest queue in a background thread."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._ready = threading.Event()
        self._controller = WorkController(
            app=app,
            pool="solo",
            concurrency=1,
            queues=[settings.INGEST_QUEUE],
            hostname=f"embedded@{settings.INGEST_QUEUE}",
            ready_callback=lambda _consumer: self._ready.set(),
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self._thread = threading.Thread(target=self._controller.start, name="celery-worker", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the embedded Celery worker did not start within {timeout:.0f}s")

    def queued(self) -> int:
        """Messages waiting in the ingest queue plus batches this worker holds or is storing."""
        with self._app.connection_for_write() as connection:
            waiting = connection.default_channel.queue_declare(settings.INGEST_QUEUE, passive=True).message_count
        return waiting + persist_batch.held()

    def drain_and_stop(self, timeout: float = 60.0) -> bool:
        """Wait until every queued batch is stored, then stop; False if batches were still queued."""
        deadline = time.monotonic() + timeout
        drained = False
        while time.monotonic() < deadline:
            if self.queued() == 0:
                drained = True
                break
            time.sleep(0.1)
        worker_state.should_terminate = 0
        self._thread.join(timeout=15)
        worker_state.should_terminate = None
        return drained


class QuietRequestHandler(DjangoRequestHandler):
    """Django's request handler, logging through `logging` instead of stderr noise."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        logger.debug("http %s", format % args)


class EmbeddedWebServer:
    """Django's threaded WSGI server (what runserver uses) in a background thread."""

    def __init__(self, host: str, port: int) -> None:
        self.server = ThreadedWSGIServer((host, port), QuietRequestHandler, ipv6=":" in host)
        self.server.set_app(get_wsgi_application())
        self._thread = threading.Thread(target=self.server.serve_forever, name="web-server", daemon=True)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice, or without start()."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(timeout=10)
        self.server.server_close()


__all__ = ["EmbeddedWorker", "EmbeddedWebServer"]
