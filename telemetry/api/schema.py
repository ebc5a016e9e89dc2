"""Everything the OpenAPI document says that the code does not: operations, parameters, examples, errors.

Each view takes its declaration from here (`@schema.GPU_LIST`, …), so the views hold only what
they do. Also the drf-spectacular glue: per-field examples from a serializer's Meta.field_examples,
and the token scheme.
"""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers

from telemetry.api.filters import GpuFilter
from telemetry.api.serializers import (
    CONTAINER_EXAMPLE,
    DEVICE_ID_HELP,
    GPU_UUID_EXAMPLE,
    HOSTNAME_EXAMPLE,
    MAX_SUMMARY_BUCKETS,
    METRIC_EXAMPLE,
    MIG_ID_EXAMPLE,
    NAMESPACE_EXAMPLE,
    POD_EXAMPLE,
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
    TelemetrySeriesPageSerializer,
)


class AutoSchema(SpectacularAutoSchema):
    def _get_serializer_field_meta(self, field, direction):
        meta = super()._get_serializer_field_meta(field, direction)
        parent = field.parent
        if isinstance(parent, serializers.ListSerializer):
            parent = parent.parent
        examples = getattr(getattr(parent, "Meta", None), "field_examples", {})
        if field.field_name in examples:
            meta["example"] = examples[field.field_name]
        return meta


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "telemetry.api.auth.ApiTokenAuthentication"
    name = "ApiToken"

    def get_security_requirement(self, auto_schema):
        # The token is off by default: an empty requirement says a request without it is fine too.
        return [{self.name: []}, {}]

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Needed only when the server sets API_TOKEN: `Authorization: Bearer <token>`.",
        }


# --- Shared pieces ---

ERRORS_400 = {
    400: OpenApiResponse(ErrorSerializer, description="Bad input: `errors` names each offending parameter and what is wrong."),
    401: OpenApiResponse(ErrorSerializer, description="API_TOKEN is set and the request has no valid `Authorization: Bearer` token."),
}
ERRORS_404 = {
    401: ERRORS_400[401],
    404: OpenApiResponse(ErrorSerializer, description="No such device (GPU or MIG instance) or host."),
}
DEVICE_ID_PARAM = OpenApiParameter(
    "id", OpenApiTypes.STR, OpenApiParameter.PATH, description=f"{DEVICE_ID_HELP} The `id` of its GPU list entry.",
    examples=[OpenApiExample("Whole GPU", value=GPU_UUID_EXAMPLE), OpenApiExample("MIG instance", value=MIG_ID_EXAMPLE)],
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
    OpenApiParameter("mig", {"type": "string", "enum": ["true", "false"]}, description=GpuFilter.base_filters["mig"].label,
                     examples=_example("MIG instances", "true")),
    OpenApiParameter("parent", OpenApiTypes.STR, description=GpuFilter.base_filters["parent"].label,
                     examples=_example("Instances of a GPU", GPU_UUID_EXAMPLE)),
    OpenApiParameter("namespace", OpenApiTypes.STR, description=GpuFilter.base_filters["namespace"].label,
                     examples=_example("Namespace", NAMESPACE_EXAMPLE)),
    OpenApiParameter("pod", OpenApiTypes.STR, description=GpuFilter.base_filters["pod"].label,
                     examples=_example("Pod", POD_EXAMPLE)),
    OpenApiParameter("container", OpenApiTypes.STR, description=GpuFilter.base_filters["container"].label,
                     examples=_example("Container", CONTAINER_EXAMPLE)),
    OpenApiParameter("ordering", OpenApiTypes.STR, description=GpuFilter.base_filters["ordering"].label,
                     examples=_example("Newest first", "-last_seen")),
]


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


# --- GPUs, hosts and metrics ---

