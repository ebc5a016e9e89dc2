"""values.yaml, values.schema.json and the chart README agree; the schema rejects typos."""
import json
import re

import pytest
import yaml

from tests.chart.examples import CHART


def leaf_keys(values: dict, prefix: str = "") -> set[str]:
    """Dotted keys of values.yaml, stopping at maps the user fills (empty or free-form)."""
    keys = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        keys.add(path)
        if isinstance(value, dict) and value and not FREE_FORM.match(path):
            keys |= leaf_keys(value, path + ".")
    return keys


FREE_FORM = re.compile(r".*\.(resources|podSecurityContext|securityContext|nodeSelector|updateStrategy|labels)$")


def param_lines() -> list[str]:
    return re.findall(r"^\s*## @param (\S+) ", (CHART / "values.yaml").read_text(), flags=re.M)


def test_every_values_key_has_a_param_comment_above_it():
    lines = (CHART / "values.yaml").read_text().splitlines()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = set(param_lines())
    # A map of sub-keys is documented through its children; a leaf needs its own line.
    leaves = {k for k in leaf_keys(values)
              if not isinstance(_get(values, k), dict) or not _get(values, k) or FREE_FORM.match(k)}
    assert leaves - documented == set()
    assert documented - leaf_keys(values) == set()
    # ... and the comment sits right above the key.
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)## @param (\S+) ", line)
        if match:
            key = match.group(2).rsplit(".", 1)[-1]
            assert re.match(rf"^{match.group(1)}{re.escape(key)}:", lines[i + 1]), f"line {i + 2}: {key}"


def _get(values: dict, dotted: str):
    for part in dotted.split("."):
        values = values[part]
    return values


def test_schema_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict, value: dict, path: str) -> None:
        node = resolve(node)
        assert node.get("additionalProperties") is False or path.endswith(FREE_SUFFIXES), path
        for key, sub in value.items():
            props = node.get("properties", {})
            assert key in props or path.endswith(FREE_SUFFIXES), f"{path}{key} missing from the schema"
            if isinstance(sub, dict) and key in props and resolve(props[key]).get("properties"):
                walk(props[key], sub, f"{path}{key}.")

    def resolve(node: dict) -> dict:
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        return node

    walk(schema, values, "")


FREE_SUFFIXES = ("requests.", "limits.")


def test_readme_documents_every_value():
    readme = (CHART / "README.md").read_text()
    missing = [key for key in param_lines() if f"`{key}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("args, message", [
    (["--set", "collector.replicas=3"], "replicas"),
    (["--set", "streamer.workers=many"], "workers"),
    (["--set", "apiGateway.ingres.enabled=true"], "ingres"),
    (["--set", "streamer.partition=rack"], "partition"),
    (["--set", "mq.persistence.size=lots"], "size"),
])
def test_schema_rejects_typos_and_wrong_types(helm, args, message):
    assert message in helm.fails(*args)
