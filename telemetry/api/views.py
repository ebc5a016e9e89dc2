"""Read-only JSON endpoints under /api/v1: devices (whole GPUs and MIG instances), hosts, metrics
and each device's telemetry, a device named by its id (`Gpu.device_id`).

Each view reads its parameters (a query serializer), calls a selector and returns; queries live in
selectors, window and bucket rules in serializers, cursor pages in pagination, the OpenAPI
declarations in schema.
"""
from django.conf import settings
from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry.api import schema, selectors
from telemetry.api.filters import GpuFilter
from telemetry.api.pagination import GpuPagination, SampleCursorPagination
from telemetry.api.serializers import (
    GpuSerializer,
    HostSerializer,
    LatestSerializer,
    MetricListSerializer,
    SummaryQuerySerializer,
    SummarySerializer,
    TelemetryQuerySerializer,
)


@schema.GPU_LIST
class GpuListView(generics.ListAPIView):
    serializer_class = GpuSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = GpuFilter
    pagination_class = GpuPagination

    def get_queryset(self):
        return selectors.devices()


@schema.GPU_DETAIL
class GpuDetailView(generics.RetrieveAPIView):
    serializer_class = GpuSerializer

    def get_object(self):
        return selectors.gpu_get(device_id=self.kwargs["id"])


@schema.HOST_LIST
class HostListView(generics.ListAPIView):
    serializer_class = HostSerializer
    pagination_class = GpuPagination

    def get_queryset(self):
        return selectors.hosts_summary()


@schema.HOST_GPU_LIST
class HostGpuListView(generics.ListAPIView):
    serializer_class = GpuSerializer
    pagination_class = GpuPagination

    def get_queryset(self):
        return selectors.host_gpus(hostname=self.kwargs["hostname"])


class MetricListView(APIView):
    @schema.METRIC_LIST
    def get(self, request):
        totals = selectors.metric_totals()
        return Response(MetricListSerializer({"cache_seconds": settings.API_METRICS_CACHE_SECONDS, "results": totals}).data)


class GpuTelemetryView(APIView):
    pagination_class = SampleCursorPagination

    @schema.GPU_TELEMETRY
    def get(self, request, id: str):
        query = TelemetryQuerySerializer.read(request, device_id=id)
        paginator = self.pagination_class()
        page = paginator.paginate_window(query["window"], request, limit=query["limit"], cursor=query.get("cursor"))
        return paginator.get_paginated_response(page, shape=query["shape"])


class GpuTelemetrySummaryView(APIView):
    @schema.GPU_TELEMETRY_SUMMARY
    def get(self, request, id: str):
        gpu = selectors.gpu_span(device_id=id)  # first: a missing device is a 404 whatever the query, which defaults from it
        query = SummaryQuerySerializer.read(request, gpu=gpu)
        points = selectors.gpu_telemetry_summary(
            gpu_id=gpu.id, start=query["start_time"], end=query["end_time"], bucket_seconds=query["bucket_seconds"],
            aggregates=query["agg"], metric_ids=query["metric_ids"], attribution=query["attribution"],
            newest=gpu.last_seen,
        )
        return HttpResponse(SummarySerializer.write(gpu=id, query=query, points=points), content_type="application/json")


class GpuLatestView(APIView):
    @schema.GPU_LATEST
    def get(self, request, id: str):
        gpu = selectors.gpu_span(device_id=id)
        rows = selectors.gpu_latest_values(gpu_id=gpu.id)
        return Response(LatestSerializer({"gpu": id, "results": rows}).data)
