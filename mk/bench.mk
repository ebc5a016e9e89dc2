# Benchmarks (bench/) and fault-injection tests (tests/faults): `make bench`, `make bench-smoke`, `make fleet-sim`,
# `make test-faults`.
VENV ?= .venv
PY ?= $(VENV)/bin/python

.PHONY: bench bench-smoke fleet-sim test-faults

# The full run: 1M-sample ingest and backfill at four batch sizes, 10M-sample storage and queries, a 1 GB CSV,
# and the fleet simulation (about 12 minutes).
bench: install
	$(PY) -m bench.run

# Under a minute: checks that every benchmark runs and gives sane figures, not that targets are met.
bench-smoke: install
	$(PY) -m bench.run --smoke

# A simulated live fleet against the real collector: the largest N nodes it keeps up with at 1 s and 15 s ticks.
fleet-sim: install
	$(PY) -m bench.fleet_sim

# Stops and restarts the local RabbitMQ and PostgreSQL; the main pytest run leaves these out (-m "not fault").
test-faults: install
	$(PY) -m pytest -m fault tests/faults

TEST_SUITES += bench-smoke test-faults
