"""scripts/astro-env against stand-ins on PATH: an `astro` that records each call with the env
file it was given (content and mode), and a `pulumi` that serves a stack's outputs and keeps its
stack tags, as `pulumi stack output` and `pulumi stack tag` do. The real `pulumi` and the workflow
around it: tests/e2e/test_ci_templates_real.py."""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from components import kubeconfig as kc
from components.disruption import task_shape
from components.gpu import gpu_task
from config import GpuPool
from harness import ROOT

TOKEN = "s3cr3t-token-value"
ANALYTICS, ML, WORKSPACE = "clx0analytics", "clx0mltraining", "clw0platform"

ASTRO = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
env_file = args[args.index("--env") + 1] if "--env" in args else None
record = {"args": args}
if env_file:
    record["env_file"] = open(env_file).read()
    record["mode"] = oct(os.stat(env_file).st_mode & 0o777)
with open(os.environ["ASTRO_CALLS"], "a") as calls:
    calls.write(json.dumps(record) + "\n")
if args[args.index("--deployment-id") + 1].startswith("bad"):
    print("Error: deployment not found while loading " + record.get("env_file", ""), file=sys.stderr)
    sys.exit(1)
print("Updated list of your Deployment's variables:")
'''

PULUMI = r'''#!/usr/bin/env python3
import json, os, sys
args = [a for a in sys.argv[1:] if a != "--non-interactive"]
folder = os.environ["PULUMI_STAND_IN"]
with open(os.path.join(folder, "calls.jsonl"), "a") as calls:
    calls.write(json.dumps(args) + "\n")
stack = args[args.index("--stack") + 1]
outputs, tags_file = os.path.join(folder, stack + ".json"), os.path.join(folder, stack + ".tags.json")
if not os.path.exists(outputs):
    print(f"error: no stack named '{stack}' found", file=sys.stderr)
    sys.exit(255)
tags = json.load(open(tags_file)) if os.path.exists(tags_file) else {}
if args[:2] == ["stack", "output"]:
    print(open(outputs).read())
elif args[:3] == ["stack", "tag", "ls"]:
    print(json.dumps(tags))
elif args[:3] == ["stack", "tag", "set"]:
    tags[args[3]] = args[4]
    json.dump(tags, open(tags_file, "w"))
else:
    sys.exit(f"stand-in pulumi: {args} not understood")
