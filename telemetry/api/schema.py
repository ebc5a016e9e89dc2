"""drf-spectacular glue: per-field examples from a serializer's Meta.field_examples, the token scheme."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers


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
