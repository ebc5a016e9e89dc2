"""templates/history/: the CronJob running `manage.py compress`, its settings and its NetworkPolicy."""
import re

import pytest

from tests.chart.conftest import env_of, pod_spec
from tests.chart.examples import ROOT

AGE_SETTINGS = {"COMPRESS_AFTER": "compressAfter", "HISTORY_RAW_RETENTION": "rawRetention",
                "HISTORY_MINUTE_RETENTION": "minuteRetention", "HISTORY_HOUR_RETENTION": "hourRetention"}


def _cronjob(docs) -> dict:
    return docs.one("CronJob", "history")


def _container(docs, kind: str, component: str) -> dict:
    return pod_spec(docs.one(kind, component))["containers"][0]


def test_cronjob_defaults(helm):
    docs = helm()
    cronjob = _cronjob(docs)
    assert cronjob["metadata"]["name"] == "telemetry-telemetry-pipeline-history"
    spec = cronjob["spec"]
    assert spec["schedule"] == "*/10 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    assert (spec["startingDeadlineSeconds"], spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (300, 3, 1)
    job = spec["jobTemplate"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (0, 3600)
    assert job["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "history"

    # Pod and container settings as the migration Job's: same image, identity and lock-down.
    pod, migrate = pod_spec(cronjob), pod_spec(docs.one("Job", "migrations"))
    assert pod["restartPolicy"] == "Never"
    for key in ("serviceAccountName", "automountServiceAccountToken", "securityContext", "volumes"):
        assert pod[key] == migrate[key], key
    [container] = pod["containers"]
    assert container["args"] == ["manage", "compress"]
    for key in ("image", "imagePullPolicy", "securityContext", "volumeMounts"):
        assert container[key] == migrate["containers"][0][key], key
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "128Mi"},
                                      "limits": {"cpu": "500m", "memory": "512Mi"}}
    # It waits until no migration is pending, as the collector and the API do.
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-migrations"]

    env = env_of(container)
    assert env["DATABASE_URL"] == env_of(migrate["containers"][0])["DATABASE_URL"]
    assert {name: env[name] for name in AGE_SETTINGS} == {
        "COMPRESS_AFTER": "2h", "HISTORY_RAW_RETENTION": "7d", "HISTORY_MINUTE_RETENTION": "90d",
        "HISTORY_HOUR_RETENTION": "730d"}
    # compress packs only when the collector keeps no per-GPU limit: both read the same value.
    collector = env_of(_container(docs, "Deployment", "collector"))
    assert env["COLLECTOR_MAX_ENTRIES_PER_GPU"] == collector["COLLECTOR_MAX_ENTRIES_PER_GPU"] == "10000"
    assert "nodeSelector" not in pod and "tolerations" not in pod and "affinity" not in pod


def test_defaults_are_the_settings_defaults(helm):
    """Every age setting of config/settings.py reaches the CronJob, with the settings' default."""
    source = (ROOT / "config" / "settings.py").read_text()
    # HISTORY_INTERVAL paces `manage.py pipeline`'s own maintenance thread, which the chart does not run.
    defaults = {name: default for name, default in re.findall(r'env_age\("([A-Z_]+)", "([^"]+)"', source)
                if name != "HISTORY_INTERVAL"}
    assert set(defaults) == set(AGE_SETTINGS)
    env = env_of(_container(helm(), "CronJob", "history"))
    assert {name: env[name] for name in defaults} == defaults


def test_values_reach_the_cronjob_and_the_collector(helm):
    docs = helm("--set", "history.compressAfter=3h", "--set", "history.rawRetention=14d",
                "--set", "history.minuteRetention=0", "--set", "history.hourRetention=0",
                "--set", "collector.maxEntriesPerGPU=0", "--set", "history.schedule=@hourly",
                "--set-json", 'history.extraEnv=[{"name": "DATABASE_CONN_MAX_AGE", "value": "0"}]')
    cronjob = _cronjob(docs)
    assert cronjob["spec"]["schedule"] == "@hourly"
    env = env_of(pod_spec(cronjob)["containers"][0])
    assert {name: env[name] for name in AGE_SETTINGS} == {
        "COMPRESS_AFTER": "3h", "HISTORY_RAW_RETENTION": "14d", "HISTORY_MINUTE_RETENTION": "0",
        "HISTORY_HOUR_RETENTION": "0"}
    assert env["COLLECTOR_MAX_ENTRIES_PER_GPU"] == "0" and env["DATABASE_CONN_MAX_AGE"] == "0"
    # The collector unpacks an hour that a late sample falls in: it needs COMPRESS_AFTER, not the retentions.
    collector = env_of(_container(docs, "Deployment", "collector"))
    assert collector["COMPRESS_AFTER"] == "3h" and collector["COLLECTOR_MAX_ENTRIES_PER_GPU"] == "0"
    assert not [name for name in collector if name.startswith("HISTORY_")]
    assert "DATABASE_CONN_MAX_AGE" not in collector
    # Nothing else reads them.
    for kind, component in (("DaemonSet", "streamer"), ("Deployment", "api-gateway"), ("Job", "migrations")):
        env = env_of(_container(docs, kind, component))
        assert not [n for n in env if n.startswith(("HISTORY_", "COMPRESS_"))], component


