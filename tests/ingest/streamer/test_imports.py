"""The streamer runs without the collector's code, the API's numpy readers and a database."""
import subprocess
import sys

from tests.conftest import REPO, SAMPLE_COUNT

# A fresh interpreter streams the sample to the in-process broker with a database URL that leads
# nowhere, then lists the modules it imported.
STREAM_AND_LIST_MODULES = f"""
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
import django
django.setup()
from django.core.management import call_command
call_command("stream", {str(REPO / "data" / "dcgm_metrics_20250718_134233.csv")!r})
print("imported:", " ".join(sorted(sys.modules)))
"""


def test_stream_imports_no_collector_module_and_needs_no_database():
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "true", "CELERY_BROKER_URL": "memory://localhost//",
           "DATABASE_URL": "postgres://nobody@127.0.0.1:1/nowhere", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", STREAM_AND_LIST_MODULES], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"streamed {SAMPLE_COUNT} samples" in done.stdout + done.stderr
    modules = done.stdout.split("imported:", 1)[1].split()
    assert "telemetry.ingest.streamer.publisher" in modules
    assert [m for m in modules if m.startswith("telemetry.ingest.collector")] == []
    # The admin (set up with Django) imports the selectors; numpy stays out until a window or summary is read.
    assert "telemetry.api.selectors" in modules and "numpy" not in modules
