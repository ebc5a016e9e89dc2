"""The collector's Celery task: stores the batches that are queued as one group, and acknowledges
or dead-letters each message by what became of its own batch.

The task is a celery-batches task: the worker gathers messages until they hold
COLLECTOR_GROUP_SAMPLES samples, or for COLLECTOR_GROUP_WAIT_MS from the group's first message,
and hands the group to a pool process. Storing a group is one transaction and one COPY
(`batches_persist`), however many streamers its batches came from. celery-batches itself
acknowledges every message of a group once the task returns, whatever became of it;
`GroupedBatches` instead takes the task's verdict per message, so that:
- a message is acknowledged only after the transaction holding its batch has committed; a worker
  killed in the middle of a group leaves every message of it to be redelivered, and storing is
  idempotent, so nothing is stored twice;
- a message that cannot be decoded, or whose batch the database refuses, is rejected alone to
  the dead-letter queue, and the rest of its group is stored.
With RabbitMQ a group's stored messages are acknowledged with one frame (`multiple`), once no
older group is still being stored.
"""
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from celery import shared_task
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from kombu.message import Message

from telemetry.ingest.collector.services import batches_persist, counters_add
from telemetry.ingest.wire import PERSIST_BATCH_TASK, Batch, BatchDecodeError, decode_batch
from telemetry.models import IngestCounter

logger = logging.getLogger(__name__)

# Database errors that pass on their own (a restart, a failover, a dropped connection).
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
RETRY_BACKOFF_MAX_S = 60
# A message's verdict: None once its batch is stored (acknowledge it), or why it is dead-lettered.
Verdict = str | None
# The key of a request's `request_dict` that says why its message's body could not be decoded.
UNDECODABLE = "undecodable"
# What a streamer's message weighs without the `samples` header (older streamers): about a
# sample per 10 bytes of an encoded batch.
BYTES_PER_SAMPLE = 10


def retry_delay(retries: int) -> int:
    """Exponential backoff in seconds: 1, 2, 4, … capped at RETRY_BACKOFF_MAX_S."""
    return min(RETRY_BACKOFF_MAX_S, 2**retries)


def retry_delays(max_retries: int, budget_s: float) -> list[int]:
    """The waits before each retry: at most `max_retries`, and no more than `budget_s` in all.

    The budget is half the task's soft time limit: a group the database keeps failing is then
    dead-lettered by the task, instead of its pool process being killed by the time limit and the
    group redelivered, again and again, for as long as the outage lasts."""
    delays: list[int] = []
    for retries in range(max_retries):
        delay = retry_delay(retries)
        if sum(delays) + delay > budget_s:
            break
        delays.append(delay)
    return delays


def message_samples(message: Message) -> int:
    """The samples a queued message holds: the streamer's `samples` header, or an estimate by size."""
    samples = (message.headers or {}).get("samples")
    return samples if isinstance(samples, int) and samples >= 0 else len(message.body) // BYTES_PER_SAMPLE


@dataclass(eq=False)
class _Group:
    """Messages handed to a pool process as one group, and those of them it stored."""
    messages: list[Message]
    stored: list[Message] = field(default_factory=list)
    settled: bool = False  # the task returned (or its pool process died)


