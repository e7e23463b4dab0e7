# Promethios Operator — developer entry points.
# `make run` and `make test` are the two commands a newcomer needs; see README.md.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help venv host-packages testenv kind-image browser image e2e-images run test test-unit test-integration test-e2e test-kind chaos lint format crds crds-check bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/promethios: pyproject.toml localdev/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./localdev
	@touch $@

venv: $(BIN)/promethios  ## create .venv: the package, its dev extras and the local tooling (localdev/)

host-packages:  ## apt-get install what images and the real node need, where missing
	hack/host-packages.sh

testenv: host-packages  ## build the control plane and the real node's binaries from Go module sources (cached)
	testenv/build.sh

kind-image: testenv  ## build kind's node image from Debian packages and Go sources (cached; not needed with a registry)
	@start=$$SECONDS; hack/kind/node-image.sh >/dev/null && echo "kind-image: ready in $$((SECONDS - start)) s"

browser:  ## install Debian's chromium for the dashboard's browser tests (apt-get, when missing)
	@if command -v chromium >/dev/null 2>&1; then \
		echo "browser: $$(command -v chromium) ($$(chromium --version 2>/dev/null))"; \
	else \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium && \
		echo "browser: installed $$(chromium --version)"; \
	fi

image: host-packages  ## build the project's image with buildah on a local Debian base (cached)
	hack/image/build.sh >/dev/null

e2e-images: image  ## build the end-to-end tests' agent/fake-provider image (cached)
	hack/image/e2e.sh >/dev/null

run: venv testenv  ## start the control plane, the operator and a live governed agent
	$(BIN)/promethios demo

test: venv testenv e2e-images  ## every test: unit, integration (real control plane) and real-pod e2e
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: venv  ## unit tests only (no cluster)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: venv testenv  ## integration tests only
	$(BIN)/pytest -m cluster $(PYTEST_ARGS)

test-e2e: venv testenv e2e-images  ## real-pod end-to-end tests only (root; a real kubelet node)
	$(BIN)/pytest -m realnode $(PYTEST_ARGS)

test-kind: venv kind-image e2e-images  ## the whole suite, real-pod tests included, on a throw-away kind cluster (own dockerd; root)
	$(BIN)/pytest --cluster=kind $(PYTEST_ARGS)

chaos: venv testenv  ## the full chaos run: 100 agents, operator SIGKILLs, API server/etcd restarts, 5-min ingest outage (~15 min)
	PROMETHIOS_CHAOS=full $(BIN)/pytest -m chaos -s tests/chaos $(PYTEST_ARGS)

lint: venv  ## ruff, mypy (strict on the packages) and the import contracts (pyproject.toml)
	$(BIN)/ruff check operator localdev tests benchmarks hack
	$(BIN)/ruff format --check operator localdev tests benchmarks hack
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix operator localdev tests benchmarks hack
	$(BIN)/ruff format operator localdev tests benchmarks hack

crds: venv  ## regenerate crds/, the chart's CRDs and manifests/crds from the pydantic models
	$(BIN)/promethios crds --output-dir crds
	$(BIN)/python hack/sync-chart-crds.py

crds-check: venv  ## fail if the committed CRDs drift from the models
	$(BIN)/promethios crds --output-dir crds --check
	$(BIN)/python hack/sync-chart-crds.py --check

bench: venv testenv e2e-images  ## benchmarks, each measured beside its floor (not tests)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:  ## remove local build and test state (not the testenv cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
