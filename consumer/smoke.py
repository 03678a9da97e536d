"""scripts/smoke (`make smoke STACK=...`): run dags/remote_kpo_smoke.py once, locally, with the
Airflow of .venv-airflow (`make test-venvs`), through a stack's exported connections, as an Astro
Deployment would after scripts/astro-env.

The Airflow environment: each Deployment's connection as its `envVar` (AIRFLOW_CONN_*), the `task`
and `gpuTask` outputs as the Variables scripts/astro-env names, and a temporary migrated AIRFLOW_HOME.
When the stack's cluster is the local one (scripts/local-cluster: kwok), the Variable
`remote_kpo_smoke` makes the pods tolerate kwok's node, and the GPU task is skipped: kwok's node has no GPU, so a GPU pod would only wait
out its startup timeout and fail a run whose connections work (scripts/verify's admission step
still checks the GPU shape there).

Usage: scripts/smoke [--stack S]. Prints each task's state; exit status 0 only when the run succeeded.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import yaml

from consumer.astro_env import GPU_VARIABLE_PREFIX, shape_variables
from consumer.inputs import InputError, run_pulumi_outputs, targets_from_outputs

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
RUN_DAG = ROOT / "consumer" / "run_dag.py"
DAG_ID = "remote_kpo_smoke"
# scripts/local-cluster taints its fake node so only pods meant for kwok land there.
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}


def migrated_airflow_env(outputs: dict, deployments: list[str], path: str, home: Path,
                         dags_folder: Path = ROOT / "dags", **extra: str) -> dict:
    """A migrated Airflow home holding `deployments`' exported connections as AIRFLOW_CONN_*
    variables, as an Astro Deployment holds them; `extra` adds variables (Airflow Variables...)."""
    infos = {name: outputs["deployments"][name] for name in deployments}
    env = {"PATH": path, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           # Parsing the DAG file takes seconds; on a loaded CI machine more than the default 30 s.
           "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
           **{info["envVar"]: outputs["airflowConnections"][name] for name, info in infos.items()},
           **extra}
    migrated = subprocess.run([str(AIRFLOW_PYTHON), "-m", "airflow", "db", "migrate"], env=env,
                              capture_output=True, text=True, timeout=300)
    if migrated.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrated.stdout}{migrated.stderr}")
    return env


def local_server() -> Optional[str]:
    """The local cluster's API server (its admin kubeconfig), when scripts/local-cluster made one."""
    kubeconfig = Path(os.environ.get("REMOTE_KPO_CLUSTER_DIR", ROOT / ".toolchain" / "cluster")) / "admin.kubeconfig"
    if not kubeconfig.is_file():
        return None
    return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]


def smoke_variables(outputs: dict, stack: str) -> dict:
    """The Airflow Variables for this stack's cluster: the task shapes scripts/astro-env sets, and on
    the local cluster kwok's adaptations instead of the GPU task shape."""
    servers = {cluster["cluster"]["server"] for target in targets_from_outputs(outputs, stack)
               for cluster in target.kube_config["clusters"]}
    variables = {key: value for info in outputs["deployments"].values()
                 for key, value in shape_variables(outputs, info["connectionId"]).items()}
    if servers == {local_server()}:
        if outputs.get("gpuTask"):
            print(f"smoke: stack {stack} is on the local cluster, whose kwok node has no GPU: skipping gpu_pod")
        variables = {key: value for key, value in variables.items() if not key.startswith(GPU_VARIABLE_PREFIX)}
        variables["AIRFLOW_VAR_REMOTE_KPO_SMOKE"] = json.dumps({"tolerations": [KWOK_TOLERATION]})
    return variables


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    stack = parser.parse_args(argv).stack
    if not AIRFLOW_PYTHON.exists():
        print(f"smoke: no Airflow at {AIRFLOW_PYTHON}: run `make test-venvs`", file=sys.stderr)
        return 2
    try:
        outputs = run_pulumi_outputs(stack)
        variables = smoke_variables(outputs, stack)
    except InputError as error:
        print(f"smoke: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="remote-kpo-smoke-") as home:
        env = migrated_airflow_env(outputs, sorted(outputs["deployments"]), os.environ["PATH"], Path(home),
                                   **variables)
        report = Path(home) / "runs.json"
        # Airflow's log goes to this terminal; the task log's "remote-kpo smoke:" line says what failed.
        subprocess.run([str(AIRFLOW_PYTHON), str(RUN_DAG), str(report), DAG_ID], env=env, check=False)
        if not report.exists():
            print("smoke: Airflow did not finish the run (see its output above)", file=sys.stderr)
            return 1
        [run] = json.loads(report.read_text())
    print(f"smoke: stack {stack}, DAG {DAG_ID}: {run['state']}")
    for key in sorted(run["tasks"]):
        print(f"  {key:28} {run['tasks'][key]['state']}")
    return 0 if run["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
