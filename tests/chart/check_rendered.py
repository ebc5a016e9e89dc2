"""Checks on rendered manifests that kubernetes-validate cannot make.

kubernetes-validate knows only Kubernetes' own kinds: for a custom resource it prints a warning
and passes. This script fails on any kind it has no schema for, except the custom resources the
chart renders on purpose, which it checks field by field against their CRDs' required shape
(Prometheus Operator ServiceMonitor, KEDA ScaledObject and TriggerAuthentication).

usage: python tests/chart/check_rendered.py RENDER_DIR [KUBE_VERSION]
"""
import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Problems(list):
    def need(self, cond: bool, message: str) -> None:
        if not cond:
            self.append(message)


def check_metadata(doc: dict, p: Problems) -> None:
    meta = doc.get("metadata") or {}
    p.need(bool(NAME.match(meta.get("name", ""))) and len(meta["name"]) <= 63, f"bad name {meta.get('name')!r}")
    p.need(isinstance(meta.get("labels"), dict), "no labels")


def check_service_monitor(doc: dict, services: list[dict], p: Problems) -> None:
    p.need(doc["apiVersion"] == "monitoring.coreos.com/v1", "apiVersion must be monitoring.coreos.com/v1")
    spec = doc.get("spec") or {}
    allowed = {"jobLabel", "namespaceSelector", "selector", "endpoints", "targetLabels", "podTargetLabels",
               "sampleLimit", "attachMetadata"}
    p.need(not set(spec) - allowed, f"unknown spec fields {sorted(set(spec) - allowed)}")
    selector = spec.get("selector") or {}
    p.need(set(selector) <= {"matchLabels", "matchExpressions"} and bool(selector), "selector must be a label selector")
    endpoints = spec.get("endpoints") or []
    p.need(bool(endpoints), "no endpoints")
    ep_allowed = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
                  "relabelings", "metricRelabelings", "params", "bearerTokenSecret", "tlsConfig", "basicAuth"}
    # The selected Services (same labels) must expose every scraped port by name.
    def selected(svc: dict) -> bool:
        labels = svc["metadata"].get("labels") or {}
        if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
            return False
        for expr in selector.get("matchExpressions") or []:
            if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
                return False
        return True
    ports = {port.get("name") for svc in services if selected(svc) for port in svc["spec"].get("ports", [])}
    p.need(bool(ports), "selector matches no Service of the release")
    for ep in endpoints:
        p.need(not set(ep) - ep_allowed, f"unknown endpoint fields {sorted(set(ep) - ep_allowed)}")
        p.need(ep.get("port") in ports, f"endpoint port {ep.get('port')!r} is on no selected Service")
        p.need(str(ep.get("path", "/metrics")).startswith("/"), "endpoint path must start with /")
        p.need(ep.get("scheme", "http") in {"http", "https"}, "scheme must be http or https")
        for key in ("interval", "scrapeTimeout"):
            if key in ep:
                p.need(bool(DURATION.match(str(ep[key]))), f"{key} {ep[key]!r} is not a Prometheus duration")


def check_scaled_object(doc: dict, by_kind: dict, p: Problems) -> None:
    p.need(doc["apiVersion"] == "keda.sh/v1alpha1", "apiVersion must be keda.sh/v1alpha1")
    spec = doc.get("spec") or {}
    allowed = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
               "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}
    p.need(not set(spec) - allowed, f"unknown spec fields {sorted(set(spec) - allowed)}")
    target = spec.get("scaleTargetRef") or {}
    deployments = {d["metadata"]["name"] for d in by_kind.get("Deployment", [])}
    p.need(target.get("name") in deployments, f"scaleTargetRef {target.get('name')!r} is no rendered Deployment")
    for key in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
        if key in spec:
            p.need(isinstance(spec[key], int) and spec[key] >= 0, f"{key} must be a non-negative integer")
    p.need(spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100), "minReplicaCount > maxReplicaCount")
    triggers = spec.get("triggers") or []
    p.need(bool(triggers), "no triggers")
    auths = {a["metadata"]["name"] for a in by_kind.get("TriggerAuthentication", [])}
    for trig in triggers:
        p.need(isinstance(trig.get("type"), str), "trigger without type")
        meta = trig.get("metadata") or {}
        p.need(all(isinstance(v, str) for v in meta.values()), "trigger metadata values must be strings")
        if trig.get("type") == "rabbitmq":
            p.need(meta.get("protocol") in {"amqp", "http", "auto"}, "rabbitmq protocol must be amqp, http or auto")
            p.need(meta.get("mode") in {"QueueLength", "MessageRate"}, "rabbitmq mode must be QueueLength or MessageRate")
            p.need(bool(meta.get("queueName")), "rabbitmq trigger without queueName")
            p.need(meta.get("value", "").isdigit(), "rabbitmq value must be a whole number in a string")
            ref = (trig.get("authenticationRef") or {}).get("name")
            p.need("host" in meta or "hostFromEnv" in meta or ref in auths,
                   "rabbitmq trigger needs host, hostFromEnv or a rendered TriggerAuthentication")


def check_trigger_authentication(doc: dict, p: Problems) -> None:
    p.need(doc["apiVersion"] == "keda.sh/v1alpha1", "apiVersion must be keda.sh/v1alpha1")
    spec = doc.get("spec") or {}
    p.need(bool(spec.get("secretTargetRef")), "no secretTargetRef")
    for ref in spec.get("secretTargetRef") or []:
        p.need(set(ref) == {"parameter", "name", "key"}, f"secretTargetRef entry {ref} needs parameter, name, key")


CUSTOM_KINDS = {"ServiceMonitor", "ScaledObject", "TriggerAuthentication"}


def check_file(path: Path, kube_version: str) -> tuple[int, list[str]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    errors = []
    for doc in docs:
        kind, name = doc["kind"], doc.get("metadata", {}).get("name")
        p = Problems()
        check_metadata(doc, p)
        if kind == "ServiceMonitor":
            check_service_monitor(doc, by_kind.get("Service", []), p)
        elif kind == "ScaledObject":
            check_scaled_object(doc, by_kind, p)
        elif kind == "TriggerAuthentication":
            check_trigger_authentication(doc, p)
        else:
            try:
                kubernetes_validate.validate(doc, kube_version, strict=True)
            except SchemaNotFoundError:
                p.append(f"no schema for {doc['apiVersion']} {kind} in Kubernetes {kube_version}")
            except kubernetes_validate.ValidationError as exc:
                p.append(f"invalid: {'.'.join(map(str, exc.path))}: {exc.message}")
        errors += [f"{path.name}: {kind}/{name}: {msg}" for msg in p]
    return len(docs), errors


def main(argv: list[str]) -> int:
    render_dir = Path(argv[1])
    kube_version = argv[2] if len(argv) > 2 else "1.30.0"
    files = sorted(render_dir.glob("*.yaml"))
    if not files:
        print(f"no rendered manifests in {render_dir}", file=sys.stderr)
        return 1
    total, custom, errors = 0, 0, []
    for path in files:
        count, errs = check_file(path, kube_version)
        total += count
        custom += sum(1 for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] in CUSTOM_KINDS)
        errors += errs
    for err in errors:
        print(f"ERROR {err}", file=sys.stderr)
    print(f"{render_dir}: {len(files)} renders, {total} manifests checked "
          f"({total - custom} against Kubernetes {kube_version} schemas, {custom} custom resources by assertion), "
          f"{len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
