# Two commands set everything up (SPEC §10):
#   make run   - bootstrap .venv, start NATS (embedded) and all three services
#   make test  - bootstrap .venv and the test tools, run the whole suite
# Every Python package comes from requirements.lock (exact versions, sha256
# hashes); `make lock` regenerates it (README: "Upgrading a dependency").
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PACKAGES := -e libs/events -e libs/eventbus -e libs/cli -e services/gateway -e services/agent-runner -e services/pve-executor
PIP    := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: run test venv test-deps docs bench lock clean

venv: $(STAMP)

$(STAMP): requirements.lock libs/events/pyproject.toml libs/eventbus/pyproject.toml libs/cli/pyproject.toml services/*/pyproject.toml
	@$(PYTHON) scripts/check_python.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation $(PACKAGES)
	$(PIP) check
	@touch $@

run: $(STAMP)
	@bash scripts/sandbox-deps.sh
	$(BIN)/breakglass up

test-deps: $(STAMP)
	@bash scripts/test-deps.sh

test: test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs: $(STAMP)
	$(BIN)/python -m eventbus.docs docs
	$(BIN)/python -m eventbus.access deploy/nats/authorization.conf

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# UPGRADE="--upgrade-package NAME" moves one dependency; UPGRADE=--upgrade all.
lock: $(STAMP)
	$(PIP) install --require-hashes -r requirements/uv.txt
	UPGRADE="$(UPGRADE)" bash scripts/lock.sh

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
