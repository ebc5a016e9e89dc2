"""The API's renderer writes what DRF's own JSONRenderer writes."""
import json
from datetime import datetime, timezone
from decimal import Decimal

from rest_framework.exceptions import ErrorDetail
from rest_framework.renderers import JSONRenderer

from telemetry.api.renderers import FastJSONRenderer


def test_it_writes_what_drfs_renderer_writes():
    data = {
        "gpu": "GPU-5fd4f087", "next": None, "count": 3, "ok": True,
        "results": [{"timestamp": "2025-07-18T20:42:34.5Z", "metric": "DCGM_FI_DEV_GPU_UTIL", "value": 80.0},
                    {"timestamp": "2025-07-18T20:42:34.5Z", "metric": "DCGM_FI_DEV_POWER_USAGE", "value": 1e-07}],
        "seen": datetime(2025, 7, 18, 20, 42, 34, 500000, tzinfo=timezone.utc), "share": Decimal("0.25"),
        "detail": ErrorDetail("No GPU with id 'x'.", code="not_found"), "host": "nœud-1",
    }
    fast, drf = FastJSONRenderer().render(data), JSONRenderer().render(data)
    assert json.loads(fast) == json.loads(drf)
    # The same text but for exponents: orjson writes 1e-7 where Python writes 1e-07.
    assert fast == drf.replace(b"1e-07", b"1e-7")


def test_nothing_renders_as_an_empty_body():
    assert FastJSONRenderer().render(None) == b""
