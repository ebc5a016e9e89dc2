"""The collector's Celery task: decode a batch, store it through the service, retry or dead-letter."""
import logging

from celery import shared_task
from celery.exceptions import Reject
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from telemetry.ingest.collector.services import counters_add, samples_persist
from telemetry.ingest.wire import PERSIST_BATCH_TASK, BatchDecodeError, decode_batch
from telemetry.models import IngestCounter

logger = logging.getLogger(__name__)

# Database errors that pass on their own (a restart, a failover, a dropped connection).
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
RETRY_BACKOFF_MAX_S = 60


def retry_delay(retries: int) -> int:
    """Exponential backoff in seconds: 1, 2, 4, … capped at RETRY_BACKOFF_MAX_S."""
    return min(RETRY_BACKOFF_MAX_S, 2**retries)


def dead_letter(reason: str, *, delivery_tag: object) -> Reject:
    """Count and log a batch that can never succeed; rejecting it routes it to the dead-letter queue."""
    logger.error("dead-lettering batch %s: %s", delivery_tag, reason, extra={"reason": reason})
    try:
        counters_add({IngestCounter.BATCHES_DEAD_LETTERED: 1})
    except TRANSIENT_ERRORS:
        logger.exception("could not count a dead-lettered batch")
    return Reject(reason, requeue=False)


# max_retries=None: Celery never gives up by itself; COLLECTOR_MAX_RETRIES decides, then dead-letters.
@shared_task(
    name=PERSIST_BATCH_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None
)
def persist_batch(self, payload: bytes) -> dict[str, int]:
    tag = self.request.delivery_info.get("delivery_tag") if self.request.delivery_info else self.request.id
    try:
        batch = decode_batch(payload)
    except BatchDecodeError as exc:
        raise dead_letter(str(exc), delivery_tag=tag) from None
    try:
        result = samples_persist(batch=batch, max_per_gpu=settings.COLLECTOR_MAX_ENTRIES_PER_GPU)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= settings.COLLECTOR_MAX_RETRIES:
            raise dead_letter(f"database still failing after {self.request.retries} retries: {exc}", delivery_tag=tag) from None
        delay = retry_delay(self.request.retries)
        logger.warning("batch of %d samples: database error, retry %d in %ds: %s", len(batch), self.request.retries + 1, delay, exc)
        raise self.retry(exc=exc, countdown=delay)
    except DatabaseError as exc:  # bad data the database refuses: retrying cannot help
        raise dead_letter(f"database refused the batch: {exc}", delivery_tag=tag) from None
    except Exception as exc:  # a bug or the soft time limit: keep the batch for inspection and replay
        logger.exception("batch of %d samples failed", len(batch))
        raise dead_letter(f"{type(exc).__name__}: {exc}", delivery_tag=tag) from None
    logger.debug("stored %d of %d samples (%d duplicates, %d trimmed)", result.stored, result.received, result.duplicates, result.trimmed)
    return {"stored": result.stored, "duplicates": result.duplicates, "trimmed": result.trimmed}
