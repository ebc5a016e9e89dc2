"""Response shapes and query-parameter validation for the read API.

Query serializers turn bad input into a 400 whose body names the parameter, and hold the rules of
a telemetry window (its start, end, order and page size) and of a summary's buckets. Times are
RFC 3339 / ISO 8601; a time without a zone offset is taken as UTC (stated in the schema).

A page of samples and a summary can hold tens of thousands of values, so their serializers also
write that JSON directly with orjson (`write`), from the columns the selectors return: the same
shape they declare, each distinct time and metric name made text once.
"""
from datetime import datetime, timedelta

import numpy as np
import orjson
from rest_framework import serializers

from telemetry.api import selectors
from telemetry.api.buckets import Series
from telemetry.api.selectors import AGGREGATES, MIG_INSTANCE_MAX
from telemetry.api.window import Samples
from telemetry.models import Gpu
from telemetry.times import to_rfc3339

GPU_UUID_EXAMPLE = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
MIG_ID_EXAMPLE = f"{GPU_UUID_EXAMPLE}:mig1"
DEVICE_ID_HELP = "The device's id: a whole GPU's UUID, or `<parent GPU's UUID>:mig<GPU instance id>` for a MIG instance."
NAMESPACE_EXAMPLE = "ml-training"
POD_EXAMPLE = "trainer-7d9f8c6b5-x2vqp"
CONTAINER_EXAMPLE = "trainer"
HOSTNAME_EXAMPLE = "mtv5-dgx1-hgpu-031"
METRIC_EXAMPLE = "DCGM_FI_DEV_GPU_UTIL"
TIME_EXAMPLE = "2025-07-18T20:42:34Z"
TIME_HELP = "RFC 3339 / ISO 8601 time; a time without a zone offset is taken as UTC."
MAX_LIMIT = 10000
DEFAULT_LIMIT = 1000
# How a page of samples is written: an object per sample, or a series (times and values) per metric.
SHAPES = ("samples", "series")
# Bucket widths a summary accepts, in seconds.
BUCKETS: dict[str, int] = {
    "1s": 1, "5s": 5, "10s": 10, "30s": 30, "1m": 60, "5m": 300, "10m": 600, "15m": 900,
    "30m": 1800, "1h": 3600, "3h": 10800, "6h": 21600, "12h": 43200, "1d": 86400,
}
# A summary returns at most this many buckets per metric; a longer window needs a wider bucket.
MAX_SUMMARY_BUCKETS = 20000
DEFAULT_SUMMARY_WINDOW = timedelta(hours=24)


def _listed(value: object) -> list:
    """What orjson cannot write as an array (text in an object array), as a list."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# orjson's options for writing numpy columns as they are: numbers, and datetime64 as RFC 3339 with a Z.
JSON_ARRAYS = {"option": orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z, "default": _listed}


class NoNulCharField(serializers.CharField):
    """PostgreSQL text cannot hold NUL; reject it as bad input instead of failing in the database."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 255)
        super().__init__(**kwargs)


class EmptyAsNullCharField(serializers.CharField):
    """Text that the database stores as empty where there is none, written as null."""

    def to_representation(self, value):
        return super().to_representation(value) or None


# --- Errors ---


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in one sentence.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For bad input: each offending query parameter and what is wrong with it.",
    )

    class Meta:
        field_examples = {
            "detail": "Invalid query parameters.",
            "errors": {"end_time": ["end_time is before start_time."]},
        }


# --- GPUs and hosts ---


