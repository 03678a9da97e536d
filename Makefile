# Two commands matter: `make dev` (pulumi up of the dev stack on the local control plane)
# and `make test` (unit tests under Pulumi mocks, then end-to-end tests for real).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help dev down test unit venv test-venvs verify smoke

# `make` alone: what the targets do (the `##` comments below).
help:
	@echo "make TARGET   (state: .pulumi-state/, cluster: .toolchain/cluster/; README.md, scripts/README.md)"
	@sed -n 's/^\([a-z-]*\):.*## \(.*\)/  \1\t\2/p' $(MAKEFILE_LIST) | expand -t 14

# pip_install VENV ARGS: pip install -q into VENV (quiet: no page of lines), between a line that
# says what runs while it is silent and one with the time it took.
define pip_install
@echo "make: pip install $(2) into $(1): once, a minute or more, quiet until done"
@start=$$(date +%s); $(1)/bin/pip install -q --disable-pip-version-check $(2) \
  && echo "make: $(1) ready in $$(( $$(date +%s) - start ))s"
endef

venv: $(VENV)/.installed ## the program's venv (.venv, requirements.txt)
# What the tests use beside the program: Airflow itself and the policy pack's own venv.
test-venvs: .venv-airflow/.installed policy/venv/.installed ## Airflow's and the policy pack's venvs, for the tests
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(call pip_install,$(VENV),-r requirements.txt)
	touch $@
# The policy pack pins protobuf 5.29, so it has its own venv, as Pulumi runs packs.
policy/venv/.installed: policy/requirements.txt
	python3 -m venv policy/venv
	$(call pip_install,policy/venv,-r policy/requirements.txt)
	touch $@
.venv-airflow/.installed: requirements-airflow.txt constraints-airflow.txt
	python3 -m venv .venv-airflow
	$(call pip_install,.venv-airflow,-r requirements-airflow.txt -c constraints-airflow.txt)
	touch $@

unit: venv test-venvs ## unit tests only (Pulumi mocks, pyright): 1 to 2 minutes
	$(PY) -m pytest -q tests --ignore=tests/e2e

test: venv test-venvs ## unit, then end-to-end tests (own clusters; ports: REMOTE_KPO_E2E_PORT_BASE)
	$(PY) -m pytest -q tests

# The dev stack's state is saved once, when `up`/`destroy` ends, not after every step: the file
# backend rewrites the whole state for each step (Pulumi 3.259 pkg/backend/snapshot.go,
# defaultServiceLoop), so a create or delete of N objects cost O(N²); PULUMI_SKIP_CHECKPOINTS
# picks its unsafeServiceLoop (bench/README.md, "Growth with the stack"). Safe for this stack
# only: every object is a Kubernetes object with a fixed name, and the provider creates by
# server-side apply, which takes over an object that exists (pulumi-kubernetes 4.25
# pkg/await/await.go, Creation), so the next `up` adopts what a killed one made, recorded or
# not (tests/e2e/test_faults_real.py). Cloud stacks keep the checkpoints: a cluster a killed
# `up` made but did not record would not be adopted.
DEV_PULUMI_ENV := PULUMI_SKIP_CHECKPOINTS=true

# State lives in .pulumi-state/ (file backend), passphrase remote-kpo-dev; env.sh's umask 077
# keeps it private. --refresh: the local cluster may have been wiped (make down) or changed out
# of band since the last up. stale-lock: an `up` killed on this machine left its lock (and its
# plugins); a running one's lock stops here. --skip-preview: with --yes nobody reads the
# preview, and it runs the whole program a second time (half of a no-change `up`,
# bench/README.md); `pulumi preview` stays its own command. `up` prints the outputs itself
# (secrets masked: `pulumi stack output --show-secrets` shows them).
dev: venv ## toolchain, local cluster, then `pulumi up` of the dev stack
	scripts/toolchain
	scripts/local-cluster up
	source scripts/env.sh && pulumi stack select --create dev --non-interactive \
	  && scripts/stale-lock dev \
	  && $(DEV_PULUMI_ENV) pulumi up --refresh --skip-preview --yes --stack dev --non-interactive

down: ## destroy the dev stack, stop and wipe the local cluster (naming other stacks still on it)
	-source scripts/env.sh && $(DEV_PULUMI_ENV) pulumi destroy --yes --stack dev --non-interactive
	scripts/local-cluster down

# scripts/verify on a stack's outputs (STACK, default dev), with the project's pulumi and state.
# KUBECONFIG (env.sh's admin kubeconfig) is unset for verify itself: it reads the connections from
# the stack's outputs, and would otherwise warn about a KUBECONFIG meant for where Airflow runs.
verify: venv ## scripts/verify on a stack's outputs (STACK=, default dev)
	source scripts/env.sh && env -u KUBECONFIG scripts/verify --stack $(or $(STACK),dev)

# The smoke DAG run locally by .venv-airflow's Airflow through a stack's connections (scripts/smoke).
# KUBECONFIG is unset as for verify: the DAG's check_environment fails a Deployment that sets it.
smoke: venv test-venvs ## dags/remote_kpo_smoke.py run locally through a stack's connections (STACK=, default dev)
	source scripts/env.sh && env -u KUBECONFIG scripts/smoke --stack $(or $(STACK),dev)
