"""Airflow itself runs KubernetesPodOperator tasks through the connections the real `pulumi up`
exported, against the real API server, with the RBAC the stack created and nothing more.

Airflow (apache-airflow + cncf.kubernetes, .venv-airflow) runs as a subprocess with its own
AIRFLOW_HOME and sqlite database, and only the AIRFLOW_CONN_* variables an Astro deploy would set
from the `airflowConnections` output. `dag.test()` runs the DAGs of kpo_dags/dags/ one after the
other in one process (consumer/run_dag.py), so Airflow's start-up is paid once. The pods run on the
local cluster's kwok node, which takes them to Running and then Succeeded, or Failed when the DAG
asks for it (scripts/go/kwok/stages.yaml); exec into KPO's XCom sidecar goes for real through the
API server to the fake node's kubelet endpoint (kwok-front), which answers with canned replies and
runs nothing.
"""

import json
import subprocess
import time
from dataclasses import dataclass

import pytest

from airflow_runner import AIRFLOW_PYTHON, RUN_DAG, migrated_airflow_env
from realenv import can_i
TRIGGER = "airflow.providers.cncf.kubernetes.triggers.pod.KubernetesPodTrigger"


def dag_id(scenario: str, deployment: str) -> str:
    return f"kpo_{scenario}__kpo_{deployment.replace('-', '_')}"


RUNS = [dag_id("success", "analytics"), dag_id("success", "ml-training"), dag_id("deferrable", "analytics"),
        dag_id("failure", "ml-training"), dag_id("xcom", "analytics"), dag_id("xcom", "ml-training")]


@dataclass
class DagRuns:
    runs: dict    # dag_id -> the runner's report of that run
    logs: dict    # dag_id -> what Airflow logged during that run

    def task(self, dag: str, task_id: str = "run_pod") -> dict:
        return self.runs[dag]["tasks"][task_id]


@pytest.fixture(scope="module")
def airflow_env(dev_outputs, cluster_env, tmp_path_factory) -> dict:
    """An Airflow deployment's environment: the exported connections, a fresh metadata database."""
    return migrated_airflow_env(dev_outputs, list(dev_outputs["deployments"]), cluster_env["PATH"],
                                tmp_path_factory.mktemp("airflow-home"))


@pytest.fixture(scope="module")
def dag_runs(airflow_env, tmp_path_factory) -> DagRuns:
    folder = tmp_path_factory.mktemp("dag-runs")
    out, log = folder / "runs.json", folder / "airflow.log"
    with log.open("w") as log_file:
        runner = subprocess.Popen([str(AIRFLOW_PYTHON), str(RUN_DAG), str(out), *RUNS],
                                  env=airflow_env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            # Only turns a hang (a task that never ends) into a failure; the runs take ~30 s.
            runner.wait(timeout=240)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
    output = log.read_text()
    assert runner.returncode == 0, f"{log}:\n{output[-5000:]}"
    runs = {entry["dag_id"]: entry for entry in json.loads(out.read_text())}
    assert sorted(runs) == sorted(RUNS), output[-5000:]
    logs = {}
    for chunk in output.split("=== dag.test ")[1:]:
        name, _, text = chunk.partition(" ===\n")
        logs[name] = text
    return DagRuns(runs, logs)


def pod_is_gone(kubectl, name: str, namespace: str) -> bool:
    """KPO deleted the pod (on_finish_action=delete_pod); kwok lets a deleted pod go at once."""
    for _ in range(60):
        found = kubectl("get", "pod", name, "-n", namespace, "-o", "name", check=False)
        if "NotFound" in found.stderr:
            return True
        time.sleep(0.5)
    return False


def pod_events(kubectl, name: str, namespace: str) -> list[str]:
    """What the scheduler and the (fake) kubelet reported about the pod; events outlive it."""
    listed = kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                     "-o", "json")
    return [f"{event['reason']}: {event.get('message', '')}" for event in json.loads(listed.stdout)["items"]]


@pytest.mark.parametrize("deployment", ["analytics", "ml-training"])
def test_a_kpo_task_runs_its_pod_in_the_deployments_namespace_and_the_pod_is_deleted(
        dag_runs, dev_outputs, kubectl, deployment):
    dag = dag_id("success", deployment)
    namespace = dev_outputs["deployments"][deployment]["namespace"]
    assert dag_runs.runs[dag]["state"] == "success", dag_runs.logs[dag][-3000:]
    task = dag_runs.task(dag)
    assert task["state"] == "success"
    # No namespace in the DAG: the pod went where the connection says.
    assert task["xcom"]["pod_namespace"] == namespace
    pod = task["xcom"]["pod_name"]
    events = pod_events(kubectl, pod, namespace)
    assert any(e.startswith("Scheduled:") and "kwok-node-0" in e for e in events), events
    assert any(e.startswith("Started:") for e in events), events
    assert pod_is_gone(kubectl, pod, namespace)
    assert kubectl("get", "pods", "-n", namespace, "-l", f"dag_id={dag}", "-o", "name").stdout.strip() == ""


