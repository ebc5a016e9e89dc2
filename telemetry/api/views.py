"""Read-only JSON endpoints under /api/v1: GPUs, hosts, metrics and each GPU's telemetry."""
import base64
import binascii
import json
from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from telemetry.api import selectors
from telemetry.api.filters import GpuFilter
from telemetry.api.serializers import (
    GPU_UUID_EXAMPLE,
    HOSTNAME_EXAMPLE,
    METRIC_EXAMPLE,
    TIME_EXAMPLE,
    ErrorSerializer,
    GpuSerializer,
    HostSerializer,
    LatestSerializer,
    MetricListSerializer,
    SummaryQuerySerializer,
    SummarySerializer,
    TelemetryPageSerializer,
    TelemetryQuerySerializer,
)
from telemetry.models import Gpu

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# A summary returns at most this many buckets per metric; a longer window needs a wider bucket.
MAX_SUMMARY_BUCKETS = 20000
DEFAULT_SUMMARY_WINDOW = timedelta(hours=24)

ERRORS_400 = {
    400: OpenApiResponse(ErrorSerializer, description="Bad input: `errors` names each offending parameter and what is wrong."),
    401: OpenApiResponse(ErrorSerializer, description="API_TOKEN is set and the request has no valid `Authorization: Bearer` token."),
}
ERRORS_404 = {
    401: ERRORS_400[401],
    404: OpenApiResponse(ErrorSerializer, description="No such GPU or host."),
}
UUID_PARAM = OpenApiParameter(
    "uuid", OpenApiTypes.STR, OpenApiParameter.PATH, description="NVIDIA UUID of the GPU.",
    examples=[OpenApiExample("GPU", value=GPU_UUID_EXAMPLE)],
)
HOSTNAME_PARAM = OpenApiParameter(
    "hostname", OpenApiTypes.STR, OpenApiParameter.PATH, description="Host name the GPUs report from.",
    examples=[OpenApiExample("Host", value=HOSTNAME_EXAMPLE)],
)


def _example(name, value):
    return [OpenApiExample(name, value=value)]


PAGE_PARAMS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="Number of results per page (1 to 5000, default 500).",
                     examples=_example("Page of 100", 100)),
    OpenApiParameter("offset", OpenApiTypes.INT, description="Index of the first result to return (default 0).",
                     examples=_example("Second page", 100)),
]
GPU_FILTER_PARAMS = [
    OpenApiParameter("hostname", OpenApiTypes.STR, description=GpuFilter.base_filters["hostname"].label,
                     examples=_example("Host", HOSTNAME_EXAMPLE)),
    OpenApiParameter("model", OpenApiTypes.STR, description=GpuFilter.base_filters["model"].label,
                     examples=_example("H100", "NVIDIA H100 80GB HBM3")),
    OpenApiParameter("seen_since", OpenApiTypes.DATETIME, description=GpuFilter.base_filters["seen_since"].label,
                     examples=_example("Since", TIME_EXAMPLE)),
    OpenApiParameter("stale", OpenApiTypes.NUMBER, description=GpuFilter.base_filters["stale"].label,
                     examples=_example("Silent for 5 minutes", 300)),
    OpenApiParameter("ordering", OpenApiTypes.STR, description=GpuFilter.base_filters["ordering"].label,
                     examples=_example("Newest first", "-last_seen")),
]


class GpuPagination(LimitOffsetPagination):
    default_limit = 500
    max_limit = 5000

    def get_limit(self, request):
        # Out-of-range or unparseable limits are a 400 naming the parameter, not silently clamped.
        return _bounded_int(request, self.limit_query_param, self.default_limit, 1, self.max_limit)

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["count", "results"],
            "properties": {
                "count": {"type": "integer", "description": "Number of results in all pages.", "example": 247},
                "next": {"type": "string", "nullable": True, "format": "uri", "description": "Link to the next page; null on the last.",
                         "example": "http://127.0.0.1:8000/api/v1/gpus?limit=100&offset=100"},
                "previous": {"type": "string", "nullable": True, "format": "uri", "description": "Link to the previous page; null on the first.",
                             "example": None},
                "results": schema,
            },
        }

    def get_offset(self, request):
        return _bounded_int(request, self.offset_query_param, 0, 0, 10**9)


def _bounded_int(request, name, default, low, high):
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise serializers.ValidationError({name: [f"{name} must be an integer."]}) from None
    if not low <= value <= high:
        raise serializers.ValidationError({name: [f"{name} must be between {low} and {high}."]})
    return value


_GPU_BY_UUID = f"SELECT id, first_seen, last_seen FROM {Gpu._meta.db_table} WHERE uuid = %s"