class GroupedBatches(Batches):
    """celery-batches' Batches, gathering messages by their samples and settling each message by
    the verdict the task returns for it.

    The worker's consumer runs `gather` for every message, in one process for all the pool's, so
    it does only what a group needs: the message, its samples, the timer. Celery's own request
    object (its headers copied, time limits, ETA and expiry parsed, signals sent) is never built;
    a pool process gets each message as a SimpleRequest with the task's arguments, its id and its
    delivery tag."""

    abstract = True
    flush_samples = 20000

    def __init__(self) -> None:
        super().__init__()
        self._gathered: list[Message] = []
        self._samples = 0
        self._storing: deque[_Group] = deque()  # groups handed to a pool process and not acknowledged, oldest first
        self._hostname = ""
        self._connection_errors: tuple = ()
        self._ack_multiple = False

    def Strategy(self, task, app, consumer) -> Callable:
        # Called on every connection to the broker. After a lost one, what was gathered on it is
        # redelivered by the broker (and could not be acknowledged on the new one), and Celery has
        # cleared the timer that flushed groups by time: forget both, so the next message starts a
        # new group and a new timer.
        self._gathered_forget()
        self._pool = consumer.pool
        self._hostname = consumer.hostname
        self._connection_errors = consumer.connection_errors
        # RabbitMQ acknowledges every message up to a delivery tag at once; kombu's in-process broker only the one.
        self._ack_multiple = consumer.connection.transport.driver_type == "amqp"
        timer = consumer.timer

        def gather(message: Message, *_args, **_kwargs) -> None:
            samples = message_samples(message)
            # A group never grows past flush_samples: the task would store the message over it
            # as a second part, a transaction of its own.
            if self._gathered and self._samples + samples > self.flush_samples:
                self._do_flush()
            if not self._gathered:
                # A group waits from its own first message: celery-batches' timer, on a fixed
                # period, cut short the group that followed a full one.
                self._tref = timer.call_after(self.flush_interval, self._do_flush)
            self._gathered.append(message)
            self._samples += samples
            if self._samples >= self.flush_samples:
                self._do_flush()

        return gather

    def _gathered_forget(self) -> None:
        self._gathered = []
        self._samples = 0
        self._tref = None

    def held(self) -> int:
        """Messages this worker has received and not acknowledged or rejected yet."""
        return len(self._gathered) + sum(len(group.messages) for group in self._storing)

    def _do_flush(self) -> None:
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        messages, self._gathered, self._samples = self._gathered, [], 0
        if messages:
            self.flush(messages)

    def flush(self, messages: list[Message]):
        group = _Group(messages)
        self._storing.append(group)

        def settle(verdicts: list[Verdict] | None) -> None:
            if verdicts is None:  # the task itself failed: keep every message for inspection and replay
                verdicts = ["the group's task failed; see the worker's log"] * len(messages)
            for message, verdict in zip(messages, verdicts):
                if verdict is None:
                    group.stored.append(message)
                else:
                    message.reject_log_error(logger, self._connection_errors, requeue=False)
            self._settled(group)

        def requeue(_exc_info) -> None:  # the pool process died (killed, out of memory): deliver again
            for message in messages:
                message.reject_log_error(logger, self._connection_errors, requeue=True)
            self._settled(group)

        requests = ([self._request(message) for message in messages],)
        return self._pool.apply_async(apply_batches_task, (self, requests, 0, None), callback=settle,
                                      error_callback=requeue)

    def _settled(self, group: _Group) -> None:
        """Acknowledge what is stored: with RabbitMQ, one frame for each group up to the oldest still
        being stored (`multiple` acknowledges every message up to a delivery tag, and its refused
        messages are already rejected); with kombu's in-process broker, which acknowledges only the
        tag given, each message."""
        group.settled = True
        if not self._ack_multiple:
            self._storing.remove(group)
            for message in group.stored:
                message.ack_log_error(logger, self._connection_errors)
            return
        while self._storing and self._storing[0].settled:
            done = self._storing.popleft()
            if done.stored:
                done.stored[-1].ack_log_error(logger, self._connection_errors, multiple=True)

    def _request(self, message: Message) -> SimpleRequest:
        """What the task needs of a message: its arguments, its id and its delivery tag, for the log.
        A body that cannot be decoded gives no arguments, and why in `request_dict["undecodable"]`:
        the task dead-letters it with that reason."""
        args: tuple | list = ()
        problem: dict[str, str] = {}
        try:
            args, _kwargs, _embed = message.decode()
        except Exception as exc:  # a body kombu cannot decode, or not Celery's (args, kwargs, embed)
            problem = {UNDECODABLE: f"{type(exc).__name__}: {exc}"}
        headers = message.headers or {}
        return SimpleRequest(
            id=headers.get("id"), name=self.name, args=args if isinstance(args, (list, tuple)) else (), kwargs={},
            delivery_info={"delivery_tag": message.delivery_tag}, hostname=self._hostname, ignore_result=True,
            reply_to=None, correlation_id=None, request_dict=problem,
        )


# Acknowledging, retrying and dead-lettering are GroupedBatches' and this task's own work.
@shared_task(
    name=PERSIST_BATCH_TASK, base=GroupedBatches,
    flush_samples=settings.COLLECTOR_GROUP_SAMPLES, flush_interval=settings.COLLECTOR_GROUP_WAIT_MS / 1000,
)
def persist_batch(requests: list[SimpleRequest]) -> list[Verdict]:
    """Store the group's batches; one verdict per request, in order.

    The database session is kept for the next group (its staging table, prepared statements and
    the server's caches) up to DATABASE_CONN_MAX_AGE, unless anything in this group failed: a
    query cut short (by the time limit, say) can leave a session that looks usable and is not.
    As Django does around a request, a session past its age is also closed before the group."""
    connection.close_if_unusable_or_obsolete()
    failed = True
    try:
        verdicts = _group_verdicts(requests)
        failed = any(verdict is not None for verdict in verdicts)
        return verdicts
    finally:
        if failed:
            connection.close()
        else:
            connection.close_if_unusable_or_obsolete()


