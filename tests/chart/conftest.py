"""Fixtures that render the chart with each pinned helm (`make helm` installs them in .tools/).

Every test that takes `helm` runs once per helm version. A missing helm is an error, never a
skip: `make chart-test` installs both before pytest starts.
"""
import os
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.chart.examples import CHART, ROOT, all_examples

KUBE_VERSION = "1.30.0"
DEFAULT_HELMS = [ROOT / ".tools" / "helm-3.18.0" / "helm", ROOT / ".tools" / "helm-4.1.4" / "helm"]


def helm_binaries() -> list[Path]:
    env = os.environ.get("HELM_BINARIES", "")
    return [Path(p) for p in env.split()] if env else DEFAULT_HELMS


def pytest_configure(config):
    missing = [str(h) for h in helm_binaries() if not os.access(h, os.X_OK)]
    if missing:
        raise pytest.UsageError(f"helm not installed at {', '.join(missing)}: run `make helm` first")


@cache
def _helm_version(helm: str) -> str:
    return subprocess.run([helm, "version", "--short"], check=True, capture_output=True, text=True).stdout.split("+")[0].strip()


@cache
def _template(helm: str, release: str, args: tuple[str, ...]) -> tuple[int, str, str]:
    cmd = [helm, "template", release, str(CHART), "--namespace", "telemetry", "--kube-version", KUBE_VERSION, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    return result.returncode, result.stdout, result.stderr


class Rendered(list):
    """The documents of one render, with finders by kind, name suffix and component."""

    def kinds(self) -> set[str]:
        return {d["kind"] for d in self}

    def of(self, kind: str, component: str | None = None) -> list[dict]:
        return [d for d in self if d["kind"] == kind
                and (component is None or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)]

    def one(self, kind: str, component: str | None = None, suffix: str | None = None) -> dict:
        found = [d for d in self.of(kind, component) if suffix is None or d["metadata"]["name"].endswith(suffix)]
        assert len(found) == 1, f"expected one {kind} {component or ''}{suffix or ''}, found {[d['metadata']['name'] for d in found]}"
        return found[0]

    def component(self, component: str) -> list[dict]:
        return [d for d in self if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]

    def pod_specs(self) -> list[tuple[dict, dict]]:
        """(object, pod spec) for every workload, Job, CronJob and Pod."""
        return [(d, pod_spec(d)) for d in self if d["kind"] in POD_KINDS]


POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}


def pod_spec(obj: dict) -> dict:
    """The pod spec of a workload, Job, CronJob (its Jobs' pods) or Pod."""
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


class Renderer:
    def __init__(self, helm: Path):
        self.helm = str(helm)
        self.version = _helm_version(self.helm)

    def __call__(self, *args: str, release: str = "telemetry") -> Rendered:
        code, out, err = _template(self.helm, release, tuple(args))
        assert code == 0, f"helm template {' '.join(args)} failed:\n{err}"
        return Rendered(d for d in yaml.safe_load_all(out) if d)

    def fails(self, *args: str) -> str:
        code, _, err = _template(self.helm, "telemetry", tuple(args))
        assert code != 0, f"helm template {' '.join(args)} should have failed"
        return err

    def example(self, name: str) -> Rendered:
        release, args = all_examples()[name]
        return self(*args, release=release)


@pytest.fixture(scope="session", params=helm_binaries(), ids=lambda p: p.parent.name)
def helm(request) -> Renderer:
    return Renderer(request.param)


def env_of(container: dict) -> dict:
    """A container's env as {name: value or valueFrom}."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
