"""The OpenAPI schema: valid, committed as generated, described and exemplified, served with local assets."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def _generated(tmp_path) -> str:
    out = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(out))
    return out.read_text()


def test_committed_openapi_yaml_is_what_the_code_generates(tmp_path):
    assert (ROOT / "openapi.yaml").read_text() == _generated(tmp_path), "openapi.yaml is stale: run `make openapi`"


def test_spectacular_validates_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "o.yaml")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_every_parameter_and_field_has_a_description_and_an_example():
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    assert set(spec["paths"]) >= {
        "/api/v1/gpus", "/api/v1/gpus/{id}", "/api/v1/gpus/{id}/telemetry", "/api/v1/gpus/{id}/telemetry/summary",
        "/api/v1/gpus/{id}/latest", "/api/v1/hosts", "/api/v1/hosts/{hostname}/gpus", "/api/v1/metrics",
    }
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for param in operation.get("parameters", []):
                if not param.get("description") or not (param.get("examples") or "example" in param):
                    missing.append(f"{method} {path} ?{param['name']}")
    for name, component in spec["components"]["schemas"].items():
        for field, prop in component.get("properties", {}).items():
            if "$ref" in prop or prop.get("type") == "array" and "$ref" in prop.get("items", {}):
                continue  # a nested object: its own fields are checked
            if not prop.get("description") or "example" not in prop:
                missing.append(f"{name}.{field}")
    assert not missing, missing


def test_times_without_zone_are_documented_as_utc():
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    params = spec["paths"]["/api/v1/gpus/{id}/telemetry"]["get"]["parameters"]
    start = next(p for p in params if p["name"] == "start_time")
    assert "without a zone offset is taken as UTC" in start["description"]


def test_devices_are_documented_with_their_ids_mig_fields_and_filters():
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    gpu = spec["components"]["schemas"]["Gpu"]["properties"]
    for field in ("mig_instance", "mig_profile", "parent", "namespace", "pod", "container"):
        assert gpu[field]["nullable"] is True, field
    assert "null for a whole GPU" in gpu["parent"]["description"] and "null for a whole GPU" in gpu["mig_instance"]["description"]
    assert gpu["id"]["example"].endswith(":mig1")
    for path in ("/api/v1/gpus/{id}", "/api/v1/gpus/{id}/telemetry", "/api/v1/gpus/{id}/telemetry/summary", "/api/v1/gpus/{id}/latest"):
        [device] = [p for p in spec["paths"][path]["get"]["parameters"] if p["in"] == "path"]
        assert device["name"] == "id" and {e["value"].endswith(":mig1") for e in device["examples"].values()} == {True, False}
    params = {
        path: {p["name"] for p in spec["paths"][path]["get"]["parameters"]}
        for path in ("/api/v1/gpus", "/api/v1/gpus/{id}/telemetry", "/api/v1/gpus/{id}/telemetry/summary")
    }
    assert {"mig", "parent", "namespace", "pod", "container"} <= params["/api/v1/gpus"]
    assert {"namespace", "pod", "container"} <= params["/api/v1/gpus/{id}/telemetry"] & params["/api/v1/gpus/{id}/telemetry/summary"]


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_render_with_local_assets_only(client, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "/api/schema/" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and not [a for a in assets if a.startswith(("http://", "https://", "//"))], assets
    for asset in assets:
        if asset.startswith("/static/"):
            assert client.get(asset).status_code == 200, asset


def test_schema_endpoint_serves_the_schema(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert yaml.safe_load(response.content)["info"]["title"] == "gpu-telemetry API"
