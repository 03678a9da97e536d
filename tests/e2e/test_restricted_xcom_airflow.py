"""A `podSecurity: restricted` Deployment's XCom tasks, through real Airflow and the real API server.

KPO's XCom sidecar (apache-airflow-providers-cncf-kubernetes 10.25.0 utils/xcom_sidecar.py: alpine,
no securityContext, root) is refused by Pod Security admission in a restricted namespace. The
stack puts a restricted sidecar security context, and the Deployment's own sidecar image, in the
exported connection (components/pod_security.py), and exports `restrictedTask`, the pod and
container security contexts the task itself passes.

A stack of its own (`restricted`, one Deployment) is `up`ped on the session cluster; one Airflow
process runs, through its connections:
- the README's restricted XCom task through the exported connection: admitted, runs, its sidecar
  from the mirror image, XCom read through exec;
- the same task through the connection as it was before (no sidecar security context): refused,
  naming the sidecar only;
- a plain XCom task (no `restrictedTask`) through the exported connection: refused, naming the
  task's own container.
"""

import json
import subprocess

import pytest

from airflow_runner import AIRFLOW_PYTHON, RUN_DAG, migrated_airflow_env
from test_kpo_airflow import pod_is_gone
from watch import Watch

MIRROR = "registry.e2e.example:5000/mirror/alpine:3.24.2"
RESTRICTED_CONFIG = {
    "cloud": "existing",
    "clusterName": "remote-kpo-restricted",
    "deployments": [{"name": "strict", "podSecurity": "restricted", "xcomSidecarImage": MIRROR}],
}
CONN_ID = "kpo_strict"
# The exported connection without the sidecar security context: what it was before the fix.
UNFIXED_CONN_ID = "kpo_strict_unfixed"
SIDECAR = "airflow-xcom-sidecar"


def dag(scenario: str, conn_id: str = CONN_ID) -> str:
    return f"kpo_{scenario}__{conn_id}"


RUNS = [dag("xcom_restricted"), dag("xcom_restricted", UNFIXED_CONN_ID), dag("xcom")]


@pytest.fixture(scope="module")
def restricted_outputs(pulumi_cli) -> dict:
    pulumi_cli.write_stack("restricted", RESTRICTED_CONFIG)
    pulumi_cli.run("stack", "init", "restricted")
    pulumi_cli.run("up", "--yes", "--stack", "restricted")
    return pulumi_cli.outputs("restricted")


def unfixed(connection: str) -> str:
    document = json.loads(connection)
    del document["extra"]["xcom_sidecar_container_security_context"]
    return json.dumps(document)


@pytest.fixture(scope="module")
def runs(restricted_outputs, cluster_env, tmp_path_factory):
    """(run_dag.py's report per DAG, the namespace's pods as watched, Airflow's log per DAG)."""
    env = migrated_airflow_env(
        restricted_outputs, ["strict"], cluster_env["PATH"], tmp_path_factory.mktemp("airflow-restricted"),
        REMOTE_KPO_E2E_RESTRICTED_TASK=json.dumps(restricted_outputs["restrictedTask"]),
        REMOTE_KPO_E2E_CONN_IDS=f"{CONN_ID},{UNFIXED_CONN_ID}",
        AIRFLOW_CONN_KPO_STRICT_UNFIXED=unfixed(restricted_outputs["airflowConnections"]["strict"]))
    out = tmp_path_factory.mktemp("restricted-runs") / "runs.json"
    namespace = restricted_outputs["deployments"]["strict"]["namespace"]
    with Watch(cluster_env, "pods", "-n", namespace) as pods:
        done = subprocess.run([str(AIRFLOW_PYTHON), str(RUN_DAG), str(out), *RUNS],
                              env=env, capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    logs = {}
    for chunk in output.split("=== dag.test ")[1:]:
        name, _, text = chunk.partition(" ===\n")
        logs[name] = text
    return {entry["dag_id"]: entry for entry in json.loads(out.read_text())}, pods.events(), logs


def refusal(failure: dict) -> str:
    """What the task raised, with the API server's JSON body unescaped (ApiException quotes it)."""
    return "\n".join([failure["message"], *failure["causes"]]).replace('\\"', '"')


def test_the_namespace_enforces_restricted(restricted_outputs, kubectl):
    namespace = json.loads(kubectl("get", "namespace", "kpo-strict", "-o", "json").stdout)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert restricted_outputs["deployments"]["strict"]["namespace"] == "kpo-strict"


def test_a_restricted_xcom_task_is_admitted_and_runs_with_the_sidecar_from_the_connection(runs, kubectl):
    reports, pods, logs = runs
    run = reports[dag("xcom_restricted")]
    assert run["state"] == "success", logs[dag("xcom_restricted")][-3000:]
    xcom = run["tasks"]["run_pod"]["xcom"]
    created = next(e.object for e in pods if e.name == xcom["pod_name"])
    containers = {c["name"]: c for c in created["spec"]["containers"]}
    assert containers[SIDECAR]["image"] == MIRROR
    assert containers[SIDECAR]["securityContext"]["runAsNonRoot"] is True
    assert created["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # It ran on the (fake) node, and KPO read the XCom through exec into the sidecar.
    assert any(e.object["status"].get("phase") == "Running" for e in pods if e.name == xcom["pod_name"])
    assert "Running command... if [ -s /airflow/xcom/return.json ]" in logs[dag("xcom_restricted")]
    assert pod_is_gone(kubectl, xcom["pod_name"], xcom["pod_namespace"])


def test_without_the_connections_sidecar_security_context_the_same_task_is_refused(runs):
    reports, pods, _ = runs
    run = reports[dag("xcom_restricted", UNFIXED_CONN_ID)]
    assert run["state"] == "failed"
    [failure] = run["failures"]
    text = refusal(failure)
    assert 'violates PodSecurity "restricted:latest"' in text, text
    assert f'container "{SIDECAR}" must set securityContext.allowPrivilegeEscalation=false' in text
    # The task's own container passed: only the provider's default sidecar broke the rules.
    assert 'container "base"' not in text
    # Refused by admission: no pod was ever stored.
    assert not [e for e in pods if e.object["metadata"]["labels"].get("dag_id") == run["dag_id"]]


def test_a_task_without_the_restricted_task_shape_is_refused_naming_its_own_container(runs):
    reports, _, _ = runs
    run = reports[dag("xcom")]
    assert run["state"] == "failed"
    [failure] = run["failures"]
    text = refusal(failure)
    assert 'violates PodSecurity "restricted:latest"' in text, text
    assert 'container "base" must set securityContext.allowPrivilegeEscalation=false' in text
    assert f'container "{SIDECAR}"' not in text
