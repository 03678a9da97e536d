"""scripts/astro-env against a stand-in `astro` on PATH that records its argv and answers as the
Astro CLI does: `create` skips (and says so) a key the Deployment already has."""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from components import kubeconfig as kc
from components.gpu import gpu_task
from config import GpuPool
from harness import ROOT

TOKEN = "s3cr3t-token-value"
ANALYTICS, ML = "clx0analytics", "clx0mltraining"

# The stand-in: appends its argv to $ASTRO_CALLS (one JSON list a line); keeps the keys each
# Deployment has in $ASTRO_STATE; fails a Deployment id starting with "bad".
STAND_IN = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["ASTRO_CALLS"], "a") as calls:
    calls.write(json.dumps(args) + "\n")
state_file = os.environ["ASTRO_STATE"]
state = json.load(open(state_file)) if os.path.exists(state_file) else {}
verb, pair, deployment = args[2], args[3], args[args.index("--deployment-id") + 1]
if deployment.startswith("bad"):
    print(f"Error: deployment {deployment} not found; value was {pair}", file=sys.stderr)
    sys.exit(1)
key = pair.split("=", 1)[0]
keys = state.setdefault(deployment, [])
if verb == "create" and key in keys:
    print(f"key {key} already exists, skipping creation. Use the update command to update existing variables")
    sys.exit(1)
