"""Security defaults, generated secrets and hooks."""
import base64
import re

import pytest

from tests.chart.conftest import env_of
from tests.chart.examples import CHART, all_examples


@pytest.mark.parametrize("name", ["quick-start", "production", "ci-nvml", "ci-dcgm-exporter", "ci-keda-monitoring", "development"])
def test_every_container_is_locked_down(helm, name):
    for obj, pod in helm.example(name).pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod.get("initContainers", []) + pod["containers"]:
            ctx = container["securityContext"]
            where = f"{obj['metadata']['name']}/{container['name']}"
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx["runAsNonRoot"] is True, where
            # The read-only root needs a writable /tmp in every container.
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"]), where


def test_official_images_run_as_their_own_users(helm):
    docs = helm()
    for component, image in (("database", "postgres:16"), ("mq", "rabbitmq:3.13-management")):
        pod = docs.one("StatefulSet", component)["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == image
        assert pod["securityContext"]["runAsUser"] == 999 and pod["securityContext"]["fsGroup"] == 999
    postgres = docs.one("StatefulSet", "database")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(postgres)["PGDATA"] == "/var/lib/postgresql/data/pgdata"
    assert {m["mountPath"] for m in postgres["volumeMounts"]} >= {"/var/lib/postgresql/data", "/var/run/postgresql", "/dev/shm"}


def test_no_password_in_values():
    text = (CHART / "values.yaml").read_text()
    assert not re.search(r"^\s*(password|pass|secretKey|apiToken)\s*:", text, flags=re.M | re.I)


def _secret(docs, component, key):
    secret = docs.one("Secret", component)
    return base64.b64decode(secret["data"][key]).decode(), secret


def test_generated_secrets(helm):
    docs = helm(release="rel")
    password, db = _secret(docs, "database", "password")
    assert len(password) == 32 and password.isalnum()
    url, _ = _secret(docs, "database", "url")
    assert url == f"postgres://telemetry:{password}@rel-telemetry-pipeline-postgresql:5432/telemetry"
    assert db["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    mq_password, mq = _secret(docs, "mq", "password")
    assert _secret(docs, "mq", "url")[0] == f"amqp://telemetry:{mq_password}@rel-telemetry-pipeline-rabbitmq:5672//"
    secret_key, _ = _secret(docs, "app", "secret-key")
    assert len(secret_key) == 50
    # Pods read them from the Secrets, never inline.
    env = env_of(docs.one("Deployment", "collector")["spec"]["template"]["spec"]["containers"][0])
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": db["metadata"]["name"], "key": "url"}}
    assert env["CELERY_BROKER_URL"] == {"secretKeyRef": {"name": mq["metadata"]["name"], "key": "url"}}


def test_secrets_are_looked_up_before_being_generated():
    """Upgrades keep the passwords: each generated value goes through `lookup` first."""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'lookup "v1" "Secret" .namespace .name' in helpers
    for template in ("database/secret.yaml", "mq/secret.yaml", "secret-app.yaml"):
        assert "telemetry-pipeline.secretValue" in (CHART / "templates" / template).read_text()


def test_api_token(helm):
    docs = helm.example("ci-no-hooks")
    token, _ = _secret(docs, "app", "api-token")
    assert len(token) == 40
    env = env_of(docs.one("Deployment", "api-gateway")["spec"]["template"]["spec"]["containers"][0])
    assert env["API_TOKEN"]["secretKeyRef"]["key"] == "api-token"
    assert "API_TOKEN" not in env_of(helm().one("Deployment", "api-gateway")["spec"]["template"]["spec"]["containers"][0])


def test_migration_job_is_a_hook(helm):
    job = helm().one("Job", "migrations")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["DB_WAIT_TIMEOUT"] == "300" and "DATABASE_URL" in env


def test_migration_job_without_hooks_is_named_per_revision(helm):
    job = helm.example("ci-no-hooks").one("Job", "migrations")
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    assert job["metadata"]["name"].endswith("-migrate-1")
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600


def test_helm_test_pod(helm):
    pod = helm().one("Pod", "test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["containers"][0]["args"][-1].endswith("/health")
    assert not helm("--set", "apiGateway.enabled=false").of("Pod")


def test_common_labels_and_annotations(helm):
    docs = helm.example("ci-no-hooks")
    for doc in docs:
        assert doc["metadata"]["labels"]["team"] == "gpu-platform", doc["metadata"]["name"]
        assert doc["metadata"]["annotations"]["owner"] == "gpu-platform", doc["metadata"]["name"]
    images = {c["image"] for _, pod in docs.pod_specs() for c in pod["containers"]}
    assert "registry.example.com/gpu/telemetry-pipeline:2025.07.1" in images
