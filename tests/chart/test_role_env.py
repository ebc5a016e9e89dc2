"""Each role gets only the connections it uses: the streamer publishes to RabbitMQ and holds no
database setting or credential; the collector, the API gateway and the migration Job keep theirs.
"""
import re

import pytest

from tests.chart.conftest import env_of, pod_spec
from tests.chart.examples import SEED_EXAMPLES, all_examples

# Environment variable names that carry database settings or credentials.
DATABASE_ENV = re.compile(r"^(DATABASE_|POSTGRES|PG[A-Z]|DB_|SQL)")
# Keys under which the chart's own Secrets hold a database URL (the bundled PostgreSQL's Secret,
# component `database`, is excluded as a whole).
DATABASE_KEYS = {"database-url"}

# The default render plus every example: the seed README's and the chart's ci/ scenarios.
RENDERS = ["default", *SEED_EXAMPLES, *(n for n in all_examples() if n not in SEED_EXAMPLES)]


def _render(helm, name):
    return helm() if name == "default" else helm.example(name)


def _containers(pod):
    return pod.get("initContainers", []) + pod["containers"]


def _pods(docs, kind, component):
    return [(obj, pod_spec(obj)) for obj in docs.of(kind, component)]


def _database_secrets(docs) -> set[str]:
    """Every Secret that holds database credentials in this render: the bundled PostgreSQL's, and
    whatever Secret a DATABASE_URL is read from (database.external.url or .existingSecret)."""
    names = {s["metadata"]["name"] for s in docs.of("Secret", "database")}
    for _, pod in docs.pod_specs():
        for container in _containers(pod):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref and (entry["name"] == "DATABASE_URL" or DATABASE_ENV.match(entry["name"])):
                    names.add(ref["name"])
    return names


def _secret_refs(container) -> list[tuple[str, str | None]]:
    """(Secret name, key) for every env and envFrom entry of a container reading a Secret."""
    refs = []
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs.append((ref["name"], ref["key"]))
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            refs.append((source["secretRef"]["name"], None))
    return refs


@pytest.mark.parametrize("name", RENDERS)
def test_streamer_holds_no_database_setting_or_credential(helm, name):
    docs = _render(helm, name)
    streamers = _pods(docs, "DaemonSet", "streamer")
    if not streamers:
        assert name in {"collector-ha", "api-ingress"}, f"{name}: no streamer DaemonSet rendered"
        return
    database_secrets = _database_secrets(docs)
    rendered = {s["metadata"]["name"]: s for s in docs.of("Secret")}
    for obj, pod in streamers:
        for container in _containers(pod):
            where = f"{name}: {obj['metadata']['name']}/{container['name']}"
            env = env_of(container)
            assert "DATABASE_URL" not in env, where
            assert not [n for n in env if DATABASE_ENV.match(n)], where
            for secret, key in _secret_refs(container):
                assert secret not in database_secrets, f"{where} reads the database Secret {secret}"
                if secret in rendered:
                    # A Secret of the chart's that the streamer reads holds no database credential.
                    data = rendered[secret].get("data", {}) | rendered[secret].get("stringData", {})
                    assert rendered[secret]["metadata"]["labels"]["app.kubernetes.io/component"] != "database", where
                    assert not (set(data) & DATABASE_KEYS), f"{where} reads {secret}, which holds {sorted(data)}"
            for source in container.get("envFrom", []):
                assert not re.search(r"postgres|database", str(source), flags=re.I), where
        for volume in pod.get("volumes", []):
            secret = volume.get("secret", {}).get("secretName")
            assert secret not in database_secrets, f"{name}: streamer mounts the database Secret {secret}"
            for projected in volume.get("projected", {}).get("sources", []):
                assert projected.get("secret", {}).get("name") not in database_secrets, name

        # It still reaches the broker, and Django still starts (SECRET_KEY).
        env = env_of(pod["containers"][0])
        assert "secretKeyRef" in env["CELERY_BROKER_URL"], name
        assert "secretKeyRef" in env["SECRET_KEY"] and "CELERY_INGEST_QUEUE" in env, name


