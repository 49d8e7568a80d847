# The project's commands. Everything runs inside .venv, created and filled from pinned versions.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help venv browser run test test-unit test-integration lint typecheck schemas schemas-check bench bench-ingest bench-rules bench-idle demo token clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create .venv and install the pinned dependencies

# Export deploy/dev.env's defaults for every variable not already set (values may use ${VAR:-x}).
DEV_ENV = set -a; while IFS= read -r line; do \
	  [[ -z "$$line" || "$$line" == "\#"* ]] && continue; \
	  k="$${line%%=*}"; [[ -n "$${!k}" ]] || eval "export $$line"; \
	done < deploy/dev.env

run: $(STAMP) ## Start broker + the four services in the foreground (Ctrl-C stops all)
	@$(DEV_ENV); LOG_FORMAT=$${LOG_FORMAT:-console} exec $(BIN)/honcho -f deploy/Procfile -d . start

# Debian's Chromium for the dashboard's browser test (Playwright drives it; it never downloads
# a browser). Without root or apt the test skips and says why.
browser: ## Install Debian's chromium when missing (needs root and apt)
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the dashboard browser test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	  || echo "chromium could not be installed: the browser test will be skipped"; }

test: $(STAMP) browser ## Run the whole test suite (unit + integration on the embedded broker)
	$(BIN)/pytest -q

test-unit: $(STAMP) ## Only the tests that need no broker
	$(BIN)/pytest -q -m "not integration"

lint: $(STAMP) ## ruff lint + format check
	$(BIN)/ruff check shared services deploy tests tools
	$(BIN)/ruff format --check shared services deploy tests tools

typecheck: $(STAMP) ## mypy --strict on shared/ and every domain.py
	$(BIN)/mypy

schemas: $(STAMP) ## Export the JSON Schemas of every event to docs/schemas/
	$(BIN)/python -m shared.schemas export docs/schemas

schemas-check: $(STAMP) ## Fail if docs/schemas/ differs from the event models
	$(BIN)/python -m shared.schemas check docs/schemas

bench: $(STAMP) ## End-to-end benchmark: ingest -> Kafka -> rules -> notifier -> fake Slack
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (Debian package) ..."; \
	  (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || echo "could not install wrk" >&2; }
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

bench-ingest: $(STAMP) ## Batched ingest: Garmin day pushes and Health Auto Export batches, readings/s
	$(BIN)/python -m tools.bench_ingest $(BENCH_INGEST_ARGS)

bench-idle: $(STAMP) ## CPU the whole stack uses doing nothing (per process, share of one core)
	$(BIN)/python -m tools.bench_idle $(BENCH_IDLE_ARGS)

bench-rules: $(STAMP) ## Rules engine on synthetic patient-days: sensitivity, delay, false alerts, readings/s, memory
	$(BIN)/python -m tools.bench_rules $(BENCH_RULES_ARGS)

demo: $(STAMP) ## Against a running `make run`: grant consent, post a sustained 150 /min episode
	@$(DEV_ENV); $(BIN)/python -m tools.demo

token: $(STAMP) ## Print a dev access token (DEV_AUTH setups only): make token SCOPES="readings:write admin"
	@$(DEV_ENV); $(BIN)/python -m tools.token --scopes "$(SCOPES)" \
	  $(if $(TENANT),--tenant "$(TENANT)") $(if $(SUB),--sub "$(SUB)")

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