# Of `selectors.devices()` rows, which carry their newest reading's namespace, pod and container.
class GpuSerializer(serializers.ModelSerializer):
    """A device: a whole GPU, or one MIG GPU instance of it."""

    id = serializers.CharField(
        source="device_id", help_text=f"{DEVICE_ID_HELP} `/api/v1/gpus/{{id}}` and the URLs under it take it.",
    )
    uuid = serializers.CharField(help_text="NVIDIA GPU UUID; for a MIG instance, its parent GPU's.")
    mig_instance = serializers.IntegerField(
        allow_null=True, min_value=0, max_value=MIG_INSTANCE_MAX,
        help_text="MIG GPU instance id (DCGM's GPU_I_ID); null for a whole GPU.",
    )
    mig_profile = EmptyAsNullCharField(
        allow_null=True, help_text="MIG profile of the instance (DCGM's GPU_I_PROFILE); null for a whole GPU or when not reported.",
    )
    parent = serializers.CharField(
        source="parent_uuid", allow_null=True,
        help_text="For a MIG instance, its parent GPU's UUID (the parent's id when it reports as a device too); null for a whole GPU.",
    )
    model = serializers.CharField(source="model_name", help_text="GPU model name.")
    # Declared, not derived from the model, so the schema is the same whatever the database.
    index = serializers.IntegerField(min_value=0, max_value=32767, help_text="GPU index on its host (DCGM's gpu_id); a MIG instance has its parent's.")
    namespace = serializers.CharField(
        allow_null=True, help_text="Kubernetes namespace of the device's newest reading (the exporter's `namespace` label); null when none.",
    )
    pod = serializers.CharField(
        allow_null=True, help_text="Pod of the device's newest reading (the exporter's `pod` label); null when none.",
    )
    container = serializers.CharField(
        allow_null=True, help_text="Container of the device's newest reading (the exporter's `container` label); null when none.",
    )
    sample_count = serializers.IntegerField(min_value=0, help_text="Samples currently stored for this device.")

    class Meta:
        model = Gpu
        fields = [
            "id", "uuid", "mig_instance", "mig_profile", "parent", "hostname", "index", "device", "model",
            "namespace", "pod", "container", "first_seen", "last_seen", "sample_count",
        ]
        field_examples = {
            "id": MIG_ID_EXAMPLE,
            "uuid": GPU_UUID_EXAMPLE,
            "mig_instance": 1,
            "mig_profile": "3g.40gb",
            "parent": GPU_UUID_EXAMPLE,
            "hostname": HOSTNAME_EXAMPLE,
            "index": 0,
            "device": "nvidia0",
            "model": "NVIDIA H100 80GB HBM3",
            "namespace": NAMESPACE_EXAMPLE,
            "pod": POD_EXAMPLE,
            "container": CONTAINER_EXAMPLE,
            "first_seen": TIME_EXAMPLE,
            "last_seen": "2025-07-18T20:42:37Z",
            "sample_count": 40,
        }


class HostSerializer(serializers.Serializer):
    hostname = serializers.CharField(help_text="Host name the GPUs report from.")
    gpu_count = serializers.IntegerField(help_text="Number of devices seen on this host: whole GPUs and MIG instances, as its GPU list has.")
    last_seen = serializers.DateTimeField(help_text="Time of the newest sample from any GPU of this host.")

    class Meta:
        field_examples = {"hostname": HOSTNAME_EXAMPLE, "gpu_count": 8, "last_seen": "2025-07-18T20:42:37Z"}


class MetricTotalsSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Metric name (DCGM field name).")
    sample_count = serializers.IntegerField(help_text="Samples stored for this metric, all GPUs together.")
    first = serializers.DateTimeField(allow_null=True, help_text="Time of the oldest sample; null when none is stored.")
    last = serializers.DateTimeField(allow_null=True, help_text="Time of the newest sample; null when none is stored.")

    class Meta:
        field_examples = {"name": METRIC_EXAMPLE, "sample_count": 247, "first": TIME_EXAMPLE, "last": "2025-07-18T20:42:37Z"}


class MetricListSerializer(serializers.Serializer):
    cache_seconds = serializers.IntegerField(help_text="The totals may be up to this many seconds old (API_METRICS_CACHE_SECONDS).")
    results = MetricTotalsSerializer(many=True, help_text="One entry per metric, by name.")

    class Meta:
        field_examples = {"cache_seconds": 30}


# --- Telemetry ---


_LIST_PARAMS: dict[type, frozenset[str]] = {}


class QuerySerializer(serializers.Serializer):
    """Validates a request's query parameters; a repeatable parameter (a ListField) keeps every value."""

    @classmethod
    def read(cls, request, **context) -> dict:
        """The validated query parameters of `request`, or a 400 naming each bad one."""
        lists = _LIST_PARAMS.get(cls)
        if lists is None:
            lists = _LIST_PARAMS[cls] = frozenset(n for n, f in cls().fields.items() if isinstance(f, serializers.ListField))
        params = request.query_params
        data = {name: params.getlist(name) if name in lists else params[name] for name in params}
        query = cls(data=data, context=context)
        query.is_valid(raise_exception=True)
        return query.validated_data


def _attribution_field(name: str, label: str) -> NoNulCharField:
    return NoNulCharField(
        required=False, allow_blank=True,
        help_text=f"Only the samples of readings that carry this {name} (exact; the exporter's `{label}` label).",
    )


