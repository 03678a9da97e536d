"""The GitHub Actions templates' own `run:` steps, for an `existing` stack of ci/github/stacks.json,
against the local cluster, each job in a fresh checkout of the same repository, as GitHub runs
them: the pull-request preview posts and then edits its one comment, the merge runs `pulumi up`
and scripts/verify, the job after the matrix runs scripts/astro-env (one Astro call, then none),
the scheduled drift check passes until a Role is deleted out of band.

The state is a file backend (a bucket's stand-in, logged in to by its URL like a bucket), and the
secrets provider is not a passphrase: a Vault transit key (`hashivault://`), served by a stand-in
of Vault's transit API in this process (no KMS runs here; gocloud's base64key:// is not compiled
into Pulumi: pkg/secrets/cloud/manager.go imports awskms, azurekeyvault, gcpkms and hashivault
only). So the stack is created once, as the README says a person does, with `pulumi stack init
--secrets-provider`, and every job reads the key from the committed stack file; no passphrase is
set anywhere. Stand-ins for `gh` and `astro` record what they were asked; the clouds' OIDC logins
are `uses:` steps and do not run. The stack is destroyed at the end.
"""

import json
import os
import re
import shutil
import stat
import uuid
from pathlib import Path

import pytest
import yaml

from harness import json_api
from realenv import ROOT, Pulumi, backend_url, copy_project
from workflow import load, run_job

WORKFLOW = load(ROOT / "ci/github/workflows/remote-kpo-stack.yml")
STACK, DEPLOYMENT, ASTRO_ID, WORKSPACE = "onprem", "ci-analytics", "clx0ciexample", "clw0platform"
PR_NUMBER, REPOSITORY = 42, "example/platform-infra"
VAULT_KEY, VAULT_TOKEN = "remote-kpo-ci", "vault-token-for-ci"

GH = r'''#!/usr/bin/env python3
# gh: `pr comment --body-file`, `api --paginate .../comments`, `api --method PATCH .../comments/ID -F body=@F`,
# against a JSON list of comments; each call is recorded.
import json, os, sys
args = sys.argv[1:]
store = os.environ["GH_COMMENTS"]
comments = json.load(open(store)) if os.path.exists(store) else []
if args[:2] == ["pr", "comment"]:
    body = open(args[args.index("--body-file") + 1]).read()
    comments.append({"id": 1000 + len(comments), "user": {"login": "github-actions[bot]", "type": "Bot"}, "body": body})
elif args[:2] == ["api", "--method"]:
    comment_id = int(args[3].rsplit("/", 1)[1])
    body = open(args[args.index("-F") + 1].split("=@", 1)[1]).read()
    [comment] = [c for c in comments if c["id"] == comment_id]
    comment["body"] = body
elif args[:2] == ["api", "--paginate"]:
    print(json.dumps(comments))
else:
    sys.exit(f"stand-in gh: {args} not understood")
json.dump(comments, open(store, "w"))
with open(os.environ["STAND_IN_CALLS"], "a") as calls:
    calls.write(json.dumps({"tool": "gh", "args": args}) + "\n")
'''

ASTRO = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
record = {"tool": "astro", "args": args}
if "--env" in args:
    record["env_file"] = open(args[args.index("--env") + 1]).read()
with open(os.environ["STAND_IN_CALLS"], "a") as calls:
    calls.write(json.dumps(record) + "\n")