def _no_such_gpu(uuid: str) -> Http404:
    return Http404(f"No GPU with UUID {uuid!r}.")


def _uuid_or_404(uuid: str) -> None:
    """A 404 for a UUID no GPU can have: PostgreSQL refuses text holding a NUL character."""
    if "\x00" in uuid:
        raise _no_such_gpu(uuid)


def _gpu_or_404(uuid: str) -> tuple[int, datetime, datetime]:
    """(id, first_seen, last_seen) of the GPU, or a 404. Plain SQL: it runs before most telemetry reads."""
    _uuid_or_404(uuid)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_GPU_BY_UUID, [uuid])
            row = cursor.fetchone()
    else:  # other backends return raw datetimes without a zone; the ORM converts them
        row = Gpu.objects.filter(uuid=uuid).values_list("id", "first_seen", "last_seen").first()
    if row is None:
        raise _no_such_gpu(uuid)
    return row


_LIST_PARAMS: dict[type, frozenset[str]] = {}


def _query(serializer_class, request) -> dict:
    """Validated query parameters; a repeatable parameter (a ListField) keeps every value."""
    lists = _LIST_PARAMS.get(serializer_class)
    if lists is None:
        fields = serializer_class().fields.items()
        lists = _LIST_PARAMS[serializer_class] = frozenset(n for n, f in fields if isinstance(f, serializers.ListField))
    params = request.query_params
    data = {name: params.getlist(name) if name in lists else params[name] for name in params}
    query = serializer_class(data=data)
    query.is_valid(raise_exception=True)
    return query.validated_data


def _metric_ids(names: list[str] | None) -> list[int] | None:
    if not names:
        return None
    found, unknown = selectors.metric_ids_by_name(names=names)
    if unknown:
        known = ", ".join(selectors.metric_names_known()) or "none stored yet"
        raise serializers.ValidationError({"metric": [f"Unknown metric(s) {', '.join(map(repr, unknown))}; known: {known}."]})
    return list(found.values())


def _page_json(uuid: str, next_link: str | None, previous_link: str | None, rows) -> str:
    """The page as JSON text, each sample written by one format string.

    A page is up to 10,000 samples; building a dict per sample and running the JSON encoder over
    them took longer than the database query. Times are RFC 3339 text already, metric names are
    encoded once per metric, and repr() of a finite float is valid JSON (the collector stores no
    NaN or infinity).
    """
    names: dict[int, str] = {}
    parts = []
    for ts, metric_id, value in rows:
        name = names.get(metric_id)
        if name is None:
            name = names[metric_id] = json.dumps(selectors.metric_name(metric_id))
        parts.append(f'{{"timestamp":"{ts}","metric":{name},"value":{value!r}}}')
    head = json.dumps({"gpu": uuid, "next": next_link, "previous": previous_link}, separators=(",", ":"))
    return f'{head[:-1]},"results":[{",".join(parts)}]}}'


def _position(row: tuple[str, int, float]) -> selectors.Position:
    return selectors.Position(selectors.time_parse(row[0]), row[1])


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@extend_schema_view(
    get=extend_schema(
        summary="List GPUs",
        description="Every GPU with stored data, by host name and index unless `ordering` says otherwise.",
        parameters=[*GPU_FILTER_PARAMS, *PAGE_PARAMS],
        responses={200: OpenApiResponse(GpuSerializer(many=True), description="A page of GPUs."), **ERRORS_400},
    )
)
class GpuListView(generics.ListAPIView):
    queryset = Gpu.objects.all()
    serializer_class = GpuSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = GpuFilter
    pagination_class = GpuPagination


@extend_schema_view(
    get=extend_schema(
        summary="One GPU",
        parameters=[UUID_PARAM],
        responses={200: OpenApiResponse(GpuSerializer, description="The GPU."), **ERRORS_404},
    )
)
class GpuDetailView(generics.RetrieveAPIView):
    queryset = Gpu.objects.all()
    serializer_class = GpuSerializer

    def get_object(self):
        uuid = self.kwargs["uuid"]
        gpu = Gpu.objects.filter(uuid=uuid).first() if "\x00" not in uuid else None
        if gpu is None:
            raise Http404(f"No GPU with UUID {uuid!r}.")
        return gpu


@extend_schema_view(
    get=extend_schema(
        summary="List hosts",
        description="Every host with GPUs, with its GPU count and newest sample time.",
        parameters=PAGE_PARAMS,
        responses={200: OpenApiResponse(HostSerializer(many=True), description="A page of hosts."), **ERRORS_400},
    )
)
class HostListView(generics.ListAPIView):
    serializer_class = HostSerializer
    pagination_class = GpuPagination

    def get_queryset(self):
        return selectors.hosts_summary()


