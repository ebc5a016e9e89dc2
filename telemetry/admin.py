"""Django admin for browsing GPU data: devices (whole GPUs and MIG instances) with their latest values
and a chart of whatever metrics each reported, and read-only readings.

A reading is one GPU's metric values at one time (each value a sample). The reading table may hold
millions of rows, so its changelist never counts it in full (a bounded count), never sorts it by
an unindexed column, and draws its date drill-down from the GPU table's first/last seen instead of
scanning readings for distinct dates.
"""
from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from html import escape

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.paginator import Paginator
from django.db.models import F, Max, Min
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import capfirst

from telemetry.api import selectors
from telemetry.models import Gpu, IngestCounter, Metric, Reading
from telemetry.times import from_rfc3339, to_rfc3339_short, to_utc

CHART_WINDOW = timedelta(hours=1)
CHART_MAX_SAMPLES = 5000
# A device's page lists its newest packed hours and shows one of them, samples up to this many.
PACKED_HOURS_LISTED = 48
PACKED_HOUR_SAMPLES = 20000


class ReadOnlyAdmin(admin.ModelAdmin):
    """Browsing only: the collector is the one writer of telemetry."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- GPUs ---


class StaleFilter(admin.SimpleListFilter):
    title = "reporting"
    parameter_name = "stale"

    def lookups(self, request, model_admin):
        return [("yes", "Stale (silent)"), ("no", "Reporting")]

    def queryset(self, request, queryset):
        cutoff = timezone.now() - timedelta(seconds=settings.ADMIN_STALE_SECONDS)
        if self.value() == "yes":
            return queryset.filter(last_seen__lt=cutoff)
        if self.value() == "no":
            return queryset.filter(last_seen__gte=cutoff)
        return queryset


class MigFilter(admin.SimpleListFilter):
    title = "MIG"
    parameter_name = "mig"

    def lookups(self, request, model_admin):
        return [("no", "Whole GPUs"), ("yes", "MIG instances")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(mig_instance__isnull=self.value() == "no")
        return queryset


@admin.register(Gpu)
class GpuAdmin(ReadOnlyAdmin):
    list_display = [
        "hostname", "index", "instance", "profile", "uuid", "model_name", "last_seen", "is_stale", "sample_count",
    ]
    list_filter = [StaleFilter, MigFilter, "hostname", "model_name"]
    search_fields = ["uuid", "hostname"]
    # A whole GPU before its MIG instances, which share its host and index.
    ordering = ["hostname", "index", F("mig_instance").asc(nulls_first=True)]
    list_per_page = 100
    change_form_template = "admin/telemetry/gpu/change_form.html"

    @admin.display(description="MIG instance", ordering="mig_instance", empty_value="-")
    def instance(self, gpu: Gpu) -> int | None:
        return gpu.mig_instance

    @admin.display(description="MIG profile", ordering="mig_profile", empty_value="-")
    def profile(self, gpu: Gpu) -> str | None:
        return gpu.mig_profile or None

    @admin.display(boolean=True, description="Stale", ordering="last_seen")
    def is_stale(self, gpu: Gpu) -> bool:
        return gpu.last_seen < timezone.now() - timedelta(seconds=settings.ADMIN_STALE_SECONDS)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        gpu = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if gpu is not None:
            extra["latest_values"] = selectors.gpu_latest_values(gpu_id=gpu.pk)
            extra["chart_svg"] = gpu_chart_svg(gpu=gpu)
            extra["readings_url"] = reverse("admin:telemetry_reading_changelist") + f"?gpu__id__exact={gpu.pk}"
            extra["api_url"] = reverse("api:gpu-telemetry", kwargs={"id": gpu.device_id})
            extra["packed_hours"] = selectors.gpu_packed_hours(gpu_id=gpu.pk, limit=PACKED_HOURS_LISTED)
            hour = packed_hour_asked(request, extra["packed_hours"])
            if hour is not None:
                extra["packed_hour"] = hour
                extra["packed_hour_readings"] = hour_readings(gpu=gpu, hour=hour)
            if gpu.mig_instance is None:
                extra["mig_instances"] = Gpu.objects.filter(uuid=gpu.uuid, mig_instance__isnull=False).order_by("mig_instance")
            else:
                # The parent is a device of its own only when it reported as a whole GPU too.
                extra["parent_gpu"] = Gpu.objects.filter(uuid=gpu.uuid, mig_instance=None).first()
        return super().change_view(request, object_id, form_url, extra)


def packed_hour_asked(request, hours: list[selectors.PackedHour]) -> datetime | None:
    """The packed hour the page was asked to show (?packed_hour=<RFC 3339>), if it is one of those listed."""
    asked = request.GET.get("packed_hour")
    return next((h.hour for h in hours if asked and to_rfc3339_short(h.hour) == asked), None)


def hour_readings(*, gpu: Gpu, hour: datetime) -> list[tuple[str, list[tuple[str, float]]]]:
    """The readings of one hour, as the API reads them (packed or not): (time, [(metric, value)…])."""
    rows = selectors.gpu_telemetry_window(gpu_id=gpu.pk, start=hour, end=hour + timedelta(hours=1, microseconds=-1),
                                          limit=PACKED_HOUR_SAMPLES)
    readings: dict[str, list[tuple[str, float]]] = {}
    for ts, metric_id, value in rows:
        readings.setdefault(ts, []).append((selectors.metric_name(metric_id), value))
    return list(readings.items())


def gpu_chart_svg(*, gpu: Gpu, window: timedelta = CHART_WINDOW) -> str:
    """One small line chart per metric the device reported over its last `window` of samples, as inline SVG."""
    rows = selectors.gpu_telemetry_window(
        gpu_id=gpu.pk, start=gpu.last_seen - window, end=gpu.last_seen, order="desc", limit=CHART_MAX_SAMPLES
    )
    series: dict[str, list[tuple[datetime, float]]] = {}
    for ts, metric_id, value in reversed(rows):
        series.setdefault(selectors.metric_name(metric_id), []).append((from_rfc3339(ts), value))
    return render_chart_svg(series=series)


def render_chart_svg(*, series: dict[str, list[tuple[datetime, float]]]) -> str:
    columns, panel_w, panel_h, pad = 2, 440, 110, 10
    names = sorted(series)
    rows_count = max(1, (len(names) + columns - 1) // columns)
    width, height = columns * panel_w, rows_count * panel_h
    parts = [
        f'<svg id="gpu-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Recent metrics of this GPU" '
        'style="font: 11px sans-serif; background: #fff">'
    ]
    if not names:
        parts.append(f'<text x="{pad}" y="20">No samples in the chart window.</text></svg>')
        return mark_safe("".join(parts))
    times = [ts for points in series.values() for ts, _ in points]
    t0, t1 = min(times), max(times)
    span = (t1 - t0).total_seconds() or 1.0
    for i, name in enumerate(names):
        points = series[name]
        x0, y0 = (i % columns) * panel_w, (i // columns) * panel_h
        plot_x, plot_y, plot_w, plot_h = x0 + pad, y0 + 28, panel_w - 2 * pad - 60, panel_h - 40
        values = [v for _, v in points]
        low, high = min(values), max(values)
        scale = (high - low) or 1.0

        def xy(ts, v):
            x = plot_x + (plot_w * (ts - t0).total_seconds() / span if t1 > t0 else plot_w)
            y = plot_y + plot_h - (plot_h * (v - low) / scale if high > low else plot_h / 2)
            return f"{x:.1f},{y:.1f}"

        parts.append(
            f'<g class="metric" data-metric="{escape(name)}">'
            f'<rect x="{x0 + 2}" y="{y0 + 2}" width="{panel_w - 4}" height="{panel_h - 4}" fill="#f8f9fb" stroke="#d0d7de"/>'
            f'<text x="{plot_x}" y="{y0 + 18}" font-weight="bold">{escape(name)}</text>'
            f'<text x="{x0 + panel_w - pad}" y="{y0 + 18}" text-anchor="end">latest {values[-1]:g}</text>'
            f'<text x="{plot_x + plot_w + 6}" y="{plot_y + 8}">{high:g}</text>'
            f'<text x="{plot_x + plot_w + 6}" y="{plot_y + plot_h}">{low:g}</text>'
            f'<line x1="{plot_x}" y1="{plot_y + plot_h}" x2="{plot_x + plot_w}" y2="{plot_y + plot_h}" stroke="#aab"/>'
        )
        coords = [xy(ts, v) for ts, v in points]
        if len(coords) > 1:
            parts.append(f'<polyline fill="none" stroke="#2f6fdf" stroke-width="1.5" points="{" ".join(coords)}"/>')
        for coord in coords[-1:] if len(coords) > 1 else coords:
            cx, cy = coord.split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="#2f6fdf"/>')
        parts.append("</g>")
    parts.append("</svg>")
    return mark_safe("".join(parts))


# --- Readings ---


class BoundedCountPaginator(Paginator):
    """Counts at most LIMIT rows (a `LIMIT`ed subquery), so a page never costs a full COUNT(*)."""

    LIMIT = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by().values("pk")[: self.LIMIT].count()


GPU_PARAM = "gpu__id__exact"


class HostFilter(admin.SimpleListFilter):
    """The GPUs' hosts, listed from the GPU table (never from the readings)."""

    title = "host"
    parameter_name = "gpu__hostname"

    def lookups(self, request, model_admin):
        hosts = Gpu.objects.order_by("hostname").values_list("hostname", flat=True).distinct()
        return [(host, host) for host in hosts]

    def has_output(self):
        # Django drops a filter without choices, even one given in the URL.
        return bool(self.lookup_choices) or self.value() is not None

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(gpu_id__in=Gpu.objects.filter(hostname=self.value()).values("pk"))


