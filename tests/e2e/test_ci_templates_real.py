"""The GitHub Actions templates' own `run:` steps, for the `existing` stack of ci/github/stacks.json,
against the local cluster: the pull-request preview posts its comment, the merge runs `pulumi up`,
scripts/verify and scripts/astro-env. Stand-ins for `gh` and `astro` record what they were asked.

The checkout is a project copy with its own file backend (the templates' bucket or Pulumi Cloud),
the passphrase secrets provider (their KMS key), and the local admin kubeconfig as the
REMOTE_KPO_ADMIN_KUBECONFIG secret. Its Deployment has a name of its own, so the session's dev
stack and its namespaces are untouched; the stack is destroyed at the end.
"""

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from realenv import ROOT, Pulumi, copy_project
from workflow import load, run_job

WORKFLOWS = ROOT / "ci" / "github" / "workflows"
DEPLOYMENT, ASTRO_ID = "ci-analytics", "clx0ciexample"
PR_NUMBER, REPOSITORY = 42, "example/platform-infra"

# Records its argv (one JSON list a line) to $STAND_IN_CALLS, and `--body-file`'s content.
STAND_IN = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
record = {"tool": os.path.basename(sys.argv[0]), "args": args}
if "--body-file" in args:
    record["body"] = open(args[args.index("--body-file") + 1]).read()
with open(os.environ["STAND_IN_CALLS"], "a") as calls:
    calls.write(json.dumps(record) + "\n")
