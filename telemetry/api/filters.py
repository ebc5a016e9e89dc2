"""django-filter FilterSets for the device lists; each label becomes the parameter's OpenAPI description."""
from datetime import timedelta

from django.db.models import F
from django.utils import timezone
from django_filters import rest_framework as filters
from rest_framework.exceptions import ValidationError

from telemetry.models import Gpu
from telemetry.times import to_utc

# Ten years: anything larger is a typo, and would overflow a date computation.
MAX_STALE_SECONDS = 10 * 365 * 86400


class GpuFilter(filters.FilterSet):
    """Filters of `selectors.devices()`, whose namespace, pod and container are its newest reading's."""

    hostname = filters.CharFilter(field_name="hostname", label="Only GPUs on this host (exact host name).")
    model = filters.CharFilter(field_name="model_name", label="Only GPUs of this model (exact model name).")
    seen_since = filters.IsoDateTimeFilter(
        method="filter_seen_since",
        label="Only GPUs whose newest sample is at or after this time (ISO 8601; a time without a zone is UTC).",
    )
    stale = filters.NumberFilter(
        method="filter_stale", min_value=0, max_value=MAX_STALE_SECONDS,
        label="Only GPUs that stopped reporting: newest sample older than this many seconds before now.",
    )
    mig = filters.ChoiceFilter(
        method="filter_mig", choices=[("true", "true"), ("false", "false")],
        label="`true`: only MIG instances; `false`: only whole GPUs.",
    )
    parent = filters.CharFilter(
        method="filter_parent", label="Only the MIG instances of the GPU with this UUID (exact).",
    )
    namespace = filters.CharFilter(
        field_name="namespace",
        label="Only devices whose newest reading carries this Kubernetes namespace (exact; the exporter's `namespace` label).",
    )
    pod = filters.CharFilter(
        field_name="pod",
        label="Only devices whose newest reading carries this pod (exact; the exporter's `pod` label).",
    )
    container = filters.CharFilter(
        field_name="container",
        label="Only devices whose newest reading carries this container (exact; the exporter's `container` label).",
    )
    ordering = filters.OrderingFilter(
        fields=(
            ("hostname", "hostname"), ("index", "index"), ("uuid", "uuid"), ("model_name", "model"),
            ("first_seen", "first_seen"), ("last_seen", "last_seen"),
        ),
        label="Sort by hostname, index, uuid, model, first_seen or last_seen; prefix - for descending; comma-separate several.",
    )

    class Meta:
        model = Gpu
        fields = ["hostname", "model", "seen_since", "stale", "mig", "parent", "namespace", "pod", "container"]

    def filter_seen_since(self, queryset, name, value):
        # PostgreSQL accepts zone offsets up to 15:59, Python up to 23:59: compare in UTC.
        try:
            value = to_utc(value)
        except OverflowError:
            raise ValidationError({"seen_since": ["seen_since is out of range."]}) from None
        return queryset.filter(last_seen__gte=value)

    def filter_stale(self, queryset, name, value):
        return queryset.filter(last_seen__lt=timezone.now() - timedelta(seconds=float(value)))

    def filter_mig(self, queryset, name, value):
        return queryset.filter(mig_instance__isnull=value == "false")

    def filter_parent(self, queryset, name, value):
        return queryset.filter(uuid=value, mig_instance__isnull=False)

    def filter_queryset(self, queryset):
        # A unique tie-break, so offset pages never repeat or skip a device whatever the ordering.
        queryset = super().filter_queryset(queryset)
        # By default each whole GPU comes before its MIG instances, which share its host and index.
        default = ("hostname", "index", F("mig_instance").asc(nulls_first=True))
        return queryset.order_by(*(queryset.query.order_by or default), "id")
