# Two commands matter: `make dev` (pulumi up of the dev stack on the local control plane)
# and `make test` (unit tests under Pulumi mocks, then end-to-end tests for real).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: dev down test unit venv

venv: $(VENV)/.installed .venv-airflow/.installed
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@
.venv-airflow/.installed: requirements-airflow.txt constraints-airflow.txt
	python3 -m venv .venv-airflow
	.venv-airflow/bin/pip install -q --disable-pip-version-check -r requirements-airflow.txt -c constraints-airflow.txt
	touch $@

unit: venv
	$(PY) -m pytest -q tests --ignore=tests/e2e

test: venv
	$(PY) -m pytest -q tests

dev: venv
	@echo "make dev needs the toolchain and local control plane (scripts/toolchain, scripts/local-cluster): not built yet."; exit 1

down:
	@echo "make down: nothing to stop yet."
