"""The Celery app: collectors run `celery -A config worker -Q telemetry.ingest`."""
import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("telemetry")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["telemetry.ingest.collector"])


# By name, so a process that only sends tasks (the streamer) never imports the collector.
app.steps["consumer"].add("telemetry.ingest.collector.heartbeat:HeartbeatStep")


@worker_ready.connect
def _declare_dead_letter_queue(sender, **kwargs) -> None:
    from telemetry.ingest.queues import declare_ingest_queues

    with sender.app.connection_for_write() as connection:
        declare_ingest_queues(connection)