'''


def connection(namespace: str, token: str = TOKEN) -> str:
    doc = kc.kubeconfig(cluster_name="c", server="https://k", ca_data="Q0E=", namespace=namespace,
                        user_name="u", user=kc.token_user(token))
    return kc.to_json(kc.airflow_connection(doc, namespace))


def stack_outputs(gpu: bool = False, token: str = TOKEN, prefix: str = "kpo_") -> dict:
    def info(name: str) -> dict:
        conn_id = prefix + name.replace("-", "_")
        return {"namespace": f"kpo-{name}", "connectionId": conn_id, "envVar": "AIRFLOW_CONN_" + conn_id.upper()}

    outputs = {"deployments": {"analytics": info("analytics"), "ml-training": info("ml-training")},
               "airflowConnections": {"analytics": connection("kpo-analytics", token),
                                      "ml-training": connection("kpo-ml-training", token)}}
    if gpu:
        outputs["gpuTask"] = gpu_task("gke", GpuPool(enabled=True))
    return outputs


@pytest.fixture
def env(tmp_path) -> dict:
    """PATH with the stand-ins first; stack `prod` has stack_outputs()."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, script in (("astro", ASTRO), ("pulumi", PULUMI)):
        (folder / name).write_text(script)
        (folder / name).chmod(0o755 | stat.S_IEXEC)
    (tmp_path / "pulumi").mkdir()
    environment = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}",
                   "ASTRO_CALLS": str(tmp_path / "astro-calls.jsonl"), "PULUMI_STAND_IN": str(tmp_path / "pulumi"),
                   "ASTRO_API_TOKEN": "astro-api-token"}
    set_outputs(environment, "prod", stack_outputs())
    return environment


def set_outputs(env: dict, stack: str, outputs: dict) -> None:
    (Path(env["PULUMI_STAND_IN"]) / f"{stack}.json").write_text(json.dumps(outputs))


def map_file(tmp_path: Path, name: str, document: dict) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(document))
    return str(path)


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts/astro-env"), *args], env=env, capture_output=True, text=True)


def astro_calls(env: dict) -> list[dict]:
    path = Path(env["ASTRO_CALLS"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def tags(env: dict, stack: str) -> dict:
    path = Path(env["PULUMI_STAND_IN"]) / f"{stack}.tags.json"
    return json.loads(path.read_text()) if path.exists() else {}


def env_file_lines(call: dict) -> list[str]:
    return call["env_file"].splitlines()


def test_each_astro_deployment_gets_one_call_with_its_variables_in_a_private_file(env, tmp_path):
    result = run(env, "--map-file", map_file(tmp_path, "prod", {
        "stack": "prod", "deployments": {"analytics": ANALYTICS, "ml-training": ML}}))
    assert result.returncode == 0, result.stderr
    outputs = stack_outputs()
    first, second = astro_calls(env)
    assert first["args"][:4] == ["deployment", "variable", "update", "--deployment-id"]
    assert first["args"][4:] == [ANALYTICS, "--load", "--env", first["args"][7], "--secret"]
    assert env_file_lines(first) == [f"AIRFLOW_CONN_KPO_ANALYTICS={outputs['airflowConnections']['analytics']}"]
    assert env_file_lines(second) == [f"AIRFLOW_CONN_KPO_ML_TRAINING={outputs['airflowConnections']['ml-training']}"]
    assert (first["mode"], second["mode"]) == ("0o600", "0o600")
    # The secret is in the file only: not on the command line, not in what astro-env prints.
    assert not any(TOKEN in arg for call in (first, second) for arg in call["args"])
    assert TOKEN not in result.stdout + result.stderr
    assert not Path(first["args"][7]).exists()
    assert result.stdout.splitlines() == [
        f"{ANALYTICS}: AIRFLOW_CONN_KPO_ANALYTICS (prod: analytics): written",
        f"{ML}: AIRFLOW_CONN_KPO_ML_TRAINING (prod: ml-training): written"]


def test_a_rerun_with_nothing_changed_calls_astro_not_at_all(env, tmp_path):
    mapping = map_file(tmp_path, "prod", {"stack": "prod", "deployments": {"analytics": ANALYTICS}})
    assert run(env, "--map-file", mapping).returncode == 0
    again = run(env, "--map-file", mapping)
    assert again.returncode == 0, again.stderr
    assert len(astro_calls(env)) == 1
    assert again.stdout == f"{ANALYTICS}: AIRFLOW_CONN_KPO_ANALYTICS (prod: analytics): unchanged since written, skipped\n"


def test_a_new_connection_is_written_again_and_only_where_it_changed(env, tmp_path):
    mapping = map_file(tmp_path, "prod", {"stack": "prod", "deployments": {"analytics": ANALYTICS, "ml-training": ML}})
    assert run(env, "--map-file", mapping).returncode == 0
    rotated = stack_outputs()
    rotated["airflowConnections"]["ml-training"] = connection("kpo-ml-training", "a-new-token")
    set_outputs(env, "prod", rotated)
    assert run(env, "--map-file", mapping).returncode == 0
    calls = astro_calls(env)
    assert [call["args"][4] for call in calls] == [ANALYTICS, ML, ML]
    assert "a-new-token" in calls[-1]["env_file"]


def variable_beside_the_connection(env: dict, outputs: dict) -> tuple[str, str, str]:
    """(key, value) of the one variable astro-env writes beside analytics' connection, and what it printed."""
    set_outputs(env, "prod", outputs)
    result = run(env, "--stack", "prod", "--map", f"analytics={ANALYTICS}")
    assert result.returncode == 0, result.stderr
    [call] = astro_calls(env)
    conn_line, variable_line = env_file_lines(call)
    assert conn_line.startswith("AIRFLOW_CONN_KPO_ANALYTICS={")
    key, _, value = variable_line.partition("=")
    return key, value, result.stdout


def test_a_gpu_stack_writes_the_gpu_task_variable_in_the_same_call(env):
    key, value, _ = variable_beside_the_connection(env, stack_outputs(gpu=True))
    assert key == "AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_ANALYTICS"
    assert json.loads(value) == gpu_task("gke", GpuPool(enabled=True))


def test_a_deployments_janitor_settings_go_beside_its_connection_as_the_janitor_variable(env):
    outputs = stack_outputs()
    off = {"enabled": False, "finishedTtlSeconds": 3600, "maxTaskRuntimeSeconds": 86400,
           "pendingDeadlineSeconds": 540, "gpuPendingDeadlineSeconds": 2100}
    outputs["deployments"]["analytics"]["janitor"] = off
    key, value, printed = variable_beside_the_connection(env, outputs)
    # Written when off too: the upsert could not otherwise take back an earlier `enabled: true`.
    assert key == "AIRFLOW_VAR_REMOTE_KPO_JANITOR__KPO_ANALYTICS"
    assert json.loads(value) == off
    # The Astro Deployment is described by its connection's source, not once per variable.
    assert printed.count("prod: analytics") == 1, printed
def test_the_task_output_goes_beside_the_connection_as_the_task_variable_the_smoke_dag_reads(env, tmp_path):
    set_outputs(env, "prod", {**stack_outputs(gpu=True), "task": task_shape("eks")})
    result = run(env, "--stack", "prod", "--map", f"ml-training={ML}")
    assert result.returncode == 0, result.stderr
    [call] = astro_calls(env)
    lines = dict(line.partition("=")[::2] for line in env_file_lines(call))
    assert sorted(lines) == ["AIRFLOW_CONN_KPO_ML_TRAINING", "AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_ML_TRAINING",
                             "AIRFLOW_VAR_REMOTE_KPO_TASK__KPO_ML_TRAINING"]
    task = json.loads(lines["AIRFLOW_VAR_REMOTE_KPO_TASK__KPO_ML_TRAINING"])
    assert task["nodeSelector"] == {"remote-kpo/tasks": "true"}
    assert task["annotations"]["karpenter.sh/do-not-disrupt"] == "true"


def test_an_organization_token_gets_the_workspace_of_the_map_file(env, tmp_path):
    result = run(env, "--map-file", map_file(tmp_path, "prod", {
        "stack": "prod", "workspaceId": WORKSPACE, "deployments": {"analytics": ANALYTICS}}))
    assert result.returncode == 0, result.stderr
    [call] = astro_calls(env)
    assert call["args"][-2:] == ["--workspace-id", WORKSPACE]


def test_two_stacks_writing_one_variable_of_one_astro_deployment_are_refused_before_any_call(env, tmp_path):
    set_outputs(env, "onprem", stack_outputs())
    result = run(env, "--map-file", map_file(tmp_path, "prod", {"stack": "prod", "deployments": {"analytics": ANALYTICS}}),
                 "--map-file", map_file(tmp_path, "onprem", {"stack": "onprem", "deployments": {"analytics": ANALYTICS}}))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] + "\n" == (
        f"astro-env: AIRFLOW_CONN_KPO_ANALYTICS on Astro Deployment {ANALYTICS} would be written by "
        f"{tmp_path}/prod.yaml (stack prod: analytics) and by {tmp_path}/onprem.yaml (stack onprem: analytics): "
        "give one of the Deployments a connectionId of its own (README: Config reference), or map it elsewhere\n")
    assert astro_calls(env) == []


def test_two_stacks_with_their_own_connection_ids_share_one_call_per_astro_deployment(env, tmp_path):
    set_outputs(env, "onprem", stack_outputs(prefix="kpo_onprem_"))
    maps = ["--map-file", map_file(tmp_path, "prod", {"stack": "prod", "deployments": {"analytics": ANALYTICS}}),
            "--map-file", map_file(tmp_path, "onprem", {"stack": "onprem", "deployments": {"analytics": ANALYTICS}})]
    result = run(env, *maps)
    assert result.returncode == 0, result.stderr
    [call] = astro_calls(env)
    assert [line.split("=")[0] for line in env_file_lines(call)] == [
        "AIRFLOW_CONN_KPO_ANALYTICS", "AIRFLOW_CONN_KPO_ONPREM_ANALYTICS"]
    # Each stack keeps the hash of its own part: unchanged, neither writes again.
    assert set(tags(env, "prod")) == set(tags(env, "onprem")) == {f"astro-env:{ANALYTICS}"}
    assert run(env, *maps).returncode == 0
    assert len(astro_calls(env)) == 1


def test_dry_run_prints_the_calls_and_writes_nothing(env, tmp_path):
    result = run(env, "--stack", "prod", "--map", f"analytics={ANALYTICS}", "--map", f"ml-training={ML}", "--dry-run")
    assert result.returncode == 0
    assert astro_calls(env) == [] and tags(env, "prod") == {}
    assert result.stdout.splitlines() == [
        f"{ANALYTICS}: AIRFLOW_CONN_KPO_ANALYTICS (prod: analytics): would run astro deployment variable update "
        f"--deployment-id {ANALYTICS} --load --env '<0600 env file>' --secret",
        f"{ML}: AIRFLOW_CONN_KPO_ML_TRAINING (prod: ml-training): would run astro deployment variable update "
        f"--deployment-id {ML} --load --env '<0600 env file>' --secret"]
    assert TOKEN not in result.stdout + result.stderr


def test_a_failing_astro_call_is_one_masked_line_and_is_retried_next_time(env, tmp_path):
    mapping = map_file(tmp_path, "prod", {"stack": "prod", "deployments": {"analytics": "bad-id"}})
    result = run(env, "--map-file", mapping)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] + "\n" == ("astro-env: astro deployment variable update for bad-id failed: Error: deployment not "
                             "found while loading AIRFLOW_CONN_KPO_ANALYTICS=******\n")
    assert TOKEN not in result.stdout + result.stderr
    assert tags(env, "prod") == {}
    assert run(env, "--map-file", mapping).returncode == 1
    assert len(astro_calls(env)) == 2


def test_unmapped_deployments_are_left_out_and_named(env, tmp_path):
    result = run(env, "--map-file", map_file(tmp_path, "prod", {"stack": "prod", "deployments": {"ml-training": ML}}))
    assert result.returncode == 0
    assert [call["args"][4] for call in astro_calls(env)] == [ML]
    assert result.stderr == f"astro-env: stack prod: analytics: not in {tmp_path}/prod.yaml, left out\n"


@pytest.mark.parametrize("args, message", [
    (["--stack", "prod", "--map", "nobody=clx"], "astro-env: --map (stack prod): names nobody, not a Deployment of "
                                                 "the stack (it has: analytics, ml-training)\n"),
    (["--stack", "prod", "--map", "analytics"], "astro-env: --map analytics: expected NAME=ASTRO_DEPLOYMENT_ID\n"),
    (["--map", "analytics=clx"], "astro-env: --map needs --stack (a map file names its stack)\n"),
    ([], "astro-env: no mapping: give --map-file FILE, or --stack STACK --map NAME=ASTRO_DEPLOYMENT_ID\n"),
    (["--map-file", "/nonexistent.yaml"], "astro-env: --map-file /nonexistent.yaml: No such file or directory\n"),
    (["--stack", "typo", "--map", "analytics=clx"],
     "astro-env: pulumi stack output --stack typo: error: no stack named 'typo' found\n"),
])
def test_bad_input_is_one_clear_line_and_nothing_is_called(env, args, message):
    result = run(env, *args)
    assert (result.returncode, result.stderr) == (2, message)
    assert astro_calls(env) == []


def test_a_map_file_without_its_stack_is_refused(env, tmp_path):
    path = map_file(tmp_path, "old", {"analytics": ANALYTICS})
    result = run(env, "--map-file", path)
    assert (result.returncode, result.stderr) == (2, (
        f"astro-env: --map-file {path}: expected `stack: STACK` and `deployments:` (remote-kpo Deployment name: "
        "Astro Deployment id), optionally `workspaceId:`\n"))


def test_outputs_read_without_show_secrets_are_refused(env, tmp_path):
    set_outputs(env, "prod", {**stack_outputs(), "airflowConnections": "[secret]"})
    result = run(env, "--stack", "prod", "--map", f"analytics={ANALYTICS}")
    assert result.stderr == ("astro-env: --map (stack prod): `airflowConnections` is not the connections "
                             "(read the outputs with --show-secrets)\n")
    assert astro_calls(env) == []


def test_without_astro_api_token_nothing_is_called_and_the_line_says_what_token(env):
    env = {key: value for key, value in env.items() if key != "ASTRO_API_TOKEN"}
    result = run(env, "--stack", "prod", "--map", f"analytics={ANALYTICS}")
    assert (result.returncode, result.stderr) == (2, (
        "astro-env: ASTRO_API_TOKEN is not set: the Astro CLI needs a Workspace or Organization API token that "
        "may edit the Deployments' environment variables (--dry-run needs none)\n"))
    assert astro_calls(env) == []
    assert run(env, "--stack", "prod", "--map", f"analytics={ANALYTICS}", "--dry-run").returncode == 0
