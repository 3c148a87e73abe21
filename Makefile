# The two commands of the quick start: `make dev` runs the platform, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
LOCK_HASH := $(shell cat requirements.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(LOCK_HASH)

.PHONY: dev test venv system-deps bench lock clean help frontend frontend-deps frontend-dev frontend-api image cluster deploy undeploy

help:
	@echo "make dev    - run broker + every service + generator on this machine, print the URLs"
	@echo "make test   - install everything the tests need, then run every test"
	@echo "make bench  - run the benchmarks in bench/ (reads ../shared/datasets where needed)"
	@echo "make lock   - re-pin requirements.lock from the current .venv"
	@echo "make frontend-dev - Vite dev server for the dashboard, proxying /api and /ws to a running gateway"
	@echo "make frontend-api - regenerate the dashboard's API types from the gateway's OpenAPI document"
	@echo "make image  - build the container image (docker, or podman where docker is absent)"
	@echo "make cluster / deploy / undeploy - a kind cluster, the chart on it (skaffold), and off again"

venv: $(STAMP)

# Create or refresh .venv whenever requirements.lock or pyproject.toml change.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

system-deps:
	@bash scripts/system-deps.sh

# The dashboard (frontend/): npm packages from the committed lock, built into the package
# (services/logpipe/gateway/static/, served by the gateway at /) whenever a source changed.
FRONTEND_LOCK_HASH := $(shell sha256sum frontend/package-lock.json 2>/dev/null | cut -c1-12)
FRONTEND_STAMP := frontend/node_modules/.installed-$(FRONTEND_LOCK_HASH)
DASHBOARD := services/logpipe/gateway/static/index.html
FRONTEND_SOURCES := $(shell find frontend/src frontend/index.html frontend/vite.config.ts frontend/tsconfig.json frontend/package.json -type f 2>/dev/null)

frontend-deps: $(FRONTEND_STAMP)

$(FRONTEND_STAMP): frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	@rm -f frontend/node_modules/.installed-*
	@touch $@

$(DASHBOARD): $(FRONTEND_STAMP) $(FRONTEND_SOURCES)
	cd frontend && npm run build

frontend: $(DASHBOARD)

frontend-dev: $(FRONTEND_STAMP)
	cd frontend && npm run dev

frontend-api: venv $(FRONTEND_STAMP)
	PYTHONPATH=services $(VENV)/bin/python -c "import json; from logpipe.gateway.app import create_app; print(json.dumps(create_app().openapi()))" > frontend/openapi.json
	cd frontend && npm run gen:api -- openapi.json && rm -f openapi.json

dev: venv $(DASHBOARD)
	$(VENV)/bin/logpipe dev

test: venv system-deps $(DASHBOARD)
	cd frontend && npm test
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

bench: venv
	$(VENV)/bin/python bench/ingest.py
	$(VENV)/bin/python bench/patterns.py
	$(VENV)/bin/python bench/vectors.py
	$(VENV)/bin/python bench/analyze.py
	$(VENV)/bin/python bench/incidents.py
	$(VENV)/bin/python bench/query.py
	$(VENV)/bin/python bench/scaleout.py
	$(VENV)/bin/python bench/capacity.py

lock:
	$(VENV)/bin/python -m pip freeze --exclude-editable | grep -v -E '^(logpipe|py-spy)==' > requirements.lock

clean:
	rm -rf $(VENV) data .pytest_cache

# --- containers and Kubernetes (docs/deploy.md) ---
IMAGE ?= ghcr.io/logpipe/logpipe:dev
CONTAINER_TOOL ?= $(shell command -v docker >/dev/null 2>&1 && echo docker || echo podman)

# The stage-choosing arguments are passed although they are the defaults: podman build (buildah
# 1.28, Debian 12) picks the stages to build from the given --build-arg values only, skips
# `dashboard-build` and then looks for an image of that name.
image:
	$(CONTAINER_TOOL) build --build-arg DASHBOARD=build --build-arg DEPENDENCIES=index -t $(IMAGE) .

cluster:
	kind get clusters | grep -qx logpipe || kind create cluster --config kind/cluster.yaml
	kubectl apply -f https://raw.githubusercontent.com/kubernetes/ingress-nginx/main/deploy/static/provider/kind/deploy.yaml
	kubectl -n ingress-nginx wait --for=condition=Ready pod -l app.kubernetes.io/component=controller --timeout=180s

deploy:
	skaffold run -p dev

undeploy:
	skaffold delete -p dev
