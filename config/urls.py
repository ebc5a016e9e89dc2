"""URL routes: the REST API, its schema and docs, operations endpoints and the admin."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from telemetry.api import operations

urlpatterns = [
    path("api/v1/", include("telemetry.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"), name="redoc"),
    # Also answered by OperationsMiddleware before host checks; routed here so they resolve anyway.
    path("health", operations.health, name="health"),
    path("ready", operations.ready, name="ready"),
    path("metrics", operations.metrics, name="metrics"),
    path("admin/", admin.site.urls),
]

handler404 = "telemetry.api.exceptions.not_found"
handler500 = "telemetry.api.exceptions.internal_error"
