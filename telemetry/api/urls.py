"""Routes of the read API, mounted at /api/v1; a device's routes take its id (a whole GPU's is its UUID)."""
from django.urls import path

from telemetry.api import views

app_name = "api"
urlpatterns = [
    path("gpus", views.GpuListView.as_view(), name="gpu-list"),
    path("gpus/<str:id>", views.GpuDetailView.as_view(), name="gpu-detail"),
    path("gpus/<str:id>/telemetry", views.GpuTelemetryView.as_view(), name="gpu-telemetry"),
    path("gpus/<str:id>/telemetry/summary", views.GpuTelemetrySummaryView.as_view(), name="gpu-telemetry-summary"),
    path("gpus/<str:id>/latest", views.GpuLatestView.as_view(), name="gpu-latest"),
    path("hosts", views.HostListView.as_view(), name="host-list"),
    path("hosts/<str:hostname>/gpus", views.HostGpuListView.as_view(), name="host-gpus"),
    path("metrics", views.MetricListView.as_view(), name="metric-list"),
]