'''


class VaultTransit:
    """Vault's transit encrypt/decrypt API (what gocloud.dev/secrets/hashivault calls) for one key
    and one token; the plaintexts stay in this process, as a KMS keeps its key."""

    def __init__(self):
        kept: dict[str, str] = {}

        def answer(path: str, headers: dict, request: dict) -> tuple[int, dict]:
            if headers.get("X-Vault-Token") != VAULT_TOKEN:
                return 403, {"errors": ["permission denied"]}
            if path == f"/v1/transit/encrypt/{VAULT_KEY}":
                ciphertext = f"vault:v1:{uuid.uuid4().hex}"
                kept[ciphertext] = request["plaintext"]
                return 200, {"data": {"ciphertext": ciphertext}}
            if path == f"/v1/transit/decrypt/{VAULT_KEY}" and request.get("ciphertext") in kept:
                return 200, {"data": {"plaintext": kept[request["ciphertext"]]}}
            return 400, {"errors": ["invalid ciphertext or key"]}

        self.server = json_api(answer)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture(scope="module")
def vault():
    transit = VaultTransit()
    yield transit
    transit.server.shutdown()


@pytest.fixture(scope="module")
def runner(cluster_env, local_cluster_dir, vault, tmp_path_factory) -> dict:
    """What each job's runner has: tools, stand-ins, its own PULUMI_HOME, and the contexts (the
    environment's vars and secrets) the workflow reads; no passphrase, no backend in the env."""
    folder = tmp_path_factory.mktemp("runner")
    (folder / "bin").mkdir()
    for tool, script in (("gh", GH), ("astro", ASTRO)):
        (folder / "bin" / tool).write_text(script)
        (folder / "bin" / tool).chmod(0o755 | stat.S_IEXEC)
    # `pulumi login` records the backend in PULUMI_HOME: the runner's own, with the plugins.
    (folder / "pulumi-home").mkdir()
    (folder / "pulumi-home/plugins").symlink_to(Path(cluster_env["PULUMI_HOME"]) / "plugins")
    state = folder / "state"
    state.mkdir()
    env = {name: value for name, value in cluster_env.items()
           if not name.startswith(("PULUMI_BACKEND", "PULUMI_CONFIG_PASSPHRASE", "KUBECONFIG", "VAULT_"))}
    env.update({"PATH": f"{folder / 'bin'}{os.pathsep}{cluster_env['PATH']}", "GITHUB_REPOSITORY": REPOSITORY,
                "PULUMI_HOME": str(folder / "pulumi-home"), "STAND_IN_CALLS": str(folder / "calls.jsonl"),
                "GH_COMMENTS": str(folder / "comments.json")})
    # A person's comment on the pull request, which the preview must leave alone.
    Path(env["GH_COMMENTS"]).write_text(json.dumps([{"id": 7, "user": {"login": "alice", "type": "User"},
                                                     "body": "Looks good once the preview is green."}]))
    context = {"vars": {"PULUMI_BACKEND_URL": backend_url(state), "VAULT_ADDR": vault.url},
               "secrets": {"REMOTE_KPO_ADMIN_KUBECONFIG": (local_cluster_dir / "admin.kubeconfig").read_text(),
                           "ASTRO_API_TOKEN": "astro-api-token", "VAULT_TOKEN": VAULT_TOKEN},
               "github": {"token": "github-token", "ref": f"refs/pull/{PR_NUMBER}/merge",
                          "event": {"pull_request": {"number": PR_NUMBER}}}}
    # The person who creates the stack, and who reads its outputs for the assertions.
    person = {**env, "PULUMI_BACKEND_URL": backend_url(state), "VAULT_ADDR": vault.url, "VAULT_TOKEN": VAULT_TOKEN,
              "KUBECONFIG": str(local_cluster_dir / "admin.kubeconfig")}
    return {"env": env, "context": context, "folder": folder, "person": person, "checkouts": 0}


@pytest.fixture(scope="module")
def repository(runner, tmp_path_factory) -> Path:
    """The platform team's repository: the program, consumer/ and dags/ (verify explains with
    dags/remote_kpo_explain.py), ci/github/ with one stack, `onprem`, its stack file as `pulumi
    stack init --secrets-provider` left it, committed; its Astro mapping."""
    source = copy_project(tmp_path_factory.mktemp("repository"))
    for folder in ("consumer", "dags"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "ci", source / "ci")
    for folder in ("scripts", "policy"):
        (source / folder).symlink_to(ROOT / folder)
    [entry] = [e for e in json.loads((ROOT / "ci/github/stacks.json").read_text())["include"] if e["stack"] == STACK]
    (source / "ci/github/stacks.json").write_text(json.dumps({"include": [entry]}))
    (source / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump({"config": {
        "remote-kpo:cloud": "existing", "remote-kpo:clusterName": "remote-kpo-local",
        "remote-kpo:deployments": [{"name": DEPLOYMENT, "podSecurity": "restricted"}]}}))
    (source / "ci/github/astro" / f"{STACK}.yaml").write_text(yaml.safe_dump(
        {"stack": STACK, "workspaceId": WORKSPACE, "deployments": {DEPLOYMENT: ASTRO_ID}}))
    # The one-time setup by a person (ci/github/README.md, Set up), then the commit of its stack file.
    person = Pulumi(source, runner["person"])
    person.run("stack", "init", STACK, "--secrets-provider", f"hashivault://{VAULT_KEY}")
    stack_file = (source / f"Pulumi.{STACK}.yaml").read_text()
    assert f"secretsprovider: hashivault://{VAULT_KEY}" in stack_file and "encryptedkey:" in stack_file, stack_file
    yield source
    person.run("destroy", "--yes", "--stack", STACK)


def checkout(runner, repository: Path) -> Path:
    """What actions/checkout gives a job: a fresh copy of the repository, nothing from other jobs."""
    runner["checkouts"] += 1
    fresh = runner["folder"] / f"checkout-{runner['checkouts']}"
    shutil.copytree(repository, fresh, symlinks=True)
    return fresh


def entry(runner, repository: Path) -> dict:
    """The matrix entry the `stacks` job computes from the repository's ci/github/stacks.json."""
    [step] = run(runner, repository, "stacks", "")
    assert step.returncode == 0, step.output
    [only] = json.loads(step.outputs["matrix"])["include"]
    return only


def run(runner, repository: Path, job: str, operation: str, matrix: dict | None = None):
    """One job: a fresh checkout; the runner's RUNNER_TEMP, emptied, as a runner's is between jobs
    (its path stays: the admin kubeconfig's path there is the existing-cluster provider's input)."""
    context = {**runner["context"], "inputs": {"operation": operation}, "matrix": matrix or {}}
    temp = runner["folder"] / "runner-temp"
    shutil.rmtree(temp, ignore_errors=True)
    return run_job(WORKFLOW, job, context, checkout(runner, repository), runner["env"], temp)


def calls(runner, tool: str) -> list[dict]:
    path = Path(runner["env"]["STAND_IN_CALLS"])
    lines = path.read_text().splitlines() if path.exists() else []
    return [record for record in map(json.loads, lines) if record["tool"] == tool]


def outputs(runner, repository: Path) -> dict:
    return Pulumi(repository, runner["person"]).outputs(STACK)


SETUP = [("Which clouds hold the state and the secrets key", 0), ("Admin kubeconfig of the existing cluster", 0),
         ("Log in to the state backend", 0), ("Select the stack", 0)]


def test_each_pull_request_push_previews_in_a_fresh_checkout_and_edits_its_one_comment(runner, repository):
    matrix = entry(runner, repository)
    first = run(runner, repository, "stack", "preview", matrix)
    assert [(s.name, s.returncode) for s in first] == SETUP + [
        ("pulumi preview --refresh with the policy pack", 0), ("Post the preview on the pull request", 0),
        ("Fail when the preview failed or found drift", 0)], first[-1].output
    # The state and the key need no cloud login here: a file backend, a Vault key.
    assert first[0].outputs == {"gcp": "false", "aws": "false", "azure": "false"}
    second = run(runner, repository, "stack", "preview", matrix)
    assert [s.returncode for s in second] == [0] * 7, second[-1].output
    comments = json.loads(Path(runner["env"]["GH_COMMENTS"]).read_text())
    assert [c["id"] for c in comments] == [7, 1001]
    assert comments[0]["body"] == "Looks good once the preview is green."
    assert [call["args"][:2] for call in calls(runner, "gh")] == [
        ["api", "--paginate"], ["pr", "comment"], ["api", "--paginate"], ["api", "--method"]]
    body = comments[1]["body"]
    assert body.startswith(f"<!-- remote-kpo preview: {STACK} -->\n#### `pulumi preview --refresh` of stack "
                           f"`{STACK}`: passes the policy pack\n")
    # The real preview's plan and the policy pack's verdict, in the comment.
    assert re.search(rf'name +: "kpo-{DEPLOYMENT}"', body), body
    assert "Policy Packs run:" in body and "remote-kpo|local|policy  0.1.0" in body, body
    assert calls(runner, "astro") == []


def test_the_merge_runs_up_then_verify_in_another_fresh_checkout(runner, repository):
    steps = run(runner, repository, "stack", "up", entry(runner, repository))
    assert [(s.name, s.returncode) for s in steps] == SETUP + [
        ("pulumi up --refresh with the policy pack", 0), ("Verify each connection from the consumer's side", 0)], \
        steps[-1].output
    verify = steps[-1].output
    # Its namespace is restricted: verify's own pods meet that standard.
    assert verify.splitlines()[1].split()[:7] == [DEPLOYMENT, f"kpo-{DEPLOYMENT}", "ok", "ok", "ok", "ok", "ok"]
    token = json.loads(outputs(runner, repository)["kubeconfigs"][DEPLOYMENT])["users"][0]["user"]["token"]
    assert all(token not in step.output for step in steps)


def test_after_the_matrix_astro_env_writes_each_astro_deployment_once_and_then_not_again(runner, repository):
    steps = run(runner, repository, "astro", "up")
    assert [(s.name, s.returncode) for s in steps] == [
        ("Which clouds hold the state and the secrets keys", 0), ("Log in to the state backend", 0),
        ("Hand the connections to Astro", 0)], steps[-1].output
    stack = outputs(runner, repository)
    connection = stack["airflowConnections"][DEPLOYMENT]
    [call] = calls(runner, "astro")
    assert call["args"][:6] == ["deployment", "variable", "update", "--deployment-id", ASTRO_ID, "--load"]
    assert call["args"][6] == "--env" and call["args"][8:] == ["--secret", "--workspace-id", WORKSPACE]
    # The connection, and beside it the `task` output as the task Variable and the Deployment's
    # janitor settings as the janitor's.
    task = json.dumps(stack["task"], sort_keys=True)
    janitor = json.dumps(stack["deployments"][DEPLOYMENT]["janitor"], sort_keys=True)
    assert json.loads(janitor)["enabled"] is True
    assert call["env_file"] == (f"AIRFLOW_CONN_KPO_CI_ANALYTICS={connection}\n"
                                f"AIRFLOW_VAR_REMOTE_KPO_JANITOR__KPO_CI_ANALYTICS={janitor}\n"
                                f"AIRFLOW_VAR_REMOTE_KPO_TASK__KPO_CI_ANALYTICS={task}\n")
    assert all(connection not in step.output for step in steps)
    # The next merge, nothing changed: no Astro call (the hash is a tag of the stack, in the backend).
    again = run(runner, repository, "astro", "up")
    assert [s.returncode for s in again] == [0, 0, 0], again[-1].output
    assert len(calls(runner, "astro")) == 1
    assert "unchanged since written, skipped" in again[-1].output


def test_the_drift_check_passes_until_the_cluster_changes_out_of_band(runner, repository, kubectl):
    matrix = entry(runner, repository)
    clean = run(runner, repository, "stack", "drift", matrix)
    assert [s.returncode for s in clean] == [0] * 6, clean[-2].output
    kubectl("delete", "rolebinding", "remote-kpo", "-n", f"kpo-{DEPLOYMENT}")
    drifted = run(runner, repository, "stack", "drift", matrix)
    assert [(s.name, s.returncode != 0) for s in drifted][-2:] == [
        ("pulumi preview --refresh with the policy pack", False), ("Fail when the preview failed or found drift", True)]
    assert "error: no changes were expected for preview but changes were proposed" in drifted[-2].output, \
        drifted[-2].output
    assert "+ kubernetes:rbac.authorization.k8s.io/v1:RoleBinding: (create)" in drifted[-2].output, drifted[-2].output


def test_a_stack_missing_from_the_backend_fails_and_is_not_created(runner, repository):
    typo = {**entry(runner, repository), "stack": "onpremm"}
    stack_file = (repository / f"Pulumi.{STACK}.yaml").read_text()
    (repository / "Pulumi.onpremm.yaml").write_text(stack_file)
    try:
        steps = run(runner, repository, "stack", "up", typo)
    finally:
        (repository / "Pulumi.onpremm.yaml").unlink()
    assert [(s.name, s.returncode) for s in steps][-1] == ("Select the stack", 1)
    assert ("stack onpremm is not in the backend: create it once with `pulumi stack init onpremm "
            "--secrets-provider KMS_URL`") in steps[-1].output
    listed = Pulumi(repository, runner["person"]).run("stack", "ls", "--json").stdout
    assert [stack["name"] for stack in json.loads(listed)] == [STACK]