@pytest.mark.parametrize("name", RENDERS)
def test_database_roles_keep_their_database_url(helm, name):
    docs = _render(helm, name)
    streamer_broker = [env_of(pod["containers"][0])["CELERY_BROKER_URL"] for _, pod in _pods(docs, "DaemonSet", "streamer")]
    seen = 0
    for kind, component in (("Deployment", "collector"), ("Deployment", "api-gateway"), ("Job", "migrations"),
                            ("CronJob", "history")):
        for obj, pod in _pods(docs, kind, component):
            seen += 1
            for container in _containers(pod):
                assert "secretKeyRef" in env_of(container)["DATABASE_URL"], f"{name}: {obj['metadata']['name']}/{container['name']}"
            env = env_of(pod["containers"][0])
            if component in {"migrations", "history"}:
                # `manage.py migrate` and `manage.py compress` never talk to the broker.
                assert "CELERY_BROKER_URL" not in env and "CELERY_INGEST_QUEUE" not in env, name
            else:
                # Same broker as the streamer's.
                assert all(env["CELERY_BROKER_URL"] == b for b in streamer_broker), name
    assert seen or name == "streamer-only", f"{name}: no collector, API or migration Job rendered"


def test_inline_urls_live_in_separate_secrets(helm):
    """With both URLs inline in values, the broker URL the streamer reads is not stored next to the
    database URL; the database Secret keeps its name, which the pre-upgrade migration Job reads."""
    docs = helm("--set", "database.external.url=postgres://telemetry:s3cret@db.example:5432/telemetry",
                "--set", "mq.external.url=amqp://telemetry:s3cret@mq.example:5672//", release="rel")
    streamer = env_of(docs.one("DaemonSet", "streamer")["spec"]["template"]["spec"]["containers"][0])
    collector = env_of(docs.one("Deployment", "collector")["spec"]["template"]["spec"]["containers"][0])
    assert collector["DATABASE_URL"] == {"secretKeyRef": {"name": "rel-telemetry-pipeline-external", "key": "database-url"}}
    assert streamer["CELERY_BROKER_URL"] == {"secretKeyRef": {"name": "rel-telemetry-pipeline-external-mq", "key": "broker-url"}}
    assert collector["CELERY_BROKER_URL"] == streamer["CELERY_BROKER_URL"]
    assert set(docs.one("Secret", "app", suffix="-external")["data"]) == {"database-url"}
    assert set(docs.one("Secret", "app", suffix="-external-mq")["data"]) == {"broker-url"}
    # A streamer-only install stores no database URL it would never use.
    docs = helm("--set", "collector.enabled=false", "--set", "apiGateway.enabled=false",
                "--set", "database.external.url=postgres://telemetry:s3cret@db.example:5432/telemetry")
    assert not [s for s in docs.of("Secret") if "database-url" in s.get("data", {})]
    assert "DATABASE_URL" not in env_of(docs.one("DaemonSet", "streamer")["spec"]["template"]["spec"]["containers"][0])


@pytest.mark.parametrize("name", ["seed-security", "ci-networkpolicy-ingress-only", "np-default"])
def test_streamer_network_policy_does_not_reach_the_database(helm, name):
    docs = helm("--set", "networkPolicy.enabled=true") if name == "np-default" else helm.example(name)
    database = docs.of("NetworkPolicy", "database")
    if database:
        # PostgreSQL's port admits only the collector, the API, the migration Job and the history CronJob.
        sources = {f.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component", "any")
                   for rule in database[0]["spec"].get("ingress", [])
                   if {p.get("port") for p in rule.get("ports", [])} & {"postgresql", 5432}
                   for f in rule.get("from", [])}
        assert sources == {"collector", "api-gateway", "migrations", "history"}
    policy = docs.one("NetworkPolicy", "streamer")
    for rule in policy["spec"].get("egress", []):
        targets = [t.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") for t in rule.get("to", [])]
        assert "database" not in targets
        assert 5432 not in [p.get("port") for p in rule.get("ports", [])]
    # The migration Job and the history CronJob reach PostgreSQL, not RabbitMQ.
    for component in ("migrations", "history"):
        policies = docs.of("NetworkPolicy", component)
        assert policies, f"{name}: no {component} NetworkPolicy"
        for rule in policies[0]["spec"].get("egress", []):
            targets = [t.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") for t in rule.get("to", [])]
            assert "mq" not in targets