'''


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """What actions/checkout gives the job: the repository with a stack for the existing entry."""
    project = copy_project(tmp_path_factory.mktemp("checkout"))
    for folder in ("consumer", "ci"):
        shutil.copytree(ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("scripts", "policy"):
        (project / folder).symlink_to(ROOT / folder)
    return project


@pytest.fixture(scope="module")
def runner(cluster_env, checkout, local_cluster_dir, tmp_path_factory) -> dict:
    """The job's environment and contexts, with `gh` and `astro` stand-ins on PATH."""
    folder = tmp_path_factory.mktemp("runner")
    (folder / "bin").mkdir()
    for tool in ("gh", "astro"):
        (folder / "bin" / tool).write_text(STAND_IN)
        (folder / "bin" / tool).chmod(0o755 | stat.S_IEXEC)
    state = folder / "state"
    state.mkdir()
    base_env = {name: value for name, value in cluster_env.items()
                if not name.startswith(("PULUMI_BACKEND", "KUBECONFIG"))}
    base_env.update({"PATH": f"{folder / 'bin'}{os.pathsep}{cluster_env['PATH']}",
                     "PULUMI_CONFIG_PASSPHRASE": "ci-template-test", "GITHUB_REPOSITORY": REPOSITORY,
                     "STAND_IN_CALLS": str(folder / "calls.jsonl")})
    context = {"vars": {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_SECRETS_PROVIDER": "passphrase"},
               "secrets": {"REMOTE_KPO_ADMIN_KUBECONFIG": (local_cluster_dir / "admin.kubeconfig").read_text(),
                           "ASTRO_API_TOKEN": "astro-api-token"},
               "github": {"token": "github-token", "ref": f"refs/pull/{PR_NUMBER}/merge",
                          "event": {"pull_request": {"number": PR_NUMBER}}}}
    return {"env": base_env, "context": context, "folder": folder,
            "pulumi": Pulumi(checkout, {**base_env, "PULUMI_BACKEND_URL": f"file://{state}",
                                        "KUBECONFIG": str(local_cluster_dir / "admin.kubeconfig")})}


def runner_matrix(checkout: Path, env: dict, folder: Path) -> dict:
    """The matrix the `stacks` job computes from ci/github/stacks.json."""
    [step] = run_job(load(WORKFLOWS / "remote-kpo-stack.yml"), "stacks", {}, checkout, env, folder / "stacks")
    assert step.returncode == 0, step.output
    return json.loads(step.outputs["matrix"])


def existing_entry(matrix: dict) -> dict:
    [entry] = [entry for entry in matrix["include"] if entry["cloud"] == "existing"]
    return entry


@pytest.fixture(scope="module")
def entry(runner, checkout) -> dict:
    """The existing cloud's matrix entry, its stack file and Astro mapping in the checkout."""
    entry = existing_entry(runner_matrix(checkout, runner["env"], runner["folder"]))
    stack_file = {"config": {"remote-kpo:cloud": "existing", "remote-kpo:clusterName": "remote-kpo-local",
                             "remote-kpo:deployments": [{"name": DEPLOYMENT}]}}
    (checkout / f"Pulumi.{entry['stack']}.yaml").write_text(json.dumps(stack_file))
    (checkout / "ci/github/astro" / f"{entry['stack']}.yaml").write_text(f"{DEPLOYMENT}: {ASTRO_ID}\n")
    yield entry
    runner["pulumi"].run("destroy", "--yes", "--stack", entry["stack"])


def calls(runner, tool: str) -> list[dict]:
    path = Path(runner["env"]["STAND_IN_CALLS"])
    lines = path.read_text().splitlines() if path.exists() else []
    return [record for record in map(json.loads, lines) if record["tool"] == tool]


def run_operation(runner, checkout, entry, operation: str):
    context = {**runner["context"], "inputs": {"operation": operation}, "matrix": entry}
    return run_job(load(WORKFLOWS / "remote-kpo-stack.yml"), "stack", context, checkout, runner["env"],
                   runner["folder"] / operation)


def test_the_pull_request_preview_runs_the_policy_pack_and_posts_it_on_the_pr(runner, checkout, entry):
    steps = run_operation(runner, checkout, entry, "preview")
    assert [(s.name, s.returncode) for s in steps] == [
        ("Admin kubeconfig of the existing cluster", 0), ("Select the stack", 0),
        ("pulumi preview with the policy pack", 0), ("Post the preview on the pull request", 0),
        ("Fail when the preview failed", 0)], steps[-1].output
    [comment] = calls(runner, "gh")
    assert comment["args"][:3] == ["pr", "comment", str(PR_NUMBER)]
    assert comment["args"][3:5] == ["--repo", REPOSITORY]
    body = comment["body"]
    assert body.startswith(f"#### `pulumi preview` of stack `{entry['stack']}`: passes the policy pack\n")
    # The real preview's plan and the policy pack's verdict, in the comment.
    assert re.search(rf'name +: "kpo-{DEPLOYMENT}"', body), body
    assert "Policy Packs run:" in body and "remote-kpo|local|policy  0.1.0" in body, body
    assert calls(runner, "astro") == []


def test_the_merge_runs_up_then_verify_then_hands_the_connection_to_astro(runner, checkout, entry):
    steps = run_operation(runner, checkout, entry, "up")
    assert [(s.name, s.returncode) for s in steps] == [
        ("Admin kubeconfig of the existing cluster", 0), ("Select the stack", 0),
        ("pulumi up with the policy pack", 0), ("Verify each connection from the consumer's side", 0),
        ("Hand the connections to Astro", 0)], steps[-1].output
    verify = steps[3].output
    assert verify.splitlines()[1].split()[:7] == [DEPLOYMENT, f"kpo-{DEPLOYMENT}", "ok", "ok", "ok", "ok", "ok"]
    assert "verify: 1 of 1 Deployments pass every step" in verify
    outputs = runner["pulumi"].outputs(entry["stack"])
    [call] = calls(runner, "astro")
    assert call["args"] == ["deployment", "variable", "create",
                            f"AIRFLOW_CONN_KPO_CI_ANALYTICS={outputs['airflowConnections'][DEPLOYMENT]}",
                            "--deployment-id", ASTRO_ID, "--secret"]
    # No step printed the connection.
    token = json.loads(outputs["kubeconfigs"][DEPLOYMENT])["users"][0]["user"]["token"]
    assert all(token not in step.output for step in steps)
