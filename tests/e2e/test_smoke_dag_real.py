"""dags/remote_kpo_smoke.py, the DAG an Astro user copies, run by Airflow (`dag.test()`) through the
connections the real `pulumi up` exported, on the local cluster.

As on Astro, the connections are AIRFLOW_CONN_KPO_* variables, and the task shapes are the
Variables scripts/astro-env sets: the dev stack's `task` output for each connection, the GPU task
shape for kpo_ml_training only (the Deployment whose quota has GPUs). The Variable `remote_kpo_smoke`
adapts the pods to kwok: they tolerate the fake node's taint (and follow their logs, which the
fake kubelet ends once the container has). kwok's one node has no GPU: the GPU pod is created with the GPU shape and no
node takes it, so it stays Pending until the task's scheduling timeout (the gpuTask's
startupTimeoutSeconds, shortened here) fails it. While it runs, the dev stack's namespaces enforce
the restricted Pod Security Standard (a Deployment's `podSecurity: restricted`), so every pod the
DAG starts has to meet it to be created at all.
"""

import json
import subprocess

import pytest

from components.gpu import gpu_task
from config import GpuPool
from realenv import ROOT
from consumer.astro_env import shape_variables
from consumer.smoke import KWOK_TOLERATION
from airflow_runner import AIRFLOW_PYTHON, RUN_DAG, migrated_airflow_env
from test_kpo_airflow import pod_events, pod_is_gone
from watch import Event, Watch

GPU_STARTUP_SECONDS = 5


def run_smoke(env: dict, folder) -> tuple[dict, str]:
    """One `dag.test()` of remote_kpo_smoke: (the runner's report of the run, what Airflow logged)."""
    out, log = folder / "runs.json", folder / "airflow.log"
    with log.open("w") as log_file:
        runner = subprocess.run([str(AIRFLOW_PYTHON), str(RUN_DAG), str(out), "remote_kpo_smoke"],
                                env=env, stdout=log_file, stderr=subprocess.STDOUT, timeout=300)
    output = log.read_text()
    assert runner.returncode == 0, output[-5000:]
    [run] = json.loads(out.read_text())
    return run, output


@pytest.fixture(scope="module")
def smoke_env(dev_outputs, cluster_env, tmp_path_factory) -> dict:
    task_variables = {key: value for info in dev_outputs["deployments"].values()
                      for key, value in shape_variables({"task": dev_outputs["task"]}, info["connectionId"]).items()}
    return migrated_airflow_env(
        dev_outputs, list(dev_outputs["deployments"]), cluster_env["PATH"], tmp_path_factory.mktemp("smoke-airflow-home"),
        dags_folder=ROOT / "dags", **task_variables,
        AIRFLOW_VAR_REMOTE_KPO_SMOKE=json.dumps({"tolerations": [KWOK_TOLERATION]}),
        AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_ML_TRAINING=json.dumps(
            {**gpu_task("gke", GpuPool(enabled=True)), "startupTimeoutSeconds": GPU_STARTUP_SECONDS}))


