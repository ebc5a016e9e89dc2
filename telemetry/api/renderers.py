"""The API's JSON renderer: DRF's output, encoded by orjson."""
import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

# Datetimes and dataclasses go to DRF's encoder, so they come out as DRF writes them (a UTC time
# ends in Z, not +00:00); subclasses of str (DRF's ErrorDetail) are written as strings, as json does.
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class FastJSONRenderer(JSONRenderer):
    """DRF's JSONRenderer (compact, UTF-8), with orjson writing the bytes: encoding a page of samples
    with json.dumps cost nearly as much as querying it (the README's benchmarks)."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        if self.get_indent(accepted_media_type or "", renderer_context or {}):
            return super().render(data, accepted_media_type, renderer_context)
        return orjson.dumps(data, default=JSONEncoder().default, option=_PASSTHROUGH)
