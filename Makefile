# The project's verbs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK := PYTHONPATH=hack $(PY) -m sluice_stack
PYTEST_ARGS ?=

.PHONY: help venv provision stack-up stack-down stack-status test test-unit lint format demo

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv with sluice and its test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

provision: venv ## build/fetch Kafka, Cassandra and the Kubernetes binaries into ~/.cache/sluice
	$(STACK) provision

stack-up: venv ## start Kafka, Cassandra and the control plane; writes .stack/env
	$(STACK) up

stack-down: venv ## stop the stack and delete its data
	$(STACK) down

stack-status: venv ## the running stack's servers, pids and logs
	$(STACK) status

test: venv ## the whole suite against real servers (uses a running stack-up, else starts its own)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv ## only the tests that need no server
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy operator/sluice_operator worker/sluice_worker hack/sluice_stack

format: venv ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: stack-up ## Gophers R Us: produce store events, run the worker, show rows per department and msgs/s
	PYTHONPATH=hack $(PY) hack/demo.py