@pytest.fixture(scope="module")
def restricted(kubectl, dev_outputs) -> list[str]:
    """The dev stack's namespaces at restricted for this module, then back at the stack's baseline."""
    namespaces = sorted(info["namespace"] for info in dev_outputs["deployments"].values())
    for namespace in namespaces:
        kubectl("label", "--overwrite", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    yield namespaces
    for namespace in namespaces:
        kubectl("label", "--overwrite", "namespace", namespace, "pod-security.kubernetes.io/enforce=baseline")


@pytest.fixture(scope="module")
def smoke_run(smoke_env, restricted, cluster_env, tmp_path_factory) -> tuple[dict, str, list[Event]]:
    """The run, Airflow's log, and the pods of the dev stack's namespaces as the API server had them."""
    with Watch(cluster_env, "pods", "--all-namespaces") as pods:
        run, log = run_smoke(smoke_env, tmp_path_factory.mktemp("smoke-run"))
    return run, log, pods.events()


def test_the_namespaces_refuse_a_pod_that_does_not_meet_restricted(restricted, kubectl):
    # What the smoke pods are measured against: busybox as KPO builds it without security contexts.
    for namespace in restricted:
        result = kubectl("run", "not-restricted", "--image=busybox:1.36", "--restart=Never", "-n", namespace,
                         "--dry-run=server", check=False)
        assert result.returncode == 1
        assert 'violates PodSecurity "restricted:latest"' in result.stderr, result.stderr


@pytest.mark.parametrize("index, conn_id, namespace", [(0, "kpo_analytics", "kpo-analytics"),
                                                        (1, "kpo_ml_training", "kpo-ml-training")])
def test_the_smoke_dag_runs_one_pod_through_each_connection_it_finds(smoke_run, kubectl, index, conn_id, namespace):
    run, log, _ = smoke_run
    assert [pod["kubernetes_conn_id"] for pod in run["tasks"]["find_connections"]["xcom"]["return_value"]] == [
        "kpo_analytics", "kpo_ml_training"]
    task = run["tasks"][f"smoke_pod[{index}]"]
    assert task["state"] == "success", log[-3000:]
    assert task["xcom"]["pod_namespace"] == namespace
    events = pod_events(kubectl, task["xcom"]["pod_name"], namespace)
    assert any(e.startswith("Scheduled:") and "kwok-node-0" in e for e in events), events
    assert any(e.startswith("Started:") for e in events), events
    assert pod_is_gone(kubectl, task["xcom"]["pod_name"], namespace)
    # It followed its pod's log (get_logs), to the end the fake kubelet gives it.
    assert "kwok: fake container on kwok-node-0" in log


def test_the_smoke_pods_carry_the_task_output_from_the_variable_astro_env_sets(smoke_run, dev_outputs):
    run, _, pods = smoke_run
    names = {run["tasks"][f"smoke_pod[{i}]"]["xcom"]["pod_name"] for i in (0, 1)}
    seen = [e.object for e in pods if e.name in names]
    assert {pod["metadata"]["name"] for pod in seen} == names
    # The stack's task annotations, which keep each pod's node while it runs.
    annotations = dev_outputs["task"]["annotations"]
    assert annotations and all(pod["metadata"]["annotations"].items() >= annotations.items() for pod in seen)


def test_the_gpu_pod_goes_only_where_the_deployment_has_gpu_access_and_on_kwok_finds_no_gpu_node(
        smoke_run, kubectl):
    run, log, _ = smoke_run
    # Only kpo_ml_training has a GPU task shape, so one GPU pod, and it fails the run.
    assert sorted(key for key in run["tasks"] if key.startswith("gpu_pod")) == ["gpu_pod[0]"]
    assert run["tasks"]["gpu_pod[0]"]["state"] == "failed"
    assert run["state"] == "failed"
    pod = run["tasks"]["gpu_pod[0]"]["xcom"]["pod_name"]
    # The scheduler saw the GPU shape: the pool's node selector, which kwok's node does not match.
    events = pod_events(kubectl, pod, "kpo-ml-training")
    assert any(e.startswith("FailedScheduling:") and "didn't match Pod's node affinity/selector" in e
               for e in events), events
    assert not any(e.startswith("Scheduled:") for e in events), events
    # One line: KPO's wrapper, then the cause it buries under the pod's dump.
    assert (f"remote-kpo smoke: gpu_pod through connection kpo_ml_training failed: Pod {pod} returned a failure. "
            f"Caused by: Pod took too long to be scheduled on the cluster, giving up. More than "
            f"{GPU_STARTUP_SECONDS}s. Check the pod events in kubernetes. A GPU pod waits for a GPU node") in log
    # The pod was made, so the connection works: the line points at nodes and quotas, not at verify.
    (line,) = [line for line in log.splitlines() if "remote-kpo smoke: gpu_pod" in line]
    assert "scripts/verify" not in line
    # Then the pod's side, read with the connection while the pod was kept for it (no Karpenter here:
    # the scheduler's words are the cause), and the pod deleted by the DAG.
    summary = log[log.index(f"remote-kpo smoke: why kpo-ml-training/{pod} waited or ended"):]
    assert ("cause 1: no node takes the pod: 0/1 nodes are available: 1 node(s) didn't match Pod's node "
            "affinity/selector") in summary
    assert pod_is_gone(kubectl, pod, "kpo-ml-training")


def test_a_connection_that_is_not_remote_kpo_fails_the_smoke_dag_naming_it(smoke_env, tmp_path):
    env = {**smoke_env, "AIRFLOW_CONN_KPO_BROKEN": json.dumps({"conn_type": "kubernetes",
                                                              "extra": {"namespace": "kpo-broken"}})}
    run, log = run_smoke(env, tmp_path)
    assert run["state"] == "failed"
    assert run["tasks"]["find_connections"]["state"] == "failed"
    assert ("remote-kpo smoke: connection kpo_broken is not a remote-kpo connection (conn_type 'kubernetes', "
            "no kube_config in extra)") in log


def test_a_kubeconfig_in_the_deployments_environment_fails_the_smoke_dag_saying_what_it_breaks(
        smoke_env, cluster_env, tmp_path):
    env = {**smoke_env, "KUBECONFIG": cluster_env["KUBECONFIG"]}
    run, log = run_smoke(env, tmp_path)
    assert run["tasks"]["check_environment"]["state"] == "failed"
    assert (f"remote-kpo smoke: KUBECONFIG is set in this Deployment's environment ({cluster_env['KUBECONFIG']}): "
            "every deferrable KubernetesPodOperator task fails each trigger poll with \"Options kube_config_path, "
            "kube_config, in_cluster, and config_dict are mutually exclusive\"") in log
    # Sync pods do not read it: they still run.
    assert run["tasks"]["smoke_pod[0]"]["state"] == "success", log[-3000:]


def test_make_smoke_runs_the_smoke_dag_through_the_dev_stacks_connections_and_passes_without_gpu(
        dev_outputs, pulumi_cli):
    # What `make smoke` runs after sourcing env.sh, on this session's state and cluster.
    env = {key: value for key, value in pulumi_cli.env.items() if key != "KUBECONFIG"}
    result = subprocess.run([str(ROOT / "scripts" / "smoke"), "--stack", "dev"], cwd=pulumi_cli.cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    summary = result.stdout[result.stdout.index("smoke: stack dev, DAG remote_kpo_smoke: success"):].splitlines()
    states = dict(line.split() for line in summary[1:])
    assert states["smoke_pod[0]"] == states["smoke_pod[1]"] == "success", result.stdout[-3000:]
    assert states["find_connections"] == states["check_environment"] == "success"
    # The dev stack has no GPU pool: no GPU pod instance at all.
    assert not [key for key in states if key.startswith("gpu_pod[")], states
