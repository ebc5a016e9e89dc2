"""SIGTERM/SIGINT handling for long-running commands: the first signal stops, a second forces."""
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


@contextmanager
def graceful_shutdown() -> Iterator[tuple[threading.Event, threading.Event]]:
    """Yields (stop, abort): the first SIGTERM/SIGINT sets stop, the second sets abort."""
    stop, abort = threading.Event(), threading.Event()

    def handle(signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.warning("%s again: stopping now, without waiting for held batches", name)
            abort.set()
        else:
            logger.info("%s: finishing the batches in hand, then exiting (send again to force)", name)
            stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop, abort
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
