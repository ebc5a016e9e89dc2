"""Operations endpoints: /health (liveness, no database), /ready (PostgreSQL and broker), /metrics."""
import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST

from telemetry.api.metrics import metrics_text

logger = logging.getLogger(__name__)
READY_TIMEOUT_SECONDS = 3


def health(request):
    return JsonResponse({"status": "ok"})


def _broker_name(url: str) -> str:
    return "RabbitMQ" if url.startswith(("amqp", "pyamqp")) else f"broker ({url.split(':', 1)[0]})"


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return None
    except DatabaseError as exc:
        # A dead connection stays dead for this request; close it so the next probe reconnects.
        connection.close_if_unusable_or_obsolete()
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_broker(url: str) -> str | None:
    if url.startswith("memory://"):
        return None  # in-process broker of the embedded mode: up whenever this process is
    try:
        with Connection(url, connect_timeout=READY_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=READY_TIMEOUT_SECONDS)
        return None
    except Exception as exc:  # kombu raises transport-specific errors; any of them means not ready
        return str(exc) or type(exc).__name__


def ready(request):
    checks = {}
    failed = []
    db_error = _check_database()
    db_name = "PostgreSQL"
    checks[db_name] = db_error or "ok"
    if db_error:
        failed.append(db_name)
    broker_url = settings.CELERY_BROKER_URL
    broker_error = _check_broker(broker_url)
    broker_name = _broker_name(broker_url)
    checks[broker_name] = broker_error or "ok"
    if broker_error:
        failed.append(broker_name)
    if failed:
        logger.warning("not ready: %s unreachable", ", ".join(failed), extra={"checks": checks})
        return JsonResponse(
            {"status": "unavailable", "detail": f"{' and '.join(failed)} unreachable.", "unreachable": failed, "checks": checks},
            status=503,
        )
    return JsonResponse({"status": "ok", "checks": checks})


def metrics(request):
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