def test_a_deferrable_kpo_task_completes_through_its_trigger_and_reads_the_pod_log(
        dag_runs, dev_outputs, kubectl):
    dag = dag_id("deferrable", "analytics")
    assert dag_runs.runs[dag]["state"] == "success", dag_runs.logs[dag][-3000:]
    # dag.test() ran the task up to its deferral, the trigger in line until the pod finished, then
    # the task again from the trigger's event.
    assert dag_runs.runs[dag]["triggers"] == [{"classpath": TRIGGER, "task_id": "run_pod", "status": "success"}]
    # The container log came back through pods/log (the fake kubelet's fixed log line).
    assert "[base] logs: kwok: fake container on kwok-node-0" in dag_runs.logs[dag]
    task = dag_runs.task(dag)
    assert task["xcom"]["pod_namespace"] == dev_outputs["deployments"]["analytics"]["namespace"]
    assert pod_is_gone(kubectl, task["xcom"]["pod_name"], task["xcom"]["pod_namespace"])


def test_a_pod_that_fails_fails_the_task_and_is_still_deleted(dag_runs, kubectl):
    dag = dag_id("failure", "ml-training")
    # Reaching here at all means no hang: the run ended within the runner's timeout.
    assert dag_runs.runs[dag]["state"] == "failed"
    task = dag_runs.task(dag)
    assert task["state"] == "failed"
    pod, namespace = task["xcom"]["pod_name"], task["xcom"]["pod_namespace"]
    [failure] = dag_runs.runs[dag]["failures"]
    assert failure["type"] == "AirflowException"
    assert failure["message"].startswith(f"Pod {pod} returned a failure.")
    # KPO's message carries the pod as it last saw it: failed by its container's exit code.
    assert "'phase': 'Failed'" in failure["message"] and "'exit_code': 3" in failure["message"]
    assert pod_is_gone(kubectl, pod, namespace)


def test_xcom_push_on_a_deployment_without_xcom_is_refused_exec_and_fails_the_task(
        dag_runs, dev_outputs, kubectl, tmp_path):
    dag = dag_id("xcom", "ml-training")
    namespace = dev_outputs["deployments"]["ml-training"]["namespace"]
    assert dag_runs.runs[dag]["state"] == "failed"
    task = dag_runs.task(dag)
    assert task["state"] == "failed"
    [failure] = dag_runs.runs[dag]["failures"]
    causes = "\n".join(failure["causes"])
    # The API server, not Airflow, refused the exec into the XCom sidecar.
    assert "Handshake status 403 Forbidden" in causes
    assert (f'User \\"system:serviceaccount:{namespace}:remote-kpo\\" cannot get resource \\"pods/exec\\"'
            in causes), causes
    # The same answer from the authorizer for the exported kubeconfig.
    kubeconfig = tmp_path / "ml-training.json"
    kubeconfig.write_text(dev_outputs["kubeconfigs"]["ml-training"])
    assert not can_i(kubectl, kubeconfig, "create", "pods/exec", namespace)
    assert not can_i(kubectl, kubeconfig, "get", "pods/exec", namespace)
    assert pod_is_gone(kubectl, task["xcom"]["pod_name"], namespace)


def test_xcom_push_on_a_deployment_with_xcom_execs_into_the_sidecar_and_succeeds(
        dag_runs, dev_outputs, kubectl, local_cluster_dir, tmp_path):
    dag = dag_id("xcom", "analytics")
    namespace = dev_outputs["deployments"]["analytics"]["namespace"]
    assert dag_runs.runs[dag]["state"] == "success", dag_runs.logs[dag][-3000:]
    logs = dag_runs.logs[dag]
    # KPO's two execs into the sidecar: read the result file, then stop the sidecar. The fake
    # node's kubelet endpoint answered both: the result is its canned file, pushed as the XCom.
    assert "Running command... if [ -s /airflow/xcom/return.json ]" in logs
    assert "Running command... kill -2" in logs
    assert "Forbidden" not in logs and "stderr from command" not in logs
    task = dag_runs.task(dag)
    canned = json.loads((local_cluster_dir / "kwok" / "xcom-result.json").read_text())
    assert task["xcom"]["return_value"] == canned
    kubeconfig = tmp_path / "analytics.json"
    kubeconfig.write_text(dev_outputs["kubeconfigs"]["analytics"])
    assert can_i(kubectl, kubeconfig, "create", "pods/exec", namespace)
    assert can_i(kubectl, kubeconfig, "get", "pods/exec", namespace)
    assert pod_is_gone(kubectl, task["xcom"]["pod_name"], namespace)