def _mig_suffix(gpu: Gpu) -> str:
    return "" if gpu.mig_instance is None else f" MIG {gpu.mig_instance}"


class GpuFilter(admin.SimpleListFilter):
    """One device (the link from a GPU's page); the choices are the chosen host's devices, not all of them."""

    title = "GPU"
    parameter_name = GPU_PARAM

    def lookups(self, request, model_admin):
        host = request.GET.get(HostFilter.parameter_name)
        chosen = request.GET.get(GPU_PARAM)
        if host:
            gpus = Gpu.objects.filter(hostname=host)
        elif chosen and chosen.isascii() and chosen.isdigit() and 0 < int(chosen) < 2**31:
            gpus = Gpu.objects.filter(pk=int(chosen))
        else:
            return []
        gpus = gpus.order_by("index", F("mig_instance").asc(nulls_first=True), "pk")
        return [(str(gpu.pk), f"{gpu.hostname}/{gpu.index}{_mig_suffix(gpu)}") for gpu in gpus]

    def has_output(self):
        # Applied whenever given: an unknown GPU lists no readings instead of every GPU's.
        return bool(self.lookup_choices) or self.value() is not None

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        try:
            gpu_id = int(self.value())
        except ValueError:
            raise IncorrectLookupParameters(f"{GPU_PARAM} must be a GPU id") from None
        return queryset.filter(gpu_id=gpu_id) if 0 < gpu_id < 2**31 else queryset.none()


