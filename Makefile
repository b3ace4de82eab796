# Two commands set everything up (SPEC §10):
#   make run   - bootstrap .venv, start NATS (embedded) and all three services
#   make test  - bootstrap .venv and the test tools, run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PACKAGES := -e libs/events -e libs/cli -e services/gateway -e services/agent-runner -e services/pve-executor

.PHONY: run test venv test-deps docs bench clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt libs/events/pyproject.toml libs/cli/pyproject.toml services/*/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(PACKAGES) -r requirements-dev.txt
	@touch $@

run: $(STAMP)
	$(BIN)/breakglass up

test-deps: $(STAMP)
	@bash scripts/test-deps.sh

test: test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs: $(STAMP)
	$(BIN)/python -m events.docs docs
	$(BIN)/python -m events.access deploy/nats/authorization.conf

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
