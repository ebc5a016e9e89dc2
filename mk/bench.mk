# Benchmarks (bench/) and fault-injection tests (tests/faults): `make bench`, `make bench-smoke`, `make fleet-sim`,
# `make bench-prometheus`, `make test-faults`.
VENV ?= .venv
PY ?= $(VENV)/bin/python

.PHONY: bench bench-smoke fleet-sim bench-prometheus prometheus test-faults

# The full run: 1M-sample ingest and backfill at four batch sizes, 10M-sample storage and queries, a 1 GB CSV,
# the fleet simulation, history (10M samples packed) and Prometheus as a peer.
bench: install prometheus
	$(PY) -m bench.run

# A few minutes: checks that every benchmark runs and gives sane figures, not that targets are met.
bench-smoke: install prometheus
	$(PY) -m bench.run --smoke

# A simulated live fleet against the real collector: the largest N nodes it keeps up with at 1 s and 15 s ticks.
fleet-sim: install
	$(PY) -m bench.fleet_sim

# Prometheus as a peer (bench/prometheus_peer.py): promtool's backfill and Prometheus's 1 h range query next to ours
# (under a minute). Installs Debian's prometheus package when promtool is missing and stops the service that
# installing may start; the bench runs a Prometheus of its own, and measures only our side when there is none.
bench-prometheus: install prometheus
	$(PY) -m bench.prometheus_peer

prometheus:
	@command -v promtool >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
		--no-install-recommends prometheus && { systemctl disable --now prometheus || service prometheus stop || true; } \
		>/dev/null 2>&1; } || echo "prometheus could not be installed: the benches measure our side only"

# Stops and restarts the local RabbitMQ and PostgreSQL; the main pytest run leaves these out (-m "not fault").
test-faults: install
	$(PY) -m pytest -m fault tests/faults

TEST_SUITES += bench-smoke test-faults