@admin.register(Reading)
class ReadingAdmin(ReadOnlyAdmin):
    list_display = ["time", "gpu", "metric_values"]
    list_filter = [HostFilter, GpuFilter]
    list_select_related = ["gpu"]
    date_hierarchy = "timestamp"
    fields = ["gpu", "time", "label_set", "metric_values"]
    readonly_fields = ["time", "metric_values"]
    # Newest first: by primary key (newest stored) over all GPUs, by time within one GPU; both are
    # an index walk. Sorting millions of rows by an unindexed column is not offered.
    ordering = ["-id"]
    sortable_by = []
    paginator = BoundedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    change_list_template = "admin/telemetry/reading/change_list.html"

    def get_ordering(self, request):
        if request.GET.get(GPU_PARAM) or request.GET.get("gpu__uuid__exact"):
            # The (gpu, timestamp) unique index walked backwards; both its columns make it total.
            return ["-gpu_id", "-timestamp"]
        return self.ordering

    def lookup_allowed(self, lookup, value, request=None):
        # A GPU by UUID links to its readings without a GPU list in the sidebar.
        return lookup == "gpu__uuid__exact" or super().lookup_allowed(lookup, value, request)

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        changelist.bounded_date_hierarchy = bounded_date_hierarchy(changelist)
        return changelist

    @admin.display(description="Time (UTC)")
    def time(self, reading: Reading) -> str:
        """To the second and its fraction: readings of one GPU are seconds apart."""
        return to_rfc3339_short(reading.timestamp).replace("T", " ").removesuffix("Z")

    @admin.display(description="Values")
    def metric_values(self, reading: Reading):
        """Each sample of the reading as `metric name: value`, by metric name."""
        named = sorted((selectors.metric_name(metric_id), value) for metric_id, value in reading.samples())
        if not named:
            return "-"
        lines = format_html_join(mark_safe("<br>"), "{}: {}", ((name, f"{value:.15g}") for name, value in named))
        return format_html('<span class="metric-values">{}</span>', lines)