def _group_verdicts(requests: list[SimpleRequest]) -> list[Verdict]:
    verdicts: list[Verdict] = [None] * len(requests)
    decoded: list[tuple[int, Batch]] = []
    for i, request in enumerate(requests):
        try:
            decoded.append((i, decode_batch(_payload(request))))
        except BatchDecodeError as exc:
            verdicts[i] = str(exc)
    for part in _parts(decoded, settings.COLLECTOR_GROUP_SAMPLES):
        for i, reason in _store_isolating(part).items():
            verdicts[i] = reason
    dead = [(request, verdict) for request, verdict in zip(requests, verdicts) if verdict is not None]
    if dead:
        _dead_letters_count(dead)
    return verdicts


def _payload(request: SimpleRequest) -> bytes:
    if problem := (request.request_dict or {}).get(UNDECODABLE):
        raise BatchDecodeError(f"the message's body cannot be decoded ({problem})")
    if len(request.args) != 1 or not isinstance(request.args[0], bytes):
        raise BatchDecodeError("the message is not a task call with one encoded batch")
    return request.args[0]


def _parts(decoded: list[tuple[int, Batch]], samples: int) -> Iterator[list[tuple[int, Batch]]]:
    """The group in consecutive parts of at most `samples` samples (a batch larger than that alone)."""
    part: list[tuple[int, Batch]] = []
    size = 0
    for item in decoded:
        if part and size + len(item[1]) > samples:
            yield part
            part, size = [], 0
        part.append(item)
        size += len(item[1])
    if part:
        yield part


class DatabaseUnavailable(RuntimeError):
    """The database kept failing for all the retries `retry_delays` allows."""


def _store_isolating(part: list[tuple[int, Batch]]) -> dict[int, str]:
    """Store a part as one; when the database refuses it, each batch alone, so that only the batch
    it refuses is dead-lettered. Returns {position: reason} of the batches not stored."""
    try:
        _store_retrying([batch for _, batch in part])
        return {}
    except DatabaseUnavailable as exc:
        return {i: str(exc) for i, _ in part}
    except Exception as exc:  # data the database refuses, or a bug: find the batch it is about
        if len(part) == 1:
            if not isinstance(exc, DatabaseError):
                logger.exception("a batch of %d samples failed", len(part[0][1]))
            return {part[0][0]: _refusal(exc)}
        logger.warning("a group of %d batches failed (%s); storing each alone", len(part), _refusal(exc))
        refused: dict[int, str] = {}
        for item in part:
            refused.update(_store_isolating([item]))
        return refused


def _store_retrying(batches: list[Batch]) -> None:
    """`batches_persist`, retried with backoff while the database is unreachable; the messages stay
    unacknowledged meanwhile."""
    samples = sum(map(len, batches))
    delays = retry_delays(settings.COLLECTOR_MAX_RETRIES, settings.CELERY_TASK_SOFT_TIME_LIMIT / 2)
    for retries in range(len(delays) + 1):
        try:
            result = batches_persist(batches, max_per_gpu=settings.COLLECTOR_MAX_ENTRIES_PER_GPU)
            logger.debug("stored %d of %d samples from %d batches (%d duplicates, %d trimmed)",
                         result.stored, result.received, len(batches), result.duplicates, result.trimmed)
            return
        except TRANSIENT_ERRORS as exc:
            connection.close()  # the next attempt opens a new connection
            if retries == len(delays):
                raise DatabaseUnavailable(f"database still failing after {retries} retries: {exc}") from exc
            logger.warning("%d batches (%d samples): database error, retry %d in %ds: %s",
                           len(batches), samples, retries + 1, delays[retries], exc)
            time.sleep(delays[retries])


def _refusal(exc: Exception) -> str:
    if isinstance(exc, DatabaseError):
        return f"database refused the batch: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _dead_letters_count(dead: list[tuple[SimpleRequest, str]]) -> None:
    """Log each batch that can never succeed and count them; rejecting them routes them to the
    dead-letter queue."""
    for request, reason in dead:
        tag = (request.delivery_info or {}).get("delivery_tag", request.id)
        logger.error("dead-lettering batch %s: %s", tag, reason, extra={"reason": reason})
    try:
        counters_add({IngestCounter.BATCHES_DEAD_LETTERED: len(dead)})
    except TRANSIENT_ERRORS:
        logger.exception("could not count %d dead-lettered batches", len(dead))
