"""NOTES.txt: how to reach the API, and the warnings it owes the user.

`helm template` does not render NOTES.txt, and Helm 3's `install --dry-run` needs a cluster, so
the test renders it through a copy of the chart with one extra template that includes it.
"""
import shutil
import subprocess

import pytest
import yaml

from tests.chart.conftest import KUBE_VERSION
from tests.chart.examples import CHART, EXAMPLES_DIR

PROBE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: {{ include "telemetry-pipeline/templates/NOTES.txt" . | quote }}
"""


@pytest.fixture(scope="session")
def notes_chart(tmp_path_factory):
    chart = tmp_path_factory.mktemp("notes") / "telemetry-pipeline"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-notes-probe.yaml").write_text(PROBE)
    return chart


def notes(helm, chart, *args: str) -> str:
    result = subprocess.run([helm.helm, "template", "demo", str(chart), "--namespace", "gpu", "--kube-version", KUBE_VERSION,
                             "--show-only", "templates/zz-notes-probe.yaml", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["data"]["notes"]


def test_port_forward_by_default(helm, notes_chart):
    text = notes(helm, notes_chart)
    assert "kubectl port-forward --namespace gpu svc/demo-telemetry-pipeline-api-gateway 8081:80" in text
    assert "curl http://localhost:8081/health" in text
    assert "helm test demo --namespace gpu" in text


def test_ingress_hosts(helm, notes_chart):
    text = notes(helm, notes_chart, "-f", str(EXAMPLES_DIR / "production-values.yaml"))
    assert "https://telemetry-api.production.com/" in text


def test_partition_warning_for_user_csv(helm, notes_chart):
    text = notes(helm, notes_chart, "--set-file", f"streamer.csvData={EXAMPLES_DIR / 'my-data.csv'}")
    assert 'streamer.partition resolves to "node"' in text and "streamer.partition=none" in text


def test_seed_value_notes(helm, notes_chart):
    text = notes(helm, notes_chart, "-f", str(EXAMPLES_DIR / "seed-collector.yaml"))
    assert "collector.checkpointEnabled=false has no effect" not in text  # the seed file sets it true
    assert "mq.autoscaling was read as collector.autoscaling" in text
    text = notes(helm, notes_chart, "--set", "collector.checkpointEnabled=false")
    assert "collector.checkpointEnabled=false has no effect" in text


def test_dcgm_exporter_mode_names_the_url_and_what_the_exporter_needs(helm, notes_chart):
    text = notes(helm, notes_chart, "--set", "streamer.source=dcgm-exporter", "--set", "streamer.dcgmExporter.port=9500")
    assert "source: dcgm-exporter, partition: none" in text
    assert "http://<node IP>:9500/metrics" in text and "every 15 s" in text
    assert "dcgmExporter.hostNetwork=true" in text and "hostPort 9500" in text
    # No CSV partition warnings for a live source.
    assert "replays the whole CSV" not in text and "streamer.partition resolves" not in text
    # The CSV modes keep theirs.
    assert "replays the whole CSV" in notes(helm, notes_chart)
    assert "dcgm-exporter" not in notes(helm, notes_chart)


def test_history_cronjob_and_the_per_gpu_limit(helm, notes_chart):
    text = notes(helm, notes_chart)
    assert 'history      CronJob "*/10 * * * *": manage.py compress (kept: raw 7d, minute rollups 90d, hour rollups 730d)' in text
    assert ("collector.maxEntriesPerGPU=10000 keeps each GPU's newest samples, packed or not,\n"
            "so history reaches back only as far as that many samples do, and readings older than history.rawRetention\n"
            "(7d) are dropped. Set collector.maxEntriesPerGPU=0") in text
    text = notes(helm, notes_chart, "--set", "collector.maxEntriesPerGPU=0")
    assert "keeps each GPU's newest samples" not in text
    text = notes(helm, notes_chart, "--set", "history.rawRetention=0", "--set", "history.hourRetention=0")
    assert "as far as that many samples do. Set collector.maxEntriesPerGPU=0" in text and "(kept: raw for ever, minute rollups 90d, hour rollups for ever)" in text
    text = notes(helm, notes_chart, "--set", "history.enabled=false")
    assert "history      disabled" in text and "keeps each GPU's newest samples" not in text
