# Edgewise developer entry points. Everything runs from the repo root with
# .venv; the project itself is not installed (pytest and `python -m` use the
# repo root as the import root).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The interpreter that creates .venv: python3.11, else python3 when it is 3.11 (empty when
# neither is; `make venv` then says so). Override: make PYTHON_BOOTSTRAP=/path/to/python3.11
PYTHON_BOOTSTRAP ?= $(shell for p in python3.11 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; \
	then command -v $$p; break; fi; done)
PYTHON_MISSING = Edgewise needs Python 3.11: there is no python3.11 on PATH, and python3 is \
	$$(python3 --version 2>&1 || echo missing). Install Python 3.11, or run make PYTHON_BOOTSTRAP=/path/to/python3.11
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.stamp-deps
PROTO_SRC := $(shell find protos -name '*.proto' 2>/dev/null)
PROTO_STAMP := edgewise/.stamp-protos
# googleapis protos (google/api/*.proto) come from the googleapis-common-protos wheel.
GOOGLEAPIS_DIR = $(shell $(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')
GRPC_TOOLS_PROTOS = $(shell $(PY) -c 'import grpc_tools, os; print(os.path.join(grpc_tools.__path__[0], "_proto"))')
BUF_DEPS_DIR := build/buf-deps
# The protos' descriptor set (imports and google.rpc error details included) that Envoy's
# grpc_json_transcoder reads; gitignored like all of build/.
DESCRIPTOR_SET := build/edgewise.pb

.PHONY: help venv protos run test lint buf-lint import-lint ruff mypy clean bench python-bootstrap

help:
	@echo "make venv    - create .venv with the pinned dependencies"
	@echo "make protos  - generate Python code from protos/ into ./edgewise, and the descriptor set build/edgewise.pb (the edge's REST transcoder)"
	@echo "make run     - start the command service and the query workers (one per core) on SQLite (./var/edgewise.db);"
	@echo "               make run STORE=dynamodb: on DynamoDB (a local moto stand-in unless EDGEWISE_DYNAMODB_ENDPOINT is set)"
	@echo "make test    - run the test suite"
	@echo "make lint    - buf lint + import-linter contracts + ruff (pyflakes checks) + mypy"
	@echo "make bench   - Edgewise vs PostgreSQL benchmarks, regenerates docs/benchmarks.md (BENCH_SCALE, BENCH_ARGS); not part of make test"
	@echo "make k8s-envoy-config - render deploy/k8s/envoy/envoy.yaml (the Envoy ConfigMap of deploy/k8s) with the gateway package"

venv: $(VENV_STAMP)

# Which Python `make venv` would use (or why there is none).
python-bootstrap:
	@if [ -n "$(PYTHON_BOOTSTRAP)" ]; then echo "$(PYTHON_BOOTSTRAP)"; else echo "$(PYTHON_MISSING)" >&2; exit 1; fi

$(VENV_STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || [ -n "$(PYTHON_BOOTSTRAP)" ] || { echo "$(PYTHON_MISSING)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet "pip==26.3"
	$(PY) -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(d["dependencies"] + d["optional-dependencies"]["dev"]))' > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.txt -c constraints.txt
	touch $@

protos: $(PROTO_STAMP)

$(PROTO_STAMP): $(VENV_STAMP) $(PROTO_SRC)
	rm -rf edgewise
	$(PY) -m grpc_tools.protoc -I protos -I "$(GOOGLEAPIS_DIR)" -I "$(GRPC_TOOLS_PROTOS)" \
		--python_out=. --grpc_python_out=. --pyi_out=. $(PROTO_SRC)
	for d in edgewise edgewise/graph edgewise/graph/v1; do touch $$d/__init__.py; done
	$(PY) -m gateway.descriptors $(DESCRIPTOR_SET)
	touch $@

# buf cannot fetch the googleapis module from its registry offline: copy google/api/*.proto from the
# wheel into a gitignored second module of the buf workspace (see buf.yaml).
$(BUF_DEPS_DIR)/.stamp: $(VENV_STAMP)
	$(PY) scripts/prepare_buf_deps.py $(BUF_DEPS_DIR)
	touch $@

buf-lint: $(BUF_DEPS_DIR)/.stamp
	$(VENV)/bin/buf lint --path protos/edgewise

import-lint: $(VENV_STAMP)
	$(VENV)/bin/lint-imports --no-cache

ruff: $(VENV_STAMP)
	$(VENV)/bin/ruff check .

# Configuration and strictness tiers: [tool.mypy] in pyproject.toml. Needs no generated code
# (edgewise/ is `Any` to it); incremental cache in build/mypy_cache.
mypy: $(VENV_STAMP)
	$(VENV)/bin/mypy --config-file pyproject.toml

lint: buf-lint import-lint ruff mypy

# The command service and EDGEWISE_QUERY_WORKERS query workers (default: one per core), each on
# its own port (scripts/run_stack.py says how and why). STORE=dynamodb: without
# EDGEWISE_DYNAMODB_ENDPOINT, a local stand-in (moto on 127.0.0.1, in memory) is started with
# the tables; with it, that endpoint is used (see the README). Quiet: the stack prints its
# endpoints once every process is healthy.
STORE ?= sqlite
run: $(VENV_STAMP) $(PROTO_STAMP)
	@mkdir -p var
	@EDGEWISE_STORE="$${EDGEWISE_STORE:-$(STORE)}" \
	EDGEWISE_DB_PATH="$${EDGEWISE_DB_PATH:-./var/edgewise.db}" \
	EDGEWISE_TOKEN_SECRET="$${EDGEWISE_TOKEN_SECRET:-dev-only-insecure-token-secret}" \
	EDGEWISE_AUTH_MODE="$${EDGEWISE_AUTH_MODE:-dev}" \
		$(PY) scripts/run_stack.py

# pytest exits 5 when it collects no tests; make fails on any non-zero exit, so an
# empty or mis-configured suite never passes.
test: $(VENV_STAMP) $(PROTO_STAMP) $(BUF_DEPS_DIR)/.stamp
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Not part of `make test`. Edgewise vs a throwaway PostgreSQL 15 (initdb/pg_ctl on PATH, else
# skipped) on a 10,000-user power-law graph, plus the older workloads; regenerates
# docs/benchmarks.md and docs/bench/*.png. The 10^6-edge report run:
# `make bench BENCH_ARGS="--graph-nodes 100000"`. BENCH_SCALE=3 takes more samples; BENCH_ARGS
# passes flags (`make bench BENCH_ARGS=--help`). Binds only to 127.0.0.1; temporary files only.
bench: $(VENV_STAMP) $(PROTO_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# deploy/k8s's Envoy ConfigMap (kustomization.yaml) from the settings in deploy/k8s/envoy/render.env,
# by the gateway package itself, so Kubernetes runs the config `make run` would. Gitignored; run before
# `kubectl apply -k deploy/k8s` and after changing render.env or gateway/.
.PHONY: k8s-envoy-config
K8S_ENVOY_CONFIG := deploy/k8s/envoy/envoy.yaml
k8s-envoy-config: $(VENV_STAMP) $(PROTO_STAMP)
	set -a && . deploy/k8s/envoy/render.env && set +a && $(PY) -m gateway render --out $(K8S_ENVOY_CONFIG)

clean:
	rm -rf edgewise build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
