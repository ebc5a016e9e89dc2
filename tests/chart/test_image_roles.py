"""The chart runs only what the image provides: every pipeline container's args start with a role
of docker/entrypoint.sh, and nothing overrides the image's entry point."""
import re

import pytest

from tests.chart.examples import ROOT, all_examples

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DOCKERFILE = ROOT / "Dockerfile"
# The pipeline's own image; PostgreSQL and RabbitMQ use their official images.
OWN_IMAGE = re.compile(r"(^|/)telemetry-pipeline[:@]")


def entrypoint_roles() -> set[str]:
    """The role names of the entry point's `case "$role" in` branches."""
    text = ENTRYPOINT.read_text()
    body = text.split('case "$role" in', 1)[1].split("esac", 1)[0]
    labels = re.findall(r"^\s{4}([a-z][a-z|-]*)\)\s*$", body, flags=re.M)
    return {name for label in labels for name in label.split("|") if name not in {"help"}}


def test_entrypoint_has_the_interface_roles():
    assert {"stream", "worker", "api", "migrate"} <= entrypoint_roles()


def test_dockerfile_uses_the_entrypoint_as_non_root():
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in text
    assert re.search(r"^USER \$\{APP_UID\}", text, flags=re.M) and "ARG APP_UID=1000" in text
    assert "collectstatic --noinput" in text and "SECRET_KEY=build-only DEBUG=false" in text
    assert "pip install -r /tmp/requirements.txt" in text
    assert ENTRYPOINT.stat().st_mode & 0o111, "entrypoint.sh must be executable"


def test_entrypoint_role_commands():
    text = ENTRYPOINT.read_text()
    assert 'exec python manage.py stream "$@"' in text
    assert ('exec celery -A config worker -Q "${CELERY_INGEST_QUEUE:-telemetry.ingest}"' in text
            and '--concurrency "${COLLECTOR_CONCURRENCY:-4}" --loglevel "${LOG_LEVEL:-INFO}" "$@"' in text)
    assert ('exec gunicorn -c config/gunicorn.conf.py config.wsgi:application --bind "0.0.0.0:${PORT:-8081}" "$@"'
            in text)
    assert "exec python manage.py migrate --noinput" in text


@pytest.mark.parametrize("name", sorted(all_examples()))
def test_every_container_command_is_an_entrypoint_role(helm, name):
    roles = entrypoint_roles()
    docs = helm.example(name)
    seen = 0
    for obj, pod in docs.pod_specs():
        for container in pod.get("initContainers", []) + pod["containers"]:
            if not OWN_IMAGE.search(container["image"]):
                continue
            seen += 1
            where = f"{obj['kind']}/{obj['metadata']['name']} container {container['name']}"
            assert "command" not in container, f"{where} overrides the image's entry point"
            assert container.get("args"), f"{where} has no role"
            assert container["args"][0] in roles, f"{where} runs {container['args'][0]!r}, not one of {sorted(roles)}"
    assert seen, f"{name}: no pipeline container rendered"


def test_roles_per_workload(helm):
    docs = helm()
    first = lambda kind, component: docs.one(kind, component)["spec"]["template"]["spec"]  # noqa: E731
    assert first("DaemonSet", "streamer")["containers"][0]["args"][0] == "stream"
    assert first("Deployment", "collector")["containers"][0]["args"][0] == "worker"
    assert first("Deployment", "api-gateway")["containers"][0]["args"][0] == "api"
    assert first("Job", "migrations")["containers"][0]["args"] == ["migrate"]
    # History maintenance is an operation like trim: `manage compress`, a command the image has.
    history = docs.one("CronJob", "history")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert history["containers"][0]["args"] == ["manage", "compress"]
    assert history["initContainers"][0]["args"] == ["wait-for-migrations"]
    assert (ROOT / "telemetry" / "management" / "commands" / "compress.py").is_file()
    for kind, component in (("Deployment", "collector"), ("Deployment", "api-gateway")):
        assert first(kind, component)["initContainers"][0]["args"] == ["wait-for-migrations"]
    test_pod = docs.one("Pod", "test")
    assert test_pod["spec"]["containers"][0]["args"] == [
        "healthcheck", "http://telemetry-telemetry-pipeline-api-gateway:80/health"]
