"""The GitHub Actions templates in ci/github/ lint clean (actionlint, GitHub's workflow schema) where
a user puts them, .github/workflows/ of their repository, and keep the promises ci/github/README.md
makes. Their run: steps run against a real cluster in tests/e2e/test_ci_templates_real.py."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import ROOT

TEMPLATES = ROOT / "ci" / "github"
WORKFLOWS = sorted((TEMPLATES / "workflows").glob("*.yml"))
LOGINS = {"gke": "google-github-actions/auth@", "eks": "aws-actions/configure-aws-credentials@",
          "aks": "azure/login@"}


def load(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads `on` as true
    return document


@pytest.fixture(scope="module")
def actionlint() -> Path:
    subprocess.run([str(ROOT / "scripts/toolchain"), "actionlint"], check=True, capture_output=True)
    return ROOT / ".toolchain/bin/actionlint"


def user_repository(folder: Path, edit=None) -> Path:
    """A git repository with the templates copied where the user copies them."""
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    shutil.copytree(TEMPLATES / "workflows", folder / ".github/workflows")
    if edit:
        edit(folder / ".github/workflows")
    return folder


def test_actionlint_passes_every_workflow(actionlint, tmp_path):
    repository = user_repository(tmp_path)
    result = subprocess.run([str(actionlint), "-no-color"], cwd=repository, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_fails_a_workflow_that_calls_the_stack_workflow_wrongly(actionlint, tmp_path):
    def break_caller(workflows: Path):
        caller = workflows / "remote-kpo-main.yml"
        caller.write_text(caller.read_text().replace("operation: up", "operations: up"))

    repository = user_repository(tmp_path, break_caller)
    result = subprocess.run([str(actionlint), "-no-color"], cwd=repository, capture_output=True, text=True)
    assert result.returncode == 1
    assert 'input "operation" is required' in result.stdout


def test_every_workflow_matches_githubs_workflow_schema():
    check = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(check), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_callers_grant_oidc_tokens_and_only_the_pr_one_writes_comments():
    pr, main = load(TEMPLATES / "workflows/remote-kpo-pr.yml"), load(TEMPLATES / "workflows/remote-kpo-main.yml")
    assert list(pr["on"]) == ["pull_request"] and main["on"] == {"push": {"branches": ["main"]}}
    assert pr["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    assert main["permissions"] == {"contents": "read", "id-token": "write"}
    assert pr["jobs"]["preview"]["with"] == {"operation": "preview"}
    assert main["jobs"]["up"]["with"] == {"operation": "up"}


def test_one_up_per_stack_at_a_time_never_cancelled():
    job = load(TEMPLATES / "workflows/remote-kpo-stack.yml")["jobs"]["stack"]
    assert "format('remote-kpo-up-{0}', matrix.stack)" in job["concurrency"]["group"]
    assert job["concurrency"]["cancel-in-progress"] == "${{ inputs.operation != 'up' }}"


def test_each_cloud_logs_in_by_oidc_with_no_stored_key():
    steps = load(TEMPLATES / "workflows/remote-kpo-stack.yml")["jobs"]["stack"]["steps"]
    for cloud, action in LOGINS.items():
        [login] = [step for step in steps if step.get("uses", "").startswith(action)]
        assert login["if"] == f"matrix.cloud == '{cloud}'"
        assert not any(key in login["with"] for key in ("credentials_json", "aws-secret-access-key", "creds"))


def test_every_stack_of_the_matrix_has_an_astro_mapping():
    stacks = json.loads((TEMPLATES / "stacks.json").read_text())["include"]
    assert {entry["cloud"] for entry in stacks} == {"gke", "eks", "aks", "existing"}
    for entry in stacks:
        assert (TEMPLATES / "astro" / f"{entry['stack']}.yaml").is_file(), entry
