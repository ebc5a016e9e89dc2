"""Middleware: operations endpoints answered before host checks, and per-request metrics."""
import time

from telemetry.api import operations
from telemetry.api.metrics import request_observe

OPERATIONS = {"/health": operations.health, "/ready": operations.ready, "/metrics": operations.metrics}


class OperationsMiddleware:
    """Answers /health, /ready and /metrics first: kubelet probes and Prometheus address a pod by its
    IP, which ALLOWED_HOSTS rightly does not list, and a probe must not depend on sessions or CSRF."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = OPERATIONS.get(request.path_info.rstrip("/") or "/")
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)


class RequestMetricsMiddleware:
    """Counts every request and its latency by method, route pattern (not raw path) and status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = f"/{match.route}" if match is not None and match.route else "unmatched"
        method = request.method if request.method in {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"} else "other"
        request_observe(method=method, route=route, status=response.status_code, started=started)
        return response