@extend_schema_view(
    get=extend_schema(
        summary="GPUs of one host",
        parameters=[HOSTNAME_PARAM, *PAGE_PARAMS],
        responses={200: OpenApiResponse(GpuSerializer(many=True), description="A page of the host's GPUs, by index."), **ERRORS_400, **ERRORS_404},
    )
)
class HostGpuListView(generics.ListAPIView):
    serializer_class = GpuSerializer
    pagination_class = GpuPagination

    def get_queryset(self):
        hostname = self.kwargs["hostname"]
        gpus = Gpu.objects.filter(hostname=hostname).order_by("index", "id") if "\x00" not in hostname else Gpu.objects.none()
        if not gpus.exists():
            raise Http404(f"No GPUs on host {hostname!r}.")
        return gpus


class MetricListView(APIView):
    @extend_schema(
        summary="List metrics",
        description=(
            "Each metric's name, sample count and first and last time. Counting scans the sample table, "
            "so the totals are cached for API_METRICS_CACHE_SECONDS (shared through Redis when REDIS_URL is set)."
        ),
        responses={200: OpenApiResponse(MetricListSerializer, description="Every metric's totals."), 401: ERRORS_400[401]},
    )
    def get(self, request):
        totals = selectors.metric_totals()
        return Response({
            "cache_seconds": settings.API_METRICS_CACHE_SECONDS,
            "results": [
                {**row, "first": row["first"] and _iso(row["first"]), "last": row["last"] and _iso(row["last"])}
                for row in totals
            ],
        })


# --- Telemetry of one GPU ---

_TIME_PARAMS = {
    "start_time": "2025-07-18T20:42:34Z",
    "end_time": "2025-07-18T20:42:37Z",
}


def _params_from(serializer_class, *, examples: dict) -> list[OpenApiParameter]:
    """Query parameters documented from a query serializer: its help texts, bounds, choices and defaults."""
    params = []
    for name, field in serializer_class().fields.items():
        explode = None
        if isinstance(field, serializers.ListField):
            schema, explode, example = {"type": "array", "items": {"type": "string"}}, True, [examples[name]]
        elif isinstance(field, serializers.DateTimeField):
            schema, example = {"type": "string", "format": "date-time"}, examples[name]
        elif isinstance(field, serializers.IntegerField):
            schema, example = {"type": "integer", "minimum": field.min_value, "maximum": field.max_value}, examples[name]
        elif isinstance(field, serializers.ChoiceField):
            schema, example = {"type": "string", "enum": list(field.choices)}, examples[name]
        else:
            schema, example = {"type": "string"}, examples[name]
        if field.default is not serializers.empty:
            schema["default"] = field.default
        params.append(OpenApiParameter(
            name, {k: v for k, v in schema.items() if v is not None}, description=str(field.help_text),
            explode=explode, examples=_example(name, example),
        ))
    return params


class Cursor:
    """An opaque position: `n` (rows after) or `p` (rows before) a (time, metric) key, base64url-encoded."""

    @staticmethod
    def encode(direction: str, position: selectors.Position) -> str:
        delta = position.timestamp - EPOCH
        micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        raw = f"{direction}:{micros}:{position.metric_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(text: str) -> tuple[str, selectors.Position]:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            direction, micros, metric_id = raw.split(":")
            if direction not in ("n", "p"):
                raise ValueError(direction)
            moment = EPOCH + timedelta(microseconds=int(micros))
            position = selectors.Position(moment, int(metric_id))
            if not -32768 <= position.metric_id <= 32767:
                raise ValueError(metric_id)
        except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
            raise serializers.ValidationError({"cursor": ["Invalid cursor; use a `next` or `previous` link as given."]}) from None
        return direction, position