def test_ci_scenario(helm):
    docs = helm.example("ci-history")
    cronjob = _cronjob(docs)
    spec, pod = cronjob["spec"], pod_spec(cronjob)
    assert spec["schedule"] == "*/5 * * * *" and spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 1800
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (1, 3)
    env = env_of(pod["containers"][0])
    # A values file's 0 (a number) and "0" (a string) both arrive as "0", which means "kept for ever".
    assert (env["HISTORY_RAW_RETENTION"], env["HISTORY_MINUTE_RETENTION"], env["HISTORY_HOUR_RETENTION"]) == ("14d", "0", "0")
    assert env["COLLECTOR_MAX_ENTRIES_PER_GPU"] == "0"
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/system": "true"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}]
    assert docs.one("NetworkPolicy", "history")


@pytest.mark.parametrize("args", [
    ["--set", "history.enabled=false"],
    # No database to maintain: neither the collector nor the API is deployed.
    ["--set", "collector.enabled=false", "--set", "apiGateway.enabled=false"],
])
def test_can_be_disabled(helm, args):
    docs = helm("--set", "networkPolicy.enabled=true", *args)
    assert not docs.of("CronJob") and not docs.component("history")
    if docs.of("Deployment", "collector"):
        # The collector still needs COMPRESS_AFTER for hours packed by an earlier run or by hand.
        assert env_of(_container(docs, "Deployment", "collector"))["COMPRESS_AFTER"] == "2h"


def test_values_of_a_chart_without_history(helm):
    """`helm upgrade --reuse-values` from a release whose chart had no history.* values."""
    assert "--reset-then-reuse-values" in helm.fails("--set", "history=null")


def test_external_database(helm):
    docs = helm.example("ci-external-services")
    env = env_of(_container(docs, "CronJob", "history"))
    assert env["DATABASE_URL"] == env_of(_container(docs, "Deployment", "collector"))["DATABASE_URL"]
    assert env["SECRET_KEY"] == {"secretKeyRef": {"name": "django-secret", "key": "key"}}


def test_name_leaves_room_for_the_jobs_suffix(helm):
    docs = helm("--set", "fullnameOverride=" + "x" * 63)
    name = _cronjob(docs)["metadata"]["name"]
    assert len(name) == 52 and name.endswith("-history")


def test_no_init_container_without_wait_for_migrations(helm):
    pod = pod_spec(_cronjob(helm("--set", "migrations.waitForMigrations=false")))
    assert "initContainers" not in pod


def test_network_policy(helm):
    docs = helm("--set", "networkPolicy.enabled=true")
    policy = docs.one("NetworkPolicy", "history")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "history"
    # Nothing connects to it (no ingress rule: all denied); it reaches DNS and PostgreSQL only.
    assert "Ingress" in policy["spec"]["policyTypes"] and not policy["spec"]["ingress"]
    dns, database = policy["spec"]["egress"]
    assert {"port": 53, "protocol": "UDP"} in dns["ports"] and "to" not in dns
    assert database["to"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "telemetry-pipeline", "app.kubernetes.io/instance": "telemetry",
        "app.kubernetes.io/component": "database"}}}]
    assert database["ports"] == [{"port": 5432, "protocol": "TCP"}]
    # ... and PostgreSQL admits it.
    db_from = docs.one("NetworkPolicy", "database")["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": policy["spec"]["podSelector"]["matchLabels"]}} in db_from
    assert not helm().of("NetworkPolicy")


@pytest.mark.parametrize("key, value", [
    ("compressAfter", "0"), ("compressAfter", "0h"), ("compressAfter", "2 hours"), ("compressAfter", "2H"),
    ("rawRetention", "7days"), ("rawRetention", "1y"), ("rawRetention", "0d"), ("rawRetention", "-1d"),
    ("minuteRetention", "90"), ("hourRetention", "2y"), ("schedule", "every 10 minutes"), ("schedule", "*/10 * * *"),
])
def test_schema_rejects_a_bad_age_or_schedule(helm, key, value):
    assert key in helm.fails("--set", f"history.{key}={value}")


@pytest.mark.parametrize("flag", ["--set", "--set-json", "--set-string"])
def test_schema_accepts_zero_retention(helm, flag):
    env = env_of(_container(helm(flag, "history.rawRetention=0"), "CronJob", "history"))
    assert env["HISTORY_RAW_RETENTION"] == "0"


def test_schema_rejects_unknown_history_keys(helm):
    assert "retention" in helm.fails("--set", "history.retention=7d")
    assert "compress_after" in helm.fails("--set", "history.compress_after=2h")
