"""The GitHub Actions templates in ci/github/ lint clean (actionlint, GitHub's workflow schema) where
a user puts them, .github/workflows/ of their repository, and keep the promises ci/github/README.md
makes. Their run: steps run against a real cluster in tests/e2e/test_ci_templates_real.py."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import config
from harness import ROOT, stack_config

TEMPLATES = ROOT / "ci" / "github"
WORKFLOWS = sorted((TEMPLATES / "workflows").glob("*.yml"))
STACK_WORKFLOW = TEMPLATES / "workflows/remote-kpo-stack.yml"
CLOUD_LOGINS = {"gke": "google-github-actions/auth@", "eks": "aws-actions/configure-aws-credentials@",
                "aks": "azure/login@"}
STATE_LOGINS = {"gcp": ("google-github-actions/auth@", "gke"), "aws": ("aws-actions/configure-aws-credentials@", "eks"),
                "azure": ("azure/login@", "aks")}
# actionlint 1.7.12, the newest release, predates concurrency's `queue` key (GitHub changelog
# 2026-05-07, "concurrency groups now allow larger queues"); GitHub's schema below checks it.
QUEUE_NOT_KNOWN_TO_ACTIONLINT = r'unexpected key "queue" for "concurrency" section'


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


def lint(actionlint: Path, repository: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(actionlint), "-no-color", "-ignore", QUEUE_NOT_KNOWN_TO_ACTIONLINT],
                          cwd=repository, capture_output=True, text=True)


def test_actionlint_passes_every_workflow(actionlint, tmp_path):
    result = lint(actionlint, user_repository(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_fails_a_workflow_that_calls_the_stack_workflow_wrongly(actionlint, tmp_path):
    def break_caller(workflows: Path):
        caller = workflows / "remote-kpo-main.yml"
        caller.write_text(caller.read_text().replace("operation: up", "operations: up"))

    result = lint(actionlint, user_repository(tmp_path, break_caller))
    assert result.returncode == 1
    assert 'input "operation" is required' in result.stdout


def schema_check(*paths: Path) -> subprocess.CompletedProcess:
    check = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(check), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
                          capture_output=True, text=True)


def test_every_workflow_matches_githubs_workflow_schema():
    result = schema_check(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_refuses_a_queue_github_does_not_have(tmp_path):
    # So the check above is what accepts `queue: max`, not a schema that ignores the key.
    broken = tmp_path / "stack.yml"
    broken.write_text(STACK_WORKFLOW.read_text().replace("queue: max", "queue: forever"))
    result = schema_check(broken)
    assert result.returncode == 1 and "forever" in result.stdout


def test_callers_grant_oidc_tokens_and_only_the_pr_one_writes_comments():
    pr, main, drift = (load(TEMPLATES / f"workflows/remote-kpo-{name}.yml") for name in ("pr", "main", "drift"))
    assert list(pr["on"]) == ["pull_request"] and list(main["on"]) == ["push", "workflow_dispatch"]
    assert main["on"]["push"]["branches"] == ["main"]
    assert pr["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    assert main["permissions"] == drift["permissions"] == {"contents": "read", "id-token": "write"}
    assert pr["jobs"]["preview"]["with"] == {"operation": "preview"}
    assert main["jobs"]["up"]["with"] == {"operation": "up"}
    assert drift["jobs"]["drift"]["with"] == {"operation": "drift"} and "schedule" in drift["on"]


def test_a_readme_change_runs_no_preview_and_no_up_but_a_stack_change_does():
    def matched(patterns: list[str], path: str) -> bool:
        # GitHub's filter syntax for these patterns: ** crosses folders, * does not.
        return any(re.fullmatch(re.escape(p).replace(r"\*\*", ".*").replace(r"\*", "[^/]*"), path) for p in patterns)

    for name, event in (("pr", "pull_request"), ("main", "push")):
        paths = load(TEMPLATES / f"workflows/remote-kpo-{name}.yml")["on"][event]["paths"]
        assert not matched(paths, "README.md") and not matched(paths, "tests/test_config.py")
        for changed in ("Pulumi.gke.yaml", "components/gke.py", "ci/github/astro/gke.yaml", "policy/__main__.py"):
            assert matched(paths, changed), (name, changed)


def test_stacks_wait_their_turn_per_operation_in_order_never_cancelled():
    jobs = load(STACK_WORKFLOW)["jobs"]
    stack, astro = jobs["stack"]["concurrency"], jobs["astro"]["concurrency"]
    assert stack["group"] == "${{ format('remote-kpo-{0}-{1}', inputs.operation, matrix.stack) }}"
    assert (stack["cancel-in-progress"], stack["queue"]) == (astro["cancel-in-progress"], astro["queue"]) == (False, "max")


def test_up_runs_in_the_stacks_own_environment_and_preview_in_a_read_only_one():
    jobs = load(STACK_WORKFLOW)["jobs"]
    assert jobs["stack"]["environment"] == ("${{ inputs.operation == 'up' && format('remote-kpo-{0}', matrix.stack) "
                                            "|| format('remote-kpo-{0}-preview', matrix.stack) }}")
    assert jobs["astro"]["environment"] == "remote-kpo-astro"


def test_every_job_has_a_timeout_and_stack_jobs_run_where_the_matrix_says():
    jobs = load(STACK_WORKFLOW)["jobs"]
    assert all(isinstance(job.get("timeout-minutes"), int) for job in jobs.values())
    assert jobs["stack"]["runs-on"] == "${{ matrix.runs-on }}"


def test_every_action_is_pinned_by_commit():
    for path in WORKFLOWS:
        for job in load(path)["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), (path.name, step["uses"])


def test_each_cloud_logs_in_by_oidc_with_no_stored_key():
    steps = load(STACK_WORKFLOW)["jobs"]["stack"]["steps"]
    for cloud, action in CLOUD_LOGINS.items():
        [login] = [step for step in steps if step.get("uses", "").startswith(action) and "matrix.cloud ==" in step["if"]]
        assert login["if"] == f"matrix.cloud == '{cloud}'"
        assert not any(key in login["with"] for key in ("credentials_json", "aws-secret-access-key", "creds"))


def test_state_and_key_clouds_log_in_whatever_the_stacks_cloud_unless_it_is_the_same_cloud():
    jobs = load(STACK_WORKFLOW)["jobs"]
    for state_cloud, (action, stack_cloud) in STATE_LOGINS.items():
        [in_stack] = [s for s in jobs["stack"]["steps"] if s.get("uses", "").startswith(action) and "steps.state" in s["if"]]
        assert in_stack["if"] == f"steps.state.outputs.{state_cloud} == 'true' && matrix.cloud != '{stack_cloud}'"
        [in_astro] = [s for s in jobs["astro"]["steps"] if s.get("uses", "").startswith(action)]
        assert in_astro["if"] == f"steps.state.outputs.{state_cloud} == 'true'"
        assert all(value.startswith("${{ vars.STATE_") for value in in_stack["with"].values() if "${{" in str(value))


def test_every_stack_of_the_matrix_has_a_valid_stack_file_an_astro_mapping_and_a_runner():
    stacks = json.loads((TEMPLATES / "stacks.json").read_text())["include"]
    assert {entry["cloud"] for entry in stacks} == {"gke", "eks", "aks", "existing"}
    for entry in stacks:
        assert config.load(stack_config(entry["stack"])).cloud == entry["cloud"], entry
        mapping = yaml.safe_load((TEMPLATES / "astro" / f"{entry['stack']}.yaml").read_text())
        assert mapping["stack"] == entry["stack"]
        assert entry["runs-on"], entry


def state_clouds(tmp_path: Path, backend: str, provider: str | None, extra: str = "") -> subprocess.CompletedProcess:
    stack_file = tmp_path / "Pulumi.s.yaml"
    stack_file.write_text("config: {}\n" + (f"secretsprovider: {provider}\nencryptedkey: AAAA\n" if provider else "")
                          + extra)
    return subprocess.run([str(TEMPLATES / "state-clouds"), str(stack_file)], capture_output=True, text=True,
                          env={**os.environ, "PULUMI_BACKEND_URL": backend})


@pytest.mark.parametrize("backend, provider, clouds", [
    ("gs://acme-state/remote-kpo", "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", {"gcp"}),
    ("gs://acme-state/remote-kpo", "awskms://alias/remote-kpo?region=us-east-1", {"gcp", "aws"}),
    ("s3://acme-state/remote-kpo?region=us-east-1", "awskms://alias/remote-kpo?region=us-east-1", {"aws"}),
    ("azblob://state?storage_account=acmestate", "azurekeyvault://acme.vault.azure.net/keys/k", {"azure"}),
    ("", None, set()),                                   # Pulumi Cloud and its own key
    ("file:///srv/state", "hashivault://remote-kpo", set()),
])
def test_state_clouds_come_from_the_backend_and_key_schemes(tmp_path, backend, provider, clouds):
    result = state_clouds(tmp_path, backend, provider)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{cloud}={'true' if cloud in clouds else 'false'}"
                                          for cloud in ("gcp", "aws", "azure")]


@pytest.mark.parametrize("backend, provider, extra, message", [
    ("azblob://state", "azurekeyvault://acme.vault.azure.net/keys/k", "",
     "PULUMI_BACKEND_URL: azblob://state: azblob:// needs the account in the URL: "
     "azblob://CONTAINER?storage_account=ACCOUNT"),
    ("gs://acme-state", None, "encryptionsalt: v1:abc\n",
     "{file}: no secretsprovider: create the stack with `pulumi stack init STACK --secrets-provider KMS_URL` and "
     "commit its stack file (CI has no passphrase)"),
    ("gs://acme-state", "passphrase", "", "{file}: passphrase: not a backend or secrets provider the workflows log in "
     "to (gs, s3, azblob, Pulumi Cloud; gcpkms, awskms, azurekeyvault, hashivault)"),
])
def test_a_state_ci_cannot_open_is_one_line_before_pulumi_runs(tmp_path, backend, provider, extra, message):
    result = state_clouds(tmp_path, backend, provider, extra)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == message.format(file=tmp_path / "Pulumi.s.yaml") + "\n"
