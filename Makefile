# calliper-pipeline: every target sets itself up. `make run` then `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
# torch's CPU wheel lies in PIP_FIND_LINKS on machines that carry one; uv does not read pip's variable.
FIND_LINKS := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),)
CITY ?= london
PORT ?= 5001

.PHONY: setup run test test-slow test-all test-cluster lint bench dagster mlflow-ui serve clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install -q uv==0.13.9
	$(UV) pip install --python $(PY) $(FIND_LINKS) -c requirements.lock -e '.[dev]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/calliper run --city $(CITY) --results docs/results.md --launched-by make-run

# the fast suite (unit, asset graph, CLI units): a few minutes on 2 cores
test: setup
	$(PY) -m pytest -q -m "not slow"

# end-to-end tests marked slow: real dagster dev / mlflow servers, subprocess runs of the CLI,
# kill-and-resume, two-process DDP, the serving virtualenv
test-slow: setup
	$(PY) -m pytest -q -m slow

test-all: test test-slow

# The cluster deployment of deploy/ on this machine (a throwaway Postgres, MLflow server, Dagster
# webserver + daemon + code server, Dask scheduler + worker), then the 2-process DDP tests.
# Needs PostgreSQL's initdb/pg_ctl (CALLIPER_PG_BIN); see docs/scale.md.
test-cluster: $(VENV)/.installed-cluster
	$(PY) -m pytest -q --cluster tests/cluster \
		tests/unit/training/test_distributed.py tests/e2e/test_distributed_cli.py

$(VENV)/.installed-cluster: $(STAMP)
	$(UV) pip install --python $(PY) $(FIND_LINKS) -c requirements.lock -e '.[dev,cluster]'
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .calliper

dagster: setup
	$(PY) -m jobs.dev

# MLflow's scoring server for the city's champion, from the store CALLIPER_HOME names
serve: setup
	$(VENV)/bin/calliper serve --city $(CITY) --port $(PORT)

mlflow-ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --workers 1 \
		--backend-store-uri sqlite:///$(or $(CALLIPER_HOME),$(CURDIR)/.calliper)/mlflow/mlflow.db --port 5000