keys.append(key) if key not in keys else None
json.dump(state, open(state_file, "w"))
print("Updated list of your Deployment's variables:")
'''


def stack_outputs(gpu: bool = False) -> dict:
    def conn(namespace):
        doc = kc.kubeconfig(cluster_name="c", server="https://k", ca_data="Q0E=", namespace=namespace,
                            user_name="u", user=kc.token_user(TOKEN))
        return kc.to_json(kc.airflow_connection(doc, namespace))

    outputs = {"deployments": {"analytics": {"namespace": "kpo-analytics", "connectionId": "kpo_analytics",
                                             "envVar": "AIRFLOW_CONN_KPO_ANALYTICS"},
                               "ml-training": {"namespace": "kpo-ml-training", "connectionId": "kpo_ml_training",
                                               "envVar": "AIRFLOW_CONN_KPO_ML_TRAINING"}},
               "airflowConnections": {"analytics": conn("kpo-analytics"), "ml-training": conn("kpo-ml-training")}}
    if gpu:
        outputs["gpuTask"] = gpu_task("gke", GpuPool(enabled=True))
    return outputs


@pytest.fixture
def astro(tmp_path) -> dict:
    """An environment whose PATH has the stand-in `astro` first; its record files."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "astro").write_text(STAND_IN)
    (folder / "astro").chmod(0o755 | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "ASTRO_API_TOKEN": "astro-api-token",
            "ASTRO_CALLS": str(tmp_path / "calls.jsonl"), "ASTRO_STATE": str(tmp_path / "state.json")}


def run(env: dict, tmp_path: Path, *args: str, outputs: dict | None = None) -> subprocess.CompletedProcess:
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs or stack_outputs()))
    return subprocess.run([str(ROOT / "scripts/astro-env"), "--outputs", str(outputs_file), *args],
                          env=env, capture_output=True, text=True)


def calls(env: dict) -> list[list[str]]:
    path = Path(env["ASTRO_CALLS"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_each_mapped_deployment_gets_its_connection_as_a_secret_variable(astro, tmp_path):
    result = run(astro, tmp_path, "--map", f"analytics={ANALYTICS}", "--map", f"ml-training={ML}")
    assert result.returncode == 0, result.stderr
    outputs = stack_outputs()
    assert calls(astro) == [
        ["deployment", "variable", "create", f"AIRFLOW_CONN_KPO_ANALYTICS={outputs['airflowConnections']['analytics']}",
         "--deployment-id", ANALYTICS, "--secret"],
        ["deployment", "variable", "create",
         f"AIRFLOW_CONN_KPO_ML_TRAINING={outputs['airflowConnections']['ml-training']}",
         "--deployment-id", ML, "--secret"],
    ]
    assert result.stdout.splitlines() == [f"analytics -> {ANALYTICS}: AIRFLOW_CONN_KPO_ANALYTICS created",
                                          f"ml-training -> {ML}: AIRFLOW_CONN_KPO_ML_TRAINING created"]


def test_a_rerun_updates_the_variable_the_deployment_already_has(astro, tmp_path):
    assert run(astro, tmp_path, "--map", f"analytics={ANALYTICS}").returncode == 0
    second = run(astro, tmp_path, "--map", f"analytics={ANALYTICS}")
    assert second.returncode == 0, second.stderr
    assert [call[2] for call in calls(astro)] == ["create", "create", "update"]
    assert calls(astro)[-1][3:] == calls(astro)[0][3:]
    assert second.stdout == f"analytics -> {ANALYTICS}: AIRFLOW_CONN_KPO_ANALYTICS updated\n"


def test_the_mapping_comes_from_a_yaml_file_and_unmapped_deployments_are_left_out(astro, tmp_path):
    (tmp_path / "map.yaml").write_text(f"ml-training: {ML}\n")
    result = run(astro, tmp_path, "--map-file", str(tmp_path / "map.yaml"))
    assert result.returncode == 0
    assert [call[4:] for call in calls(astro)] == [["--deployment-id", ML, "--secret"]]
    assert result.stderr == "astro-env: analytics: not in the mapping, left out\n"


def test_a_gpu_stack_also_sets_the_gpu_task_variable_not_secret(astro, tmp_path):
    result = run(astro, tmp_path, "--map", f"analytics={ANALYTICS}", outputs=stack_outputs(gpu=True))
    assert result.returncode == 0
    gpu_call = calls(astro)[1]
    key, _, value = gpu_call[3].partition("=")
    assert key == "AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_ANALYTICS"
    assert json.loads(value) == gpu_task("gke", GpuPool(enabled=True))
    assert "--secret" not in gpu_call


def test_dry_run_prints_the_calls_with_the_secret_masked_and_calls_nothing(astro, tmp_path):
    result = run(astro, tmp_path, "--map", f"analytics={ANALYTICS}", "--map", f"ml-training={ML}", "--dry-run")
    assert result.returncode == 0
    assert calls(astro) == []
    assert result.stdout.splitlines() == [
        f"astro deployment variable create 'AIRFLOW_CONN_KPO_ANALYTICS=******' --deployment-id {ANALYTICS} --secret"
        "   # update if it exists",
        f"astro deployment variable create 'AIRFLOW_CONN_KPO_ML_TRAINING=******' --deployment-id {ML} --secret"
        "   # update if it exists"]
    assert TOKEN not in result.stdout + result.stderr


def test_a_failing_astro_call_is_one_line_with_the_secret_masked(astro, tmp_path):
    result = run(astro, tmp_path, "--map", "analytics=bad-id")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] + "\n" == ("astro-env: analytics: astro deployment variable for AIRFLOW_CONN_KPO_ANALYTICS on "
                             "bad-id failed: Error: deployment bad-id not found; value was "
                             "AIRFLOW_CONN_KPO_ANALYTICS=******\n")
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize("args, message", [
    (["--map", "nobody=clx"], "astro-env: --map names nobody, not a Deployment of the stack "
                              "(it has: analytics, ml-training)\n"),
    (["--map", "analytics"], "astro-env: --map analytics: expected NAME=ASTRO_DEPLOYMENT_ID\n"),
    ([], "astro-env: no mapping: give --map NAME=ASTRO_DEPLOYMENT_ID or --map-file FILE\n"),
    (["--map-file", "/nonexistent.yaml"], "astro-env: --map-file /nonexistent.yaml: No such file or directory\n"),
])
def test_bad_mapping_is_one_clear_line_and_nothing_is_called(astro, tmp_path, args, message):
    result = run(astro, tmp_path, *args)
    assert (result.returncode, result.stderr) == (2, message)
    assert calls(astro) == []


def test_outputs_read_without_show_secrets_are_refused(astro, tmp_path):
    outputs = {**stack_outputs(), "airflowConnections": "[secret]"}
    result = run(astro, tmp_path, "--map", f"analytics={ANALYTICS}", outputs=outputs)
    assert result.stderr == ("astro-env: `airflowConnections` is not the connections "
                             "(read the outputs with --show-secrets)\n")


def test_without_astro_api_token_nothing_is_called_and_the_line_says_what_token(astro, tmp_path):
    env = {key: value for key, value in astro.items() if key != "ASTRO_API_TOKEN"}
    result = run(env, tmp_path, "--map", f"analytics={ANALYTICS}")
    assert (result.returncode, result.stderr) == (2, (
        "astro-env: ASTRO_API_TOKEN is not set: the Astro CLI needs a Workspace or Organization API token that "
        "may edit the Deployments' environment variables (--dry-run needs none)\n"))
    assert calls(env) == []
    assert run(env, tmp_path, "--map", f"analytics={ANALYTICS}", "--dry-run").returncode == 0
