# tokenswarm: `make` lists the targets. Every knob is a variable: make loadtest ENGINE=vllm HOST=http://gpu:8000
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
ENGINE   ?= sim
HOST     ?=
MODEL    ?=
USERS    ?= 16
DURATION ?= 20s
WORKERS  ?=
ARGS     ?=
SIM_PORT ?= 8000
SIM_ARGS ?=

TARGET_FLAGS = --engine $(ENGINE) $(if $(HOST),--host $(HOST)) $(if $(MODEL),--model $(MODEL))

.PHONY: help install loadtest run ui simengine test test-fast lint bench clean check-python

help: ## list the targets and knobs
	@echo "tokenswarm make targets (knobs: ENGINE=$(ENGINE) HOST=$(HOST) MODEL=$(MODEL) USERS=$(USERS) DURATION=$(DURATION) WORKERS=$(WORKERS) ARGS=...)"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

check-python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python >= 3.10 (or set PYTHON=...)"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || { echo "error: $(PYTHON) is older than 3.10"; exit 2; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "error: $(PYTHON) lacks venv/ensurepip (Debian: apt-get install python3-venv)"; exit 2; }

$(VENV)/.installed: pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

install: $(VENV)/.installed ## create .venv and install tokenswarm (editable) with its dev tools

loadtest: install ## headless load test, embedded simulated engine by default; prints the table and the run folder
	$(BIN)/tokenswarm run $(TARGET_FLAGS) --users $(USERS) --duration $(DURATION) $(ARGS)

ui: install ## Locust web UI on http://127.0.0.1:8089 (ENGINE=sim starts the simulated engine)
	$(BIN)/tokenswarm ui $(TARGET_FLAGS) $(ARGS)

simengine: install ## serve the simulated engine on 127.0.0.1:$(SIM_PORT) (SIM_ARGS='--ttft-ms 200 --tpot-ms 20')
	$(BIN)/tokenswarm simengine --port $(SIM_PORT) $(SIM_ARGS)

test: install ## all tests: unit, integration and the slow end-to-end ones
	$(BIN)/pytest -q

test-fast: install ## unit and integration tests, skipping the slow end-to-end ones
	$(BIN)/pytest -q -m "not slow"

lint: install ## ruff
	$(BIN)/ruff check src tests bench locustfiles

bench: install ## client timing accuracy against the simulated engine (prints figures)
	$(BIN)/python bench/client_overhead.py $(ARGS)

clean: ## remove the virtualenv and caches (run folders under reports/ are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info
