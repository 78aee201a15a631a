# tokenswarm: `make` lists the targets. Every knob is a variable: make loadtest ENGINE=vllm HOST=http://gpu:8000
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
ENGINE   ?= sim
DIALECT  ?=
HOST     ?=
MODEL    ?=
USERS    ?=
DURATION ?= 30s
LEVELS   ?= 1,2,4,8,16,32,64
LEVEL_DURATION ?= 8s
SWEEP_LEVELS ?= 1,2,4,8,16,32,64,128,256,512,1024
SWEEP_LEVEL_DURATION ?= 30s
WORKERS  ?=
RUN      ?=
RUNS     ?=
LABELS   ?=
ARGS     ?=
SIM_PORT ?= 8000
SIM_ARGS ?=
SLO      ?=

TARGET_FLAGS = --engine $(ENGINE) $(if $(DIALECT),--dialect $(DIALECT)) $(if $(HOST),--host $(HOST)) \
               $(if $(MODEL),--model $(MODEL)) \
               $(if $(WORKERS),--workers $(WORKERS))

.PHONY: help install loadtest capacity run sweep report compare ui simengine real-engine test test-fast lint bench clean \
        check-python

help: ## list the targets and knobs
	@echo "tokenswarm make targets. Knobs: ENGINE=$(ENGINE) DIALECT= HOST= MODEL= LEVELS=$(LEVELS) LEVEL_DURATION=$(LEVEL_DURATION)"
	@echo "  USERS= DURATION=$(DURATION) (one level instead of a sweep) WORKERS= (local worker processes) ARGS= (more options)"
	@echo "  SIM_ARGS= (the embedded engine's options, e.g. SIM_ARGS='--ttft-ms 200 --tpot-ms 20')"
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

# the tests also validate deploy/k8s against the Kubernetes schemas: installed for them only
$(VENV)/.checks: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,checks]'
	@touch $@

# the first run, against the embedded engine: 16 batch slots and 32-token answers, so the 1..64 sweep shows the
# knee (throughput flat past 16 streams while TTFT climbs) and every level holds several request lifetimes
# SIM_ARGS reach the embedded engine of every target (after the demo's, so they win)
EMBEDDED = $(and $(filter sim,$(ENGINE)),$(if $(HOST),,1))
DEMO_FLAGS = $(if $(EMBEDDED),--max-tokens 32 --sim-args='--max-num-seqs 16$(if $(SIM_ARGS), $(SIM_ARGS))')
SIM_FLAGS = $(if $(and $(EMBEDDED),$(SIM_ARGS)),--sim-args='$(SIM_ARGS)')

loadtest: install ## short sweep (LEVELS, LEVEL_DURATION) or one level (USERS, DURATION); prints the table, then the run folder
	$(BIN)/tokenswarm $(if $(USERS),run --users $(USERS) --duration $(DURATION),sweep --levels $(LEVELS) --level-duration $(LEVEL_DURATION)) $(TARGET_FLAGS) $(DEMO_FLAGS) $(ARGS)

capacity: install ## the highest concurrency meeting SLO, with its 95 % interval: make capacity SLO=ttft_p99=500,tpot_p99=50
	@test -n "$(SLO)" || { echo 'usage: make capacity SLO=ttft_p99=500,tpot_p99=50 (a level'"'"'s percentiles, ms) or SLO=ttft=500 (every request)'; exit 2; }
	$(BIN)/tokenswarm capacity --slo $(SLO) $(TARGET_FLAGS) $(DEMO_FLAGS) $(ARGS)

run: install ## one concurrency level: USERS (default 16) for DURATION
	$(BIN)/tokenswarm run --users $(or $(USERS),16) --duration $(DURATION) $(TARGET_FLAGS) $(SIM_FLAGS) $(ARGS)

sweep: install ## full concurrency sweep: SWEEP_LEVELS (1..1024), SWEEP_LEVEL_DURATION each, with the report
	$(BIN)/tokenswarm sweep --levels $(SWEEP_LEVELS) --level-duration $(SWEEP_LEVEL_DURATION) $(TARGET_FLAGS) $(SIM_FLAGS) $(ARGS)

report: install ## rebuild a run folder's report: make report RUN=reports/<run_id>
	@test -n "$(RUN)" || { echo "usage: make report RUN=reports/<run_id>"; exit 2; }
	$(BIN)/tokenswarm report $(RUN)

compare: install ## engines side by side: make compare RUNS="reports/a reports/b" [LABELS=vllm,sglang]
	@test -n "$(RUNS)" || { echo 'usage: make compare RUNS="reports/a reports/b" [LABELS=a,b]'; exit 2; }
	$(BIN)/tokenswarm compare $(RUNS) $(if $(LABELS),--labels $(LABELS))

ui: install ## Locust web UI on http://127.0.0.1:8089 (ENGINE=sim starts the simulated engine)
	$(BIN)/tokenswarm ui $(TARGET_FLAGS) $(SIM_FLAGS) $(ARGS)