def _attribution(attrs: dict) -> selectors.Attribution:
    # Empty is no filter, as in the GPU list's filters.
    return selectors.Attribution(**{name: attrs.get(name) or None for name in selectors.ATTRIBUTIONS})


class TelemetryQuerySerializer(QuerySerializer):
    start_time = serializers.DateTimeField(required=False, help_text=f"Oldest sample time to return (inclusive). {TIME_HELP}")
    end_time = serializers.DateTimeField(required=False, help_text=f"Newest sample time to return (inclusive). {TIME_HELP}")
    metric = serializers.ListField(
        child=NoNulCharField(), required=False, max_length=100,
        help_text="Only these metrics (repeat the parameter for several). Unknown names are a 400.",
    )
    order = serializers.ChoiceField(choices=["asc", "desc"], default="asc", help_text="Time order of the samples.")
    shape = serializers.ChoiceField(
        choices=list(SHAPES), default="samples",
        error_messages={"invalid_choice": f'"{{input}}" is not a shape; use {" or ".join(SHAPES)}.'},
        help_text=(
            "`samples`: `results`, one object per sample. `series`: the same page's samples as `series`, one per "
            "metric by name, each with `times` and `values` in the page's order; `limit` and the links are the same."
        ),
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT, help_text=f"Samples per page, 1 to {MAX_LIMIT}."
    )
    cursor = NoNulCharField(required=False, max_length=200, help_text="Opaque page position from a `next` or `previous` link.")
    namespace = _attribution_field("Kubernetes namespace", "namespace")
    pod = _attribution_field("pod", "pod")
    container = _attribution_field("container", "container")

    @classmethod
    def read(cls, request, *, device_id: str) -> dict:
        """The query with `window`, the device's samples it asks for; `limit` and `cursor` say which page.

        An id no device can have is a 404 before the query is read.
        """
        selectors.device_lookup(device_id)
        return super().read(request, device_id=device_id)

    def validate(self, attrs):
        _check_window(attrs)
        attrs["window"] = selectors.SampleWindow(
            device_id=self.context["device_id"], start=attrs.get("start_time"), end=attrs.get("end_time"),
            metric_ids=_metric_ids(attrs.get("metric")), order=attrs["order"], attribution=_attribution(attrs),
        )
        return attrs


class SummaryQuerySerializer(QuerySerializer):
    start_time = serializers.DateTimeField(
        required=False, help_text=f"Start of the window (inclusive); default 24 hours before end_time. {TIME_HELP}"
    )
    end_time = serializers.DateTimeField(
        required=False, help_text=f"End of the window (inclusive); default the device's newest sample. {TIME_HELP}"
    )
    bucket = serializers.ChoiceField(choices=list(BUCKETS), default="1m", help_text="Bucket width; buckets are aligned to the Unix epoch.")
    agg = NoNulCharField(
        required=False, default="avg,min,max,last",
        help_text=f"Comma-separated aggregates out of {', '.join(AGGREGATES)}.",
    )
    metric = serializers.ListField(
        child=NoNulCharField(), required=False, max_length=100,
        help_text="Only these metrics (repeat the parameter for several). Unknown names are a 400.",
    )
    namespace = _attribution_field("Kubernetes namespace", "namespace")
    pod = _attribution_field("pod", "pod")
    container = _attribution_field("container", "container")

    @classmethod
    def read(cls, request, *, gpu: selectors.GpuSpan) -> dict:
        """The query with the window filled in from the device's sample times: `start_time`, `end_time`,
        `bucket_seconds`, `agg` as a list, `metric_ids` and `attribution`."""
        return super().read(request, gpu=gpu)

    def validate_agg(self, value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in AGGREGATES]
        if unknown:
            raise serializers.ValidationError(f"Unknown aggregate(s) {', '.join(map(repr, unknown))}; use {', '.join(AGGREGATES)}.")
        if not names:
            raise serializers.ValidationError(f"Name at least one aggregate out of {', '.join(AGGREGATES)}.")
        return list(dict.fromkeys(names))

    def validate(self, attrs):
        _check_window(attrs)
        attrs["metric_ids"] = _metric_ids(attrs.get("metric"))
        attrs["attribution"] = _attribution(attrs)
        gpu: selectors.GpuSpan = self.context["gpu"]
        end = attrs.get("end_time") or gpu.last_seen
        start = attrs.get("start_time")
        if start is None:
            try:
                start = end - DEFAULT_SUMMARY_WINDOW
            except OverflowError:
                start = end
            start = max(start, min(gpu.first_seen, end))
        if end < start:
            raise serializers.ValidationError({"start_time": ["start_time is after the window's end (the device's newest sample)."]})
        bucket_seconds = BUCKETS[attrs["bucket"]]
        if (end - start).total_seconds() / bucket_seconds > MAX_SUMMARY_BUCKETS:
            raise serializers.ValidationError({"bucket": [
                f"A {attrs['bucket']} bucket gives more than {MAX_SUMMARY_BUCKETS} buckets in this window; use a wider bucket or a shorter window."
            ]})
        attrs.update(start_time=start, end_time=end, bucket_seconds=bucket_seconds)
        return attrs