GPU_LIST = extend_schema_view(
    get=extend_schema(
        summary="List GPUs and MIG instances",
        description=(
            "Every device with stored data: whole GPUs and MIG GPU instances, each with the `id` its URLs take. "
            "By host name and index, a whole GPU before its instances, unless `ordering` says otherwise. "
            "`namespace`, `pod` and `container` go by each device's newest reading."
        ),
        parameters=[*GPU_FILTER_PARAMS, *PAGE_PARAMS],
        responses={200: OpenApiResponse(GpuSerializer(many=True), description="A page of GPUs."), **ERRORS_400},
    )
)
GPU_DETAIL = extend_schema_view(
    get=extend_schema(
        summary="One GPU or MIG instance",
        parameters=[DEVICE_ID_PARAM],
        responses={200: OpenApiResponse(GpuSerializer, description="The device."), **ERRORS_404},
    )
)
HOST_LIST = extend_schema_view(
    get=extend_schema(
        summary="List hosts",
        description="Every host with GPUs, with its device count (whole GPUs and MIG instances) and newest sample time.",
        parameters=PAGE_PARAMS,
        responses={200: OpenApiResponse(HostSerializer(many=True), description="A page of hosts."), **ERRORS_400},
    )
)
HOST_GPU_LIST = extend_schema_view(
    get=extend_schema(
        summary="GPUs and MIG instances of one host",
        parameters=[HOSTNAME_PARAM, *PAGE_PARAMS],
        responses={
            200: OpenApiResponse(GpuSerializer(many=True), description="A page of the host's devices, by index, a whole GPU before its instances."),
            **ERRORS_400, **ERRORS_404,
        },
    )
)
METRIC_LIST = extend_schema(
    summary="List metrics",
    description=(
        "Each metric's name, sample count and first and last time. Counting scans the sample table, "
        "so the totals are cached for API_METRICS_CACHE_SECONDS (shared through Redis when REDIS_URL is set)."
    ),
    responses={200: OpenApiResponse(MetricListSerializer, description="Every metric's totals."), 401: ERRORS_400[401]},
)


# --- Telemetry of one GPU ---

_TIME_PARAMS = {
    "start_time": "2025-07-18T20:42:34Z",
    "end_time": "2025-07-18T20:42:37Z",
}

_ATTRIBUTION_EXAMPLES = {"namespace": NAMESPACE_EXAMPLE, "pod": POD_EXAMPLE, "container": CONTAINER_EXAMPLE}

GPU_TELEMETRY = extend_schema(
    summary="A GPU's or MIG instance's samples",
    description=(
        "The device's samples ordered by time (then metric), oldest first unless `order=desc`, in the inclusive "
        "window [start_time, end_time]; with `namespace`, `pod` or `container`, only those of readings that carry them. "
        "Pages are keyset cursors: `next` and `previous` stay correct while new "
        "samples arrive, and cost the same deep into a large table. No total count is computed. "
        "`shape=series` writes the same page as a series per metric (`times` and `values`), "
        "as Grafana and pandas read it; `limit` still counts samples, and the links page through the same samples."
    ),
    parameters=[DEVICE_ID_PARAM, *_params_from(TelemetryQuerySerializer, examples={
        **_TIME_PARAMS, "metric": METRIC_EXAMPLE, "order": "asc", "shape": "series", "limit": 1000,
        "cursor": "bjoxNzUyODcxMzU1MDAwMDAwOjM", **_ATTRIBUTION_EXAMPLES,
    })],
    responses={
        200: OpenApiResponse(
            PolymorphicProxySerializer(
                component_name="TelemetryPageAnyShape",
                serializers=[TelemetryPageSerializer, TelemetrySeriesPageSerializer],
                resource_type_field_name=None,
            ),
            description="A page of samples with cursor links: `results` with `shape=samples`, `series` with `shape=series`.",
        ),
        **ERRORS_400, **ERRORS_404,
    },
)
GPU_TELEMETRY_SUMMARY = extend_schema(
    summary="A GPU's or MIG instance's telemetry in time buckets",
    description=(
        "Aggregates per metric and per time bucket, computed in the database (PostgreSQL `date_bin` and "
        "`GROUP BY`), of every metric the device reported (a MIG instance reports other metrics than a whole GPU). "
        "The window defaults to the 24 hours up to the device's newest sample, from its oldest at most; at most "
        f"{MAX_SUMMARY_BUCKETS} buckets per metric. Buckets without samples are left out. With `namespace`, `pod` "
        "or `container`, only the samples of readings that carry them count."
    ),
    parameters=[DEVICE_ID_PARAM, *_params_from(SummaryQuerySerializer, examples={
        "start_time": "2025-07-17T20:42:37Z", "end_time": "2025-07-18T20:42:37Z", "bucket": "1m",
        "agg": "avg,min,max,last", "metric": METRIC_EXAMPLE, **_ATTRIBUTION_EXAMPLES,
    })],
    responses={200: OpenApiResponse(SummarySerializer, description="One series of buckets per metric."), **ERRORS_400, **ERRORS_404},
)
GPU_LATEST = extend_schema(
    summary="A GPU's or MIG instance's newest value of each metric",
    description="The newest sample of each metric the device reported, whichever metrics those are.",
    parameters=[DEVICE_ID_PARAM],
    responses={200: OpenApiResponse(LatestSerializer, description="The newest sample of each metric."), **ERRORS_404},
)
