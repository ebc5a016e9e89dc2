"""Settings from the environment: clear errors at start, JSON log lines on request."""
import json
import logging
import os
import subprocess
import sys

import pytest

from config.env import env_bool, env_int
from config.logging import JsonFormatter
from tests.conftest import REPO


def check(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}}
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env={**base, **env}, capture_output=True, text=True)


def test_secret_key_is_required_when_debug_is_off():
    run = check(DEBUG="false")
    assert run.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in run.stderr


def test_a_bad_value_names_its_variable():
    run = check(DEBUG="true", COLLECTOR_MAX_ENTRIES_PER_GPU="lots")
    assert run.returncode != 0
    assert "COLLECTOR_MAX_ENTRIES_PER_GPU='lots' is not an integer" in run.stderr


def test_readers(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    monkeypatch.setenv("X_COUNT", "-1")
    assert env_bool("X_FLAG", False) is True
    with pytest.raises(Exception, match="X_COUNT='-1' must be at least 0"):
        env_int("X_COUNT", 5, minimum=0)


def test_json_log_lines_carry_the_event_fields():
    record = logging.LogRecord("telemetry.ingest.sources", logging.WARNING, "f.py", 1, "rejected row %s:%d", ("a.csv", 7), None)
    record.line = 7
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and entry["message"] == "rejected row a.csv:7" and entry["line"] == 7