simengine: install ## serve the simulated engine on 127.0.0.1:$(SIM_PORT) (SIM_ARGS='--ttft-ms 200 --tpot-ms 20')
	$(BIN)/tokenswarm simengine --port $(SIM_PORT) $(SIM_ARGS)

real-engine: ## build llama.cpp's llama-server + SmolLM2-135M (CPU) into ~/.cache/tokenswarm/llamacpp (~7 min once; reused)
	deploy/llamacpp/build.sh

# The tests run in TEST_PROCS processes, a test file per process (pytest-xdist): 14 min instead of 27 on 2
# cores. Tests marked `solo` (a real CPU engine's throughput, which another test sharing its cores would
# change) run afterwards on their own. TEST_PROCS=0: everything in one process.
TEST_PROCS ?= 2
FAST_PROCS ?= 2
procs = $(if $(filter 0,$(1)),,-n $(1) --dist loadfile)

test: $(VENV)/.checks ## all tests: unit, integration and the slow end-to-end ones
	@rc=0; $(BIN)/pytest -q -m "not solo" $(call procs,$(TEST_PROCS)) || rc=$$?; \
	echo "-- tests that need the machine to themselves (marked solo), one process:"; \
	$(BIN)/pytest -q -m solo || rc=$$?; exit $$rc

test-fast: $(VENV)/.checks ## unit and integration tests, skipping the slow end-to-end ones
	$(BIN)/pytest -q -m "not slow" $(call procs,$(FAST_PROCS))

lint: install ## ruff (pinned in pyproject.toml) over every Python file of the project
	$(BIN)/ruff check src tests bench locustfiles deploy

bench: install ## timing accuracy of the client and the simulated engine's capacity (prints figures; ~10 min)
	$(BIN)/python bench/client_overhead.py --users 64,256 $(ARGS)
	$(BIN)/python bench/client_overhead.py --users 1024 --tpot-ms 100 --tokens 64 $(ARGS)
	$(BIN)/python bench/simengine_capacity.py --streams 1024 --tpot-ms 50

clean: ## remove the virtualenv and caches (run folders under reports/ are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info

# -- distributed cluster: docker compose (deploy/README.md) ----------------------------------
MODE     ?= ui
OBS      ?=
COMPOSE  ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
CLUSTER_WORKERS  = $(or $(WORKERS),4)
CLUSTER_PROFILES = $(if $(filter sim,$(ENGINE)),--profile sim) $(if $(OBS),--profile obs)
CLUSTER_ENV      = ENGINE=$(ENGINE) $(if $(HOST),HOST=$(HOST)) $(if $(MODEL),MODEL=$(MODEL)) MODE=$(MODE) \
                   WORKERS=$(CLUSTER_WORKERS) REPORTS_UID=$$(id -u) REPORTS_GID=$$(id -g)
# headless: the master's exit ends `up` (Compose v2; v1 has no --attach and stops at the first worker's exit)
CLUSTER_ATTACH   = $(if $(filter docker compose,$(COMPOSE)),--attach master)

.PHONY: cluster-up cluster-down cluster-local check-docker

check-docker:
	@command -v docker >/dev/null || { echo "error: no docker command: install Docker with the Compose plugin to run the cluster (make loadtest needs neither)"; exit 2; }
	@docker info >/dev/null 2>&1 || { echo "error: no Docker engine is reachable ('docker info' failed): start Docker, or use 'make loadtest' (no Docker needed)"; exit 2; }
	@$(COMPOSE) version >/dev/null 2>&1 || { echo "error: neither 'docker compose' nor 'docker-compose' works: install the Docker Compose plugin"; exit 2; }

cluster-up: check-docker ## master + WORKERS workers in docker compose (ENGINE=sim adds the simulated engine, OBS=1 Prometheus; MODE=ui|sweep|run)
	@test -n "$$WEB_PASSWORD" || { echo "error: set WEB_PASSWORD, the web UI's login password (export WEB_PASSWORD=...)"; exit 2; }
ifeq ($(MODE),ui)
	$(CLUSTER_ENV) $(COMPOSE) $(CLUSTER_PROFILES) up --build --detach --scale worker=$(CLUSTER_WORKERS)
	@echo "web UI: http://127.0.0.1:$${WEB_PORT:-8089} (user tokenswarm, password \$$WEB_PASSWORD); run folders in reports/; make cluster-down stops it"
else
	$(CLUSTER_ENV) $(COMPOSE) $(CLUSTER_PROFILES) up --build --scale worker=$(CLUSTER_WORKERS) $(CLUSTER_ATTACH) --exit-code-from master
endif

cluster-down: check-docker ## stop and remove the docker compose cluster (run folders in reports/ are kept)
	WEB_PASSWORD=$${WEB_PASSWORD:-unused} $(COMPOSE) --profile sim --profile obs down --remove-orphans

cluster-local: install ## compose for real here: Docker, base image, build, WORKERS (4) workers headless, teardown (deploy/docker/up-local.sh)
	WORKERS=$(CLUSTER_WORKERS) deploy/docker/up-local.sh
