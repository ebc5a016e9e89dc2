"""Every API error is JSON with a `detail`; bad input also lists `errors` per query parameter."""
import logging

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.views.defaults import page_not_found, server_error
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


def api_exception_handler(exc, context):
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is down or restarting: a retryable 503 (and /ready says which), not a 500.
        logger.warning("database unavailable: %s", exc)
        return Response({"detail": "The database is unavailable; retry shortly."}, status=503, headers={"Retry-After": "5"})
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        errors = {str(name): _messages(messages) for name, messages in errors.items()}
        names = ", ".join(sorted(errors))
        response.data = {"detail": f"Invalid query parameter(s): {names}.", "errors": errors}
    return response


def _messages(detail, prefix: str = "") -> list[str]:
    """Flatten DRF's nested error detail (a repeated parameter's errors come keyed by position)."""
    if isinstance(detail, dict):
        return [m for key, value in detail.items() for m in _messages(value, f"{prefix}value {int(key) + 1 if str(key).isdigit() else key}: ")]
    if isinstance(detail, list):
        return [m for item in detail for m in _messages(item, prefix)]
    return [f"{prefix}{detail}"]


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def internal_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return server_error(request)
