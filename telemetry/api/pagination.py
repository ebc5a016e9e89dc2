"""Pages of the read API: offset pages of devices and hosts, keyset cursor pages of one device's samples."""
from __future__ import annotations

import base64
import binascii

from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.pagination import BasePagination, LimitOffsetPagination
from rest_framework.utils.urls import replace_query_param

from telemetry.api import selectors
from telemetry.api.window import Samples
from telemetry.api.serializers import TelemetryPageSerializer, TelemetrySeriesPageSerializer
from telemetry.times import to_datetime, to_microseconds


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


class Cursor:
    """An opaque position: `n` (rows after) or `p` (rows before) a (time, metric) key, base64url-encoded."""

    @staticmethod
    def encode(direction: str, position: selectors.Position) -> str:
        raw = f"{direction}:{to_microseconds(position.timestamp)}:{position.metric_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(text: str) -> tuple[str, selectors.Position]:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            direction, micros, metric_id = raw.split(":")
            if direction not in ("n", "p"):
                raise ValueError(direction)
            position = selectors.Position(to_datetime(int(micros)), int(metric_id))
            if not -32768 <= position.metric_id <= 32767:
                raise ValueError(metric_id)
        except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
            raise serializers.ValidationError({"cursor": ["Invalid cursor; use a `next` or `previous` link as given."]}) from None
        return direction, position


# Each of serializers.SHAPES and the serializer that writes a page in it.
_PAGE_WRITERS = {"samples": TelemetryPageSerializer, "series": TelemetrySeriesPageSerializer}


def _position(samples: Samples, index: int) -> selectors.Position:
    return selectors.Position(to_datetime(int(samples.times[index])), int(samples.metric_ids[index]))


class SampleCursorPagination(BasePagination):
    """Keyset pages of one device's samples in (time, metric) order, written as samples or as series.

    A cursor holds the key of the sample a page ended at (`next`: the samples after it) or started
    at (`previous`: the samples before it), so links stay correct while new samples arrive and a
    page deep into a large table costs the same as the first. No total is counted.
    """

    cursor_query_param = "cursor"

    def paginate_window(
        self, window: selectors.SampleWindow, request, *, limit: int, cursor: str | None = None
    ) -> Samples:
        """The page of `window` that `cursor` (validated text from the query, or None: the first page) points at."""
        direction, position = Cursor.decode(cursor) if cursor is not None else ("n", None)
        backwards = direction == "p"
        # One sample more than the page tells whether another page follows in the walk's direction.
        rows = window.samples(after=None if backwards else position, before=position if backwards else None, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        if backwards:
            rows = rows[::-1]
        # A page reached from a cursor has more samples on the cursor's side.
        has_next = (more and not backwards) or (backwards and position is not None)
        has_previous = (more and backwards) or (not backwards and position is not None)
        url = request.build_absolute_uri()
        self.gpu = window.device_id
        self.next_link = self.previous_link = None
        if len(rows) and has_next:
            self.next_link = replace_query_param(url, self.cursor_query_param, Cursor.encode("n", _position(rows, -1)))
        if len(rows) and has_previous:
            self.previous_link = replace_query_param(url, self.cursor_query_param, Cursor.encode("p", _position(rows, 0)))
        return rows

    def get_paginated_response(self, data: Samples, *, shape: str = "samples") -> HttpResponse:
        """The page in `shape`: an object per sample (`results`), or a series per metric (`series`)."""
        text = _PAGE_WRITERS[shape].write(gpu=self.gpu, next_link=self.next_link, previous_link=self.previous_link, samples=data)
        return HttpResponse(text, content_type="application/json")