def _check_window(attrs: dict) -> None:
    start: datetime | None = attrs.get("start_time")
    end: datetime | None = attrs.get("end_time")
    if start is not None and end is not None and end < start:
        raise serializers.ValidationError({"end_time": ["end_time is before start_time."]})


def _metric_ids(names: list[str] | None) -> list[int] | None:
    if not names:
        return None
    found, unknown = selectors.metric_ids_by_name(names=names)
    if unknown:
        known = ", ".join(selectors.metric_names_known()) or "none stored yet"
        raise serializers.ValidationError({"metric": [f"Unknown metric(s) {', '.join(map(repr, unknown))}; known: {known}."]})
    return list(found.values())


class SampleSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField(help_text="Sample time (UTC).")
    metric = serializers.CharField(help_text="Metric name.")
    value = serializers.FloatField(help_text="Sample value.")

    class Meta:
        field_examples = {"timestamp": TIME_EXAMPLE, "metric": METRIC_EXAMPLE, "value": 87.0}


class TelemetryPageSerializer(serializers.Serializer):
    gpu = serializers.CharField(help_text=DEVICE_ID_HELP)
    next = serializers.URLField(allow_null=True, help_text="Link to the following page; null on the last page.")
    previous = serializers.URLField(allow_null=True, help_text="Link to the preceding page; null on the first page.")
    results = SampleSerializer(many=True, help_text="Samples ordered by (time, metric).")

    class Meta:
        field_examples = {
            "gpu": GPU_UUID_EXAMPLE,
            "next": "http://127.0.0.1:8000/api/v1/gpus/GPU-5fd4f087-86f3-7a43-b711-4771313afc50/telemetry?cursor=bjoxNzUyODcxMzU1MDAwMDAwOjM",
            "previous": None,
        }

    @staticmethod
    def write(*, gpu: str, next_link: str | None, previous_link: str | None, samples: Samples) -> bytes:
        """The page as JSON: an object per sample, each distinct time and metric name made text once."""
        texts, position = samples.time_texts()
        names = {metric_id: selectors.metric_name(metric_id) for metric_id in np.unique(samples.metric_ids).tolist()}
        results = [{"timestamp": texts[t], "metric": names[m], "value": v}
                   for t, m, v in zip(position.tolist(), samples.metric_ids.tolist(), samples.values.tolist())]
        return orjson.dumps({"gpu": gpu, "next": next_link, "previous": previous_link, "results": results})


class SampleSeriesSerializer(serializers.Serializer):
    metric = serializers.CharField(help_text="Metric name.")
    times = serializers.ListField(
        child=serializers.DateTimeField(),
        help_text="Sample times (UTC) in the page's order: oldest first, newest first with `order=desc`.",
    )
    values = serializers.ListField(child=serializers.FloatField(), help_text="Sample values: `values[i]` is the value at `times[i]`.")

    class Meta:
        field_examples = {"metric": METRIC_EXAMPLE, "times": [TIME_EXAMPLE, "2025-07-18T20:42:35Z"], "values": [87.0, 91.0]}


