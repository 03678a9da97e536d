"""Why is my task stuck? `scripts/verify --explain` and the smoke DAG's GPU summary, each cause made
for real on the session's local cluster.

A stack of this module's own (`explain`, Deployment `xpl`, on `existing` with `gpuPool: {enabled:
true}` for its gpuTask output, a GPU quota of 2) and the GPU NodePool of Pulumi.eks.yaml applied by
the real engine (gpu_program/, as test_gpu_real.py) with `maxNodes: 1`, so its GPU limit is 1, on
upstream Karpenter with its kwok provider. A pod in `default` (the "holder") takes that one GPU
node, so the pool is at its limit for every test here.

- The smoke DAG, run by real Airflow through `xpl`'s exported connection: its GPU pod finds no node,
  and when its startup timeout runs out the task log holds the summary, read with the connection.
- Pods made through `xpl`'s exported kubeconfig, as KPO makes them, each explained with the
  Deployment's connection (`--stack explain`) and, where it tells more, the admin kubeconfig:
  NodePool limit reached, missing toleration, quota used up (a pod refused at creation), an image
  that never pulls and an OOM-killed container (kwok stages, scripts/go/kwok/stages.yaml).
"""

import json
import subprocess
import time

import pytest

from airflow_runner import migrated_airflow_env
from components.gpu import GPU_RESOURCE, NODE_POOL_NAME, gpu_task
from config import GpuPool
from consumer.smoke import KWOK_TOLERATION
from gpu_local import POOL_LABEL, start_karpenter, up_gpu_program
from realenv import ROOT
from test_kpo_airflow import pod_is_gone
from test_smoke_dag_real import run_smoke

DEPLOYMENT = "xpl"
NAMESPACE = f"kpo-{DEPLOYMENT}"
VERIFY = str(ROOT / "scripts/verify")
# Past Karpenter's batch window (2 s here) and its FailedScheduling event, short for a test.
GPU_STARTUP_SECONDS = 20
STEP_LIMIT = 120
KARPENTER_LIMIT = "all available instance types exceed limits for nodepool"
SHAPE = gpu_task("existing", GpuPool(enabled=True))


@pytest.fixture(scope="module")
def explain_stack(pulumi_cli, dev_outputs) -> dict:
    pulumi_cli.write_stack("explain", {"cloud": "existing", "clusterName": "remote-kpo-local",
                                       "gpuPool": {"enabled": True},
                                       "deployments": [{"name": DEPLOYMENT, "xcom": False,
                                                        "quota": {"gpu": 2}}]})
    pulumi_cli.run("stack", "init", "explain")
    pulumi_cli.run("up", "--yes", "--stack", "explain")
    yield pulumi_cli.outputs("explain")
    pulumi_cli.run("destroy", "--yes", "--stack", "explain")


@pytest.fixture(scope="module")
def pool_at_limit(cluster_env, kubectl, tmp_path_factory):
    """The GPU NodePool with room for one GPU node, and that node taken by the holder pod."""
    start_karpenter(cluster_env)
    cli = up_gpu_program(cluster_env, tmp_path_factory.mktemp("explain-gpu"), "5s", {"maxNodes": 1})
    holder = pod("gpu-holder", "default", selector=True, tolerations=SHAPE["tolerations"], gpu=True,
                 annotations={"kwok.remote-kpo.local/runtime": "1h"})
    kubectl("apply", "-f", "-", stdin=json.dumps(holder))
    kubectl("wait", "pod/gpu-holder", "-n", "default", "--for=jsonpath={.status.phase}=Running",
            f"--timeout={STEP_LIMIT}s")
    kubectl("wait", f"nodepool/{NODE_POOL_NAME}", f"--for=jsonpath={{.status.resources.nvidia\\.com/gpu}}=1",
            f"--timeout={STEP_LIMIT}s")
    yield
    kubectl("delete", "pod", "gpu-holder", "-n", "default")
    cli.run("destroy", "--yes", "--stack", "gpu")
    # The pool's node goes with it, before another module makes the same NodePool.
    kubectl("wait", "--for=delete", "nodes", "-l", f"{POOL_LABEL}={NODE_POOL_NAME}", f"--timeout={STEP_LIMIT}s",
            check=False)


@pytest.fixture(scope="module")
def as_deployment(explain_stack, tmp_path_factory, kubectl):
    """kubectl as xpl, through its exported kubeconfig."""
    path = tmp_path_factory.mktemp("xpl") / "kubeconfig"
    path.write_text(explain_stack["kubeconfigs"][DEPLOYMENT])

    def run(*args: str, check: bool = True, stdin: str | None = None):
        return kubectl(*args, "-n", NAMESPACE, kubeconfig=path, check=check, stdin=stdin)

    return run


