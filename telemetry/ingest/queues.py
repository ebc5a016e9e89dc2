"""The ingest queue's topology on RabbitMQ: the queue, its dead-letter exchange and dead-letter queue."""
from django.conf import settings
from kombu import Connection, Queue


def dead_letter_queue() -> Queue:
    return Queue(
        settings.INGEST_DEAD_LETTER_QUEUE,
        settings.INGEST_DEAD_LETTER_EXCHANGE,
        routing_key=settings.INGEST_DEAD_LETTER_QUEUE,
        durable=True,
    )


def ingest_queue() -> Queue:
    return settings.CELERY_TASK_QUEUES[0]


def declare_ingest_queues(connection: Connection) -> None:
    """Declare all three; a dead-letter exchange that does not exist silently drops what it gets."""
    channel = connection.default_channel
    for queue in (dead_letter_queue(), ingest_queue()):
        queue.bind(channel).declare()