class TelemetrySeriesPageSerializer(serializers.Serializer):
    gpu = serializers.CharField(help_text=DEVICE_ID_HELP)
    next = serializers.URLField(allow_null=True, help_text="Link to the following page; null on the last page.")
    previous = serializers.URLField(allow_null=True, help_text="Link to the preceding page; null on the first page.")
    series = SampleSeriesSerializer(many=True, help_text="The page's samples, a series per metric with samples in it, by metric name.")

    class Meta:
        field_examples = {
            "gpu": GPU_UUID_EXAMPLE,
            "next": "http://127.0.0.1:8000/api/v1/gpus/GPU-5fd4f087-86f3-7a43-b711-4771313afc50/telemetry?shape=series&cursor=bjoxNzUyODcxMzU1MDAwMDAwOjM",
            "previous": None,
        }

    @staticmethod
    def write(*, gpu: str, next_link: str | None, previous_link: str | None, samples: Samples) -> bytes:
        """The page as JSON: the samples grouped by metric, each metric's in the page's order."""
        times = samples.time_column()
        # A stable sort by metric keeps each metric's samples in the page's order.
        by_metric = np.argsort(samples.metric_ids, kind="stable")
        metric_ids = samples.metric_ids[by_metric]
        starts = np.flatnonzero(np.r_[True, metric_ids[1:] != metric_ids[:-1]]) if len(metric_ids) else np.empty(0, np.int64)
        bounds = np.r_[starts, len(metric_ids)].tolist()
        series = []
        for metric_id, lo, hi in zip(metric_ids[starts].tolist(), bounds, bounds[1:]):
            picked = by_metric[lo:hi]
            series.append({"metric": selectors.metric_name(metric_id), "times": times[picked], "values": samples.values[picked]})
        series.sort(key=lambda one: one["metric"])
        return orjson.dumps({"gpu": gpu, "next": next_link, "previous": previous_link, "series": series}, **JSON_ARRAYS)


class LatestSerializer(serializers.Serializer):
    gpu = serializers.CharField(help_text=DEVICE_ID_HELP)
    results = SampleSerializer(many=True, help_text="Newest sample of each metric the device reported, by metric name.")

    class Meta:
        field_examples = {"gpu": GPU_UUID_EXAMPLE}


class SummaryPointSerializer(serializers.Serializer):
    time = serializers.DateTimeField(help_text="Start of the bucket (UTC).")
    avg = serializers.FloatField(required=False, help_text="Mean value in the bucket.")
    min = serializers.FloatField(required=False, help_text="Smallest value in the bucket.")
    max = serializers.FloatField(required=False, help_text="Largest value in the bucket.")
    first = serializers.FloatField(required=False, help_text="Oldest value in the bucket.")
    last = serializers.FloatField(required=False, help_text="Newest value in the bucket.")
    count = serializers.IntegerField(required=False, help_text="Number of samples in the bucket.")
    sum = serializers.FloatField(required=False, help_text="Sum of the values in the bucket.")

    class Meta:
        field_examples = {
            "time": "2025-07-18T20:42:00Z", "avg": 55.5, "min": 0.0, "max": 100.0,
            "first": 0.0, "last": 100.0, "count": 4, "sum": 222.0,
        }


class SummarySeriesSerializer(serializers.Serializer):
    metric = serializers.CharField(help_text="Metric name.")
    points = SummaryPointSerializer(many=True, help_text="One point per bucket that holds samples, oldest first.")

    class Meta:
        field_examples = {"metric": METRIC_EXAMPLE}


class SummarySerializer(serializers.Serializer):
    gpu = serializers.CharField(help_text=DEVICE_ID_HELP)
    bucket = serializers.CharField(help_text="Bucket width.")
    aggregates = serializers.ListField(child=serializers.CharField(), help_text="The aggregates in each point.")
    start_time = serializers.DateTimeField(allow_null=True, help_text="Start of the window (inclusive).")
    end_time = serializers.DateTimeField(allow_null=True, help_text="End of the window (inclusive).")
    series = SummarySeriesSerializer(many=True, help_text="One series per metric with samples in the window, by metric name.")

    class Meta:
        field_examples = {
            "gpu": GPU_UUID_EXAMPLE, "bucket": "1m", "aggregates": ["avg", "min", "max", "last"],
            "start_time": "2025-07-17T20:42:37Z", "end_time": "2025-07-18T20:42:37Z",
        }

    @staticmethod
    def write(*, gpu: str, query: dict, points: dict[int, Series]) -> bytes:
        """The summary as JSON: a series per metric with points, by metric name."""
        return orjson.dumps({
            "gpu": gpu, "bucket": query["bucket"], "aggregates": query["agg"],
            "start_time": to_rfc3339(query["start_time"]), "end_time": to_rfc3339(query["end_time"]),
            "series": [{"metric": name, "points": series.json()} for name, series in
                       sorted(((selectors.metric_name(metric_id), series) for metric_id, series in points.items()),
                              key=lambda named: named[0])],
        })