def pod(name: str, namespace: str = NAMESPACE, selector: bool = False, tolerations: list | None = None,
        gpu: bool = False, annotations: dict | None = None, memory: str = "64Mi", image: str = "busybox:1.36") -> dict:
    """A pod as KubernetesPodOperator makes one (its labels, one `base` container, never restarted)."""
    resources = {"limits": {"memory": memory, **({GPU_RESOURCE: "1"} if gpu else {})}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {},
                         "labels": {"kubernetes_pod_operator": "True", "dag_id": "explain", "task_id": name}},
            "spec": {"restartPolicy": "Never", "nodeSelector": SHAPE["nodeSelector"] if selector else {},
                     "tolerations": tolerations or [],
                     "containers": [{"name": "base", "image": image, "resources": resources}]}}


def explain(pulumi_cli, reference: str, *source: str) -> str:
    result = subprocess.run([VERIFY, *(source or ("--stack", "explain")), "--explain", reference],
                            cwd=pulumi_cli.cwd, env=pulumi_cli.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def wait_for_event(kubectl, name: str, words: str) -> None:
    deadline = time.monotonic() + STEP_LIMIT
    while words not in kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                               f"involvedObject.name={name}", "-o", "json").stdout:
        assert time.monotonic() < deadline, f"no event on {name} saying {words!r}"
        time.sleep(1)


@pytest.fixture(scope="module")
def smoke_log(explain_stack, pool_at_limit, cluster_env, tmp_path_factory) -> tuple[dict, str]:
    """The smoke DAG through xpl's connection, its GPU task shaped by the stack's gpuTask."""
    env = migrated_airflow_env(
        explain_stack, [DEPLOYMENT], cluster_env["PATH"], tmp_path_factory.mktemp("explain-airflow-home"),
        dags_folder=ROOT / "dags",
        AIRFLOW_VAR_REMOTE_KPO_SMOKE=json.dumps({"get_logs": False, "tolerations": [KWOK_TOLERATION]}),
        AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_XPL=json.dumps(
            {**explain_stack["gpuTask"], "startupTimeoutSeconds": GPU_STARTUP_SECONDS}))
    return run_smoke(env, tmp_path_factory.mktemp("explain-smoke"))


def test_the_smoke_dags_gpu_task_that_times_out_logs_why_read_with_the_connection_alone(smoke_log, kubectl):
    run, log = smoke_log
    assert run["tasks"]["smoke_pod[0]"]["state"] == "success", log[-3000:]
    assert run["tasks"]["gpu_pod[0]"]["state"] == "failed"
    name = run["tasks"]["gpu_pod[0]"]["xcom"]["pod_name"]
    summary = log[log.index(f"remote-kpo smoke: why {NAMESPACE}/{name} waited or ended"):]
    assert "phase Pending, not on a node" in summary, summary
    assert "PodScheduled False (Unschedulable: 0/" in summary, summary
    assert f"Warning FailedScheduling (karpenter): Failed to schedule pod, {KARPENTER_LIMIT}" in summary, summary
    assert "node selector: matches remote-kpo/gpu=true" in summary, summary
    # The connection's Role is namespaced: Karpenter's objects are out of its reach, and it says so.
    assert "NodePools\n  not readable with this connection: cluster-scoped" in summary, summary
    assert f"cause 1: a NodePool is at its limit (Karpenter: Failed to schedule pod, {KARPENTER_LIMIT}" in summary, \
        summary
    assert "  next: raise the GPU pool's size (gpuPool.maxNodes" in summary, summary
    # Kept for the summary, then deleted by the DAG itself.
    assert pod_is_gone(kubectl, name, NAMESPACE)


@pytest.fixture(scope="module")
def waiting_gpu_pods(pool_at_limit, as_deployment, kubectl, smoke_log) -> dict:
    """Two GPU pods that no node takes, as xpl: one shaped by gpuTask (the pool is at its limit), one
    without its toleration. Together they hold xpl's GPU quota of 2. (After the smoke DAG, whose GPU
    pod needs a share of that quota.)"""
    pods = {"limit": pod("gpu-at-limit", selector=True, tolerations=SHAPE["tolerations"], gpu=True),
            "untolerated": pod("gpu-untolerated", selector=True, gpu=True)}
    for made in pods.values():
        as_deployment("apply", "-f", "-", stdin=json.dumps(made))
    wait_for_event(kubectl, "gpu-at-limit", KARPENTER_LIMIT)
    wait_for_event(kubectl, "gpu-untolerated", "untolerated taint")
    yield {key: made["metadata"]["name"] for key, made in pods.items()}
    for made in pods.values():
        as_deployment("delete", "pod", made["metadata"]["name"], "--wait=false")


