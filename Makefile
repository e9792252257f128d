# The project's verbs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK := PYTHONPATH=hack $(PY) -m sluice_stack
PYTEST_ARGS ?=

.PHONY: help venv lock provision stack-up stack-down stack-status test test-unit lint format demo crds images \
        base-image chart-lint bench kind-image test-kind demo-cluster demo-cluster-down

help: ## list the targets
	@grep -E '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv with sluice and its test tools

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

lock: ## re-resolve every dependency into constraints.txt (after changing a pin in pyproject.toml)
	bash hack/lock.sh $(PYTHON)

provision: venv ## build/fetch Kafka, Cassandra, the schema registry and the Kubernetes binaries into ~/.cache/sluice
	$(STACK) provision

stack-up: venv ## start Kafka, Cassandra and the control plane; writes .stack/env
	$(STACK) up

stack-down: venv ## stop the stack and delete its data
	$(STACK) down

stack-status: venv ## the running stack's servers, pids and logs
	$(STACK) status

# Faults on the running stack, the talk's tests by hand: e.g. `make pause-cassandra SECONDS=20` while a worker runs.
pause-%: venv ## pause-cassandra|kafka: SIGSTOP, as `docker pause` (SECONDS=20: resume after 20 s)
	$(STACK) pause $* --seconds $(or $(SECONDS),0)

resume-%: venv ## resume-cassandra|kafka: SIGCONT
	$(STACK) resume $*

kill-%: venv ## kill-cassandra|kafka: SIGKILL; its data stays for restart-*
	$(STACK) kill $*

restart-%: venv ## restart-cassandra|kafka: SIGKILL, start again on its data, wait until it answers
	$(STACK) restart $*

test: venv ## the whole suite against real servers (uses a running stack-up, else starts its own)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv ## only the tests that need no server
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: venv ## ruff, mypy (also bench/) and the import contracts (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	MYPY_CACHE_DIR=$${SLUICE_CACHE:-$$HOME/.cache/sluice}/mypy $(VENV)/bin/mypy operator/sluice_operator worker/sluice_worker hack/sluice_stack bench
	$(VENV)/bin/lint-imports

format: venv ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: stack-up ## Gophers R Us: produce store events, run the worker, show rows per department and msgs/s
	PYTHONPATH=hack $(PY) hack/demo.py


demo-cluster: venv provision ## Gophers R Us in a kind cluster built here: chart, Kafka, Cassandra, events -> rows
	PYTHONPATH=hack $(PY) hack/demo_cluster.py

demo-cluster-down: venv ## delete the demo's kind cluster
	PYTHONPATH=hack $(PY) hack/demo_cluster.py --delete

base-image: ## the local stand-in for python:3.11-slim-bookworm (debootstrap; kept if the image exists)
	bash hack/build-base-image.sh

images: venv ## build sluice-worker and sluice-operator images from a host-built wheelhouse
	bash hack/build-images.sh

chart-lint: venv ## helm lint the chart and check its renderings (helm from `make provision`)
	PATH="$$(PYTHONPATH=hack $(PY) -c 'from sluice_stack.kube import tool_dirs; print(":".join(map(str, tool_dirs())))'):$$PATH" \
	  helm lint --strict charts/sluice
	$(PY) -m pytest tests/chart/test_chart_render.py $(PYTEST_ARGS)


kind-image: venv ## kind, its node image and every image the kind suite runs, built here without a registry
	bash hack/build-e2e-images.sh

test-kind: venv provision ## only the kind end-to-end suite (SLUICE_E2E_KEEP=1 keeps the cluster)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

crds: venv ## regenerate crds/ (and the chart's copy) from the pydantic models; a test fails while stale
	$(PY) -m sluice_operator.crd --output crds/datapipelines.sluice.dev.yaml
	cp crds/datapipelines.sluice.dev.yaml charts/sluice/crds/

# -- benchmarks (bench/; README "Benchmarks") -------------------------------------------------------------
BENCH_ARGS ?=


bench: venv ## throughput vs the machine's ceilings, Benthos and a naive loop; the operator at scale (BENCH_ARGS=--quick)
	PYTHONPATH=hack $(PY) -m bench.run $(BENCH_ARGS)