def bounded_date_hierarchy(cl) -> dict:
    """Django's date drill-down (year, month, day) built from the GPUs' first/last seen.

    Django's own asks the reading table for its distinct years, months and days: a full scan at
    this size. The GPU table spans the same period in a few hundred rows; a period without
    readings inside that span simply lists no rows when chosen.
    """
    span = Gpu.objects.aggregate(first=Min("first_seen"), last=Max("last_seen"))
    if not span["first"]:
        return {"show": False}
    first, last = (to_utc(moment) for moment in (span["first"], span["last"]))
    params = cl.params

    def lookup(name):
        try:
            return int(params.get(f"timestamp__{name}"))
        except (TypeError, ValueError):
            return None

    year, month, day = lookup("year"), lookup("month"), lookup("day")
    if year is None and first.year == last.year:
        year = first.year
        if first.month == last.month:
            month = first.month

    def link(filters):
        return cl.get_query_string(filters, ["timestamp__"])

    if year and month and day:
        try:
            chosen = datetime(year, month, day)
        except ValueError:
            return {"show": False}
        return {
            "show": True,
            "back": {"link": link({"timestamp__year": year, "timestamp__month": month}),
                     "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT"))},
            "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
        }
    if year and month:
        if not 1 <= month <= 12:
            return {"show": False}
        days = [
            datetime(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)
            if first.date() <= datetime(year, month, d).date() <= last.date()
        ]
        return {
            "show": True,
            "back": {"link": link({"timestamp__year": year}), "title": str(year)},
            "choices": [
                {"link": link({"timestamp__year": year, "timestamp__month": month, "timestamp__day": d.day}),
                 "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT"))}
                for d in days
            ],
        }
    if year:
        months = [datetime(year, m, 1) for m in range(1, 13) if (first.year, first.month) <= (year, m) <= (last.year, last.month)]
        return {
            "show": True,
            "back": {"link": link({}), "title": "All dates"},
            "choices": [
                {"link": link({"timestamp__year": year, "timestamp__month": m.month}),
                 "title": capfirst(formats.date_format(m, "YEAR_MONTH_FORMAT"))}
                for m in months
            ],
        }
    return {
        "show": True,
        "back": None,
        "choices": [{"link": link({"timestamp__year": y}), "title": str(y)} for y in range(first.year, last.year + 1)],
    }


@admin.register(Metric)
class MetricAdmin(ReadOnlyAdmin):
    list_display = ["name", "id"]
    search_fields = ["name"]


@admin.register(IngestCounter)
class IngestCounterAdmin(ReadOnlyAdmin):
    list_display = ["name", "value"]
