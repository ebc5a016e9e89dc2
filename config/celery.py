"""The Celery app: collectors run `celery -A config worker -Q telemetry.ingest`."""
import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("telemetry")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["telemetry.ingest"])


def _install_heartbeat() -> None:
    from telemetry.ingest.heartbeat import HeartbeatStep

    app.steps["consumer"].add(HeartbeatStep)


_install_heartbeat()


@worker_ready.connect
def _declare_dead_letter_queue(sender, **kwargs) -> None:
    from telemetry.ingest.queues import declare_ingest_queues

    with sender.app.connection_for_write() as connection:
        declare_ingest_queues(connection)
