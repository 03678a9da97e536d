"""Airflow's KubernetesPodOperator (issue 16) through the task-pods stack's exported connections:
a task that names `service_account_name="remote-kpo-task"` runs as it, and a task that names
nothing gets the registries pull Secret from `default`, with no image_pull_secrets in the DAG."""

import json
import subprocess

import pytest

from airflow_runner import AIRFLOW_PYTHON, RUN_DAG, migrated_airflow_env
from test_kpo_airflow import dag_id, pod_events

RUNS = [dag_id("task_sa", "tp-task"), dag_id("kept", "tp-pull")]


@pytest.fixture(scope="module")
def task_dag_runs(task_pods_outputs, cluster_env, tmp_path_factory) -> dict:
    env = migrated_airflow_env(task_pods_outputs, list(task_pods_outputs["deployments"]), cluster_env["PATH"],
                               tmp_path_factory.mktemp("airflow-home-tasks"))
    out = tmp_path_factory.mktemp("task-dag-runs") / "runs.json"
    done = subprocess.run([str(AIRFLOW_PYTHON), str(RUN_DAG), str(out), *RUNS],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    return {entry["dag_id"]: entry for entry in json.loads(out.read_text())}


def test_a_kpo_task_naming_remote_kpo_task_runs_as_it_through_the_exported_connection(task_dag_runs, kubectl):
    run = task_dag_runs[dag_id("task_sa", "tp-task")]
    assert run["state"] == "success"
    xcom = run["tasks"]["run_pod"]["xcom"]
    pod, namespace = xcom["pod_name"], xcom["pod_namespace"]
    assert namespace == "kpo-tp-task"
    kept = json.loads(kubectl("get", "pod", pod, "-n", namespace, "-o", "json").stdout)
    assert kept["spec"]["serviceAccountName"] == "remote-kpo-task"
    assert kept["spec"]["imagePullSecrets"] == [{"name": "remote-kpo-registries"}]
    assert kept["status"]["phase"] == "Succeeded"
    kubectl("delete", "pod", pod, "-n", namespace, "--wait=false")


def test_a_kpo_task_naming_no_pull_secret_gets_it_from_the_default_service_account(task_dag_runs, kubectl):
    run = task_dag_runs[dag_id("kept", "tp-pull")]
    assert run["state"] == "success"
    xcom = run["tasks"]["run_pod"]["xcom"]
    pod, namespace = xcom["pod_name"], xcom["pod_namespace"]
    kept = json.loads(kubectl("get", "pod", pod, "-n", namespace, "-o", "json").stdout)
    assert kept["spec"]["serviceAccountName"] == "default"
    assert kept["spec"]["imagePullSecrets"] == [{"name": "remote-kpo-registries"}]
    assert any(e.startswith("Scheduled:") for e in pod_events(kubectl, pod, namespace))
    kubectl("delete", "pod", pod, "-n", namespace, "--wait=false")