def test_a_pool_at_its_limit_is_named_from_the_node_pool_by_an_admin_and_from_karpenters_event_by_a_deployment(
        pulumi_cli, waiting_gpu_pods, cluster_env):
    name = waiting_gpu_pods["limit"]
    admin = explain(pulumi_cli, f"{NAMESPACE}/{name}", "--kubeconfig", cluster_env["KUBECONFIG"])
    assert f"  {NODE_POOL_NAME}: limit nvidia.com/gpu 1 of 1" in admin, admin
    # The holder's NodeClaim, launched and on its node.
    assert "Launched True, Registered True, Initialized True" in admin, admin
    assert f"cause 1: NodePool {NODE_POOL_NAME} is at its limit: nvidia.com/gpu 1 of 1" in admin, admin
    assert "  next: raise the GPU pool's size (gpuPool.maxNodes" in admin, admin
    deployment = explain(pulumi_cli, f"{NAMESPACE}/{name}")
    assert "NodeClaims\n  not readable with this connection" in deployment, deployment
    assert f"cause 1: a NodePool is at its limit (Karpenter: Failed to schedule pod, {KARPENTER_LIMIT}" in deployment, \
        deployment


def test_a_gpu_pod_without_the_pools_toleration_is_told_to_pass_the_gpu_tasks_tolerations(pulumi_cli, waiting_gpu_pods):
    out = explain(pulumi_cli, f"{NAMESPACE}/{waiting_gpu_pods['untolerated']}")
    assert "  tolerations: missing for nvidia.com/gpu:NoSchedule" in out, out
    assert "cause 1: the pod does not tolerate the GPU nodes' taint nvidia.com/gpu:NoSchedule" in out, out
    assert "  next: pass the gpuTask's tolerations (README: GPU tasks)" in out, out
    # The scheduler said so among the events. (Karpenter, asked for a node, names the pool's limit
    # first: it weighs limits before taints, v1.15 scheduler.go addToNewNodeClaim.)
    assert "Warning FailedScheduling (default-scheduler): 0/2 nodes are available: " in out, out
    assert "node(s) had untolerated taint" in out, out


def test_a_task_refused_for_a_used_up_quota_is_explained_by_the_quota(pulumi_cli, waiting_gpu_pods, as_deployment):
    refused = as_deployment("apply", "-f", "-", stdin=json.dumps(
        pod("gpu-over-quota", selector=True, tolerations=SHAPE["tolerations"], gpu=True)), check=False)
    assert refused.returncode != 0 and "exceeded quota: remote-kpo-quota" in refused.stderr, refused.stderr
    out = explain(pulumi_cli, f"{NAMESPACE}/gpu-over-quota")
    assert "  no such pod" in out, out
    assert "remote-kpo-quota: " in out and "requests.nvidia.com/gpu 2/2 FULL" in out, out
    assert ("cause 2: quota used up: remote-kpo-quota requests.nvidia.com/gpu 2 of 2; a new pod asking for it is "
            "refused at creation (`exceeded quota`)") in out
    assert "or raise the Deployment's `quota.gpu` and `pulumi up`" in out, out


def test_an_image_that_never_pulls_is_named_with_its_image(pulumi_cli, as_deployment, kubectl):
    image = "registry.invalid/remote-kpo/missing:1"
    as_deployment("apply", "-f", "-", stdin=json.dumps(pod(
        "never-pulls", tolerations=[KWOK_TOLERATION], image=image,
        annotations={"kwok.remote-kpo.local/image-pull": "fail"})))
    kubectl("wait", "pod/never-pulls", "-n", NAMESPACE, f"--timeout={STEP_LIMIT}s",
            "--for=jsonpath={.status.containerStatuses[0].state.waiting.reason}=ImagePullBackOff")
    out = explain(pulumi_cli, f"{NAMESPACE}/never-pulls")
    assert "phase Pending on node kwok-node-0" in out, out
    assert "container base: waiting ImagePullBackOff" in out, out
    assert f"cause 1: container base cannot pull its image {image}: ImagePullBackOff: Back-off pulling image" in out, \
        out
    assert "  next: check the image's name and tag; for a private registry give the Deployment `registries`" in out, \
        out
    as_deployment("delete", "pod", "never-pulls")


def test_an_oom_killed_container_is_told_to_raise_its_memory_limit(pulumi_cli, as_deployment, kubectl):
    as_deployment("apply", "-f", "-", stdin=json.dumps(pod(
        "oom", tolerations=[KWOK_TOLERATION], memory="96Mi",
        annotations={"kwok.remote-kpo.local/exit-code": "137", "kwok.remote-kpo.local/reason": "OOMKilled"})))
    kubectl("wait", "pod/oom", "-n", NAMESPACE, "--for=jsonpath={.status.phase}=Failed", f"--timeout={STEP_LIMIT}s")
    out = explain(pulumi_cli, f"{NAMESPACE}/oom")
    assert "container base: terminated OOMKilled exit 137" in out, out
    assert "cause 1: container base was OOM-killed: it used more memory than its limit (96Mi)" in out, out
    assert "  next: raise the task's memory limit (container_resources)" in out, out
    as_deployment("delete", "pod", "oom")