class GpuTelemetryView(APIView):
    @extend_schema(
        summary="A GPU's samples",
        description=(
            "The GPU's samples ordered by time (then metric), oldest first unless `order=desc`, in the inclusive "
            "window [start_time, end_time]. Pages are keyset cursors: `next` and `previous` stay correct while new "
            "samples arrive, and cost the same deep into a large table. No total count is computed."
        ),
        parameters=[UUID_PARAM, *_params_from(TelemetryQuerySerializer, examples={
            **_TIME_PARAMS, "metric": METRIC_EXAMPLE, "order": "asc", "limit": 1000, "cursor": "bjoxNzUyODcxMzU1MDAwMDAwOjM",
        })],
        responses={200: OpenApiResponse(TelemetryPageSerializer, description="A page of samples with cursor links."), **ERRORS_400, **ERRORS_404},
    )
    def get(self, request, uuid: str):
        _uuid_or_404(uuid)
        query = _query(TelemetryQuerySerializer, request)
        metric_ids = _metric_ids(query.get("metric"))
        limit, order = query["limit"], query["order"]
        direction, position = Cursor.decode(query["cursor"]) if "cursor" in query else ("n", None)
        backwards = direction == "p"
        rows = selectors.gpu_telemetry_window(
            gpu_uuid=uuid, start=query.get("start_time"), end=query.get("end_time"), metric_ids=metric_ids,
            order=order, after=None if backwards else position, before=position if backwards else None, limit=limit + 1,
        )
        if not rows:
            _gpu_or_404(uuid)  # an empty window, or no such GPU
        more = len(rows) > limit
        rows = rows[:limit]
        if backwards:
            rows.reverse()
        has_next = (more and not backwards) or (backwards and position is not None)
        has_previous = (more and backwards) or (not backwards and position is not None)
        url = request.build_absolute_uri()
        next_link = previous_link = None
        if rows and has_next:
            next_link = replace_query_param(url, "cursor", Cursor.encode("n", _position(rows[-1])))
        if rows and has_previous:
            previous_link = replace_query_param(url, "cursor", Cursor.encode("p", _position(rows[0])))
        return HttpResponse(_page_json(uuid, next_link, previous_link, rows), content_type="application/json")


class GpuTelemetrySummaryView(APIView):
    @extend_schema(
        summary="A GPU's telemetry in time buckets",
        description=(
            "Aggregates per metric and per time bucket, computed in the database (PostgreSQL `date_bin` and "
            "`GROUP BY`). The window defaults to the 24 hours up to the GPU's newest sample, from its oldest at most; at most "
            f"{MAX_SUMMARY_BUCKETS} buckets per metric. Buckets without samples are left out."
        ),
        parameters=[UUID_PARAM, *_params_from(SummaryQuerySerializer, examples={
            "start_time": "2025-07-17T20:42:37Z", "end_time": "2025-07-18T20:42:37Z", "bucket": "1m",
            "agg": "avg,min,max,last", "metric": METRIC_EXAMPLE,
        })],
        responses={200: OpenApiResponse(SummarySerializer, description="One series of buckets per metric."), **ERRORS_400, **ERRORS_404},
    )
    def get(self, request, uuid: str):
        gpu_id, first_seen, last_seen = _gpu_or_404(uuid)
        query = _query(SummaryQuerySerializer, request)
        metric_ids = _metric_ids(query.get("metric"))
        end = query.get("end_time") or last_seen
        start = query.get("start_time")
        if start is None:
            try:
                start = end - DEFAULT_SUMMARY_WINDOW
            except OverflowError:
                start = end
            start = max(start, min(first_seen, end))
        if end < start:
            raise serializers.ValidationError({"start_time": ["start_time is after the window's end (the GPU's newest sample)."]})
        bucket_seconds = selectors.BUCKETS[query["bucket"]]
        if (end - start).total_seconds() / bucket_seconds > MAX_SUMMARY_BUCKETS:
            raise serializers.ValidationError({"bucket": [
                f"A {query['bucket']} bucket gives more than {MAX_SUMMARY_BUCKETS} buckets in this window; use a wider bucket or a shorter window."
            ]})
        aggregates = query["agg"]
        rows = selectors.gpu_telemetry_summary(
            gpu_id=gpu_id, start=start, end=end, bucket_seconds=bucket_seconds, aggregates=aggregates, metric_ids=metric_ids,
        )
        head = json.dumps({
            "gpu": uuid, "bucket": query["bucket"], "aggregates": aggregates, "start_time": _iso(start), "end_time": _iso(end),
        }, separators=(",", ":"))
        return HttpResponse(f'{head[:-1]},"series":{_series_json(rows)}}}', content_type="application/json")


def _series_json(rows: list[tuple[int, str]]) -> str:
    """Series by metric name, splicing in the points JSON that the selector (the database) wrote."""
    series = sorted((selectors.metric_name(metric_id), points) for metric_id, points in rows)
    return "[" + ",".join(f'{{"metric":{json.dumps(name)},"points":{points}}}' for name, points in series) + "]"


class GpuLatestView(APIView):
    @extend_schema(
        summary="A GPU's newest value of each metric",
        parameters=[UUID_PARAM],
        responses={200: OpenApiResponse(LatestSerializer, description="The newest sample of each metric."), **ERRORS_404},
    )
    def get(self, request, uuid: str):
        gpu_id, _, _ = _gpu_or_404(uuid)
        rows = selectors.gpu_latest_values(gpu_id=gpu_id)
        return Response({
            "gpu": uuid,
            "results": [{"timestamp": _iso(ts), "metric": selectors.metric_name(m), "value": v} for m, ts, v in rows],
        })
