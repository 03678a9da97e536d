"""A GPU task sent while the GPU pool is at zero gets a node, runs there, and the node goes away:
the Kubernetes half of it, for real, on the session's local cluster.

- The real engine applies the GPU objects with the components the cloud stacks use
  (gpu_program/: `GpuNodePool`, the EKS stack's karpenter.sh/v1 NodePool, and `NvidiaDevicePlugin`,
  the AKS stack's DaemonSet) for the `gpuPool` of Pulumi.eks.yaml. The NodePool names the
  KWOKNodeClass `default` instead of EKS Auto Mode's NodeClass, and its consolidateAfter is
  shortened to CONSOLIDATE_AFTER (the component's cloud value is a minute).
- Upstream Karpenter with its kwok cloud provider (scripts/toolchain karpenter; started by
  `REMOTE_KPO_KARPENTER=1 scripts/local-cluster up`) scales that NodePool, validated by Karpenter's
  own CRDs from the same module version; kwok plays the kubelet of the nodes it makes.
- Real Airflow runs the README's GPU task (the `gpuTask` shape of components/gpu.py) through the
  dev stack's exported connection of the `ml-training` Deployment.

One story, told in order by the `story` fixture and checked by the tests below: on the pool at
zero, Airflow runs the GPU task, and once it is done its node goes. Then a plain pod that selects
and tolerates the pool but asks for no GPU (the "holder") makes Karpenter add a GPU node again, on
which the device plugin lands; while that node is up with its GPU free, Airflow runs an ordinary
task and a GPU task without the pool's toleration and selector.
"""

import json
from dataclasses import dataclass

import pytest

from airflow_runner import Runner, migrated_airflow_env
from components.gpu import (DEVICE_PLUGIN_NAME, GPU_LABELS, GPU_RESOURCE, GPU_TAINT, NODE_POOL_NAME,
                            gpu_task, karpenter_node_pool)
from gpu_local import (KWOK_NODE_CLASS_REF, POOL_LABEL, eks_gpu_pool, is_pool_node, pod_phase, start_karpenter,
                       up_gpu_program)
from watch import Event, Watch

CONSOLIDATE_AFTER = "5s"
DEPLOYMENT = "ml-training"
CONN_ID = "kpo_ml_training"
# Limits that only turn a hang into a failure; bench/gpu.py says how long these steps take.
STEP_LIMIT = 120


def pod_unschedulable(pod: dict) -> bool:
    return any(c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable"
               for c in pod.get("status", {}).get("conditions", []))


@pytest.fixture(scope="module")
def karpenter(cluster_env):
    start_karpenter(cluster_env)


@pytest.fixture(scope="module")
def gpu_pool():
    return eks_gpu_pool()


@pytest.fixture(scope="module")
def gpu_program(karpenter, cluster_env, tmp_path_factory):
    cli = up_gpu_program(cluster_env, tmp_path_factory.mktemp("gpu"), CONSOLIDATE_AFTER)
    yield cli
    cli.run("destroy", "--yes", "--stack", "gpu")


@pytest.fixture(scope="module")
def airflow_env(dev_outputs, cluster_env, gpu_pool, tmp_path_factory) -> dict:
    """The ml-training Deployment's Airflow: its exported connection, and the GPU task shape."""
    return migrated_airflow_env(dev_outputs, [DEPLOYMENT], cluster_env["PATH"], tmp_path_factory.mktemp("airflow-gpu"),
                                REMOTE_KPO_E2E_GPU_TASK=json.dumps(gpu_task("eks", gpu_pool)))


@dataclass
class Story:
    holder_node: dict           # the GPU node Karpenter made for the holder pod, as it was then
    plugin: dict                # the device plugin DaemonSet, then
    plugin_pods: list[dict]     # its pods, then
    pool_before_gpu_task: list  # the pool's nodes when the GPU task was released
    runs: dict                  # dag_id -> run_dag.py's report
    pods: list[Event]           # the ml-training namespace's pods, as watched
    nodes: list[Event]          # every node, as watched
    node_claims: list[Event]    # Karpenter's NodeClaims, as watched
    namespace: str


def dag(scenario: str) -> str:
    return f"kpo_{scenario}__{CONN_ID}"


def holder_pod(shape: dict) -> dict:
    """A pod with the GPU task's selector and tolerations, asking for no GPU, running until deleted."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "gpu-holder", "namespace": "default",
                         "annotations": {"kwok.remote-kpo.local/runtime": "1h"}},
            "spec": {"restartPolicy": "Never", "nodeSelector": shape["nodeSelector"],
                     "tolerations": shape["tolerations"],
                     "containers": [{"name": "hold", "image": "busybox:1.36"}]}}


def pool_nodes(kubectl) -> list[str]:
    return kubectl("get", "nodes", "-l", f"{POOL_LABEL}={NODE_POOL_NAME}", "-o", "name").stdout.split()


def get(kubectl, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def story(gpu_program, airflow_env, dev_outputs, cluster_env, kubectl, gpu_pool, tmp_path_factory) -> Story:
    namespace = dev_outputs["deployments"][DEPLOYMENT]["namespace"]
    shape = gpu_task("eks", gpu_pool)
    with Watch(cluster_env, "pods", "-n", namespace) as pods, Watch(cluster_env, "nodes") as nodes, \
            Watch(cluster_env, "nodeclaims.karpenter.sh") as claims:
        runner = Runner(airflow_env, tmp_path_factory.mktemp("gpu-runs"),
                        ["kpo_warmup", "@zero", dag("gpu"), "@holder", dag("success"), dag("gpu_untolerated")])

        # The GPU task on the pool at zero; once it is done, its node goes.
        runner.reach("zero")
        pool_before_gpu_task = pool_nodes(kubectl)
        runner.go("zero")
        runner.reach("holder")
        gpu_pod = pods.wait_for(lambda e: e.type == "DELETED", STEP_LIMIT, "the GPU task's pod deleted")
        gpu_node = next(e.object["spec"]["nodeName"] for e in pods.events(gpu_pod.name)
                        if e.object["spec"].get("nodeName"))
        nodes.wait_for(lambda e: e.type == "DELETED" and e.name == gpu_node, STEP_LIMIT, "the GPU task's node removed")

        # From zero again, for a pod that selects and tolerates the pool and asks for no GPU (the
        # holder): a GPU node, and the device plugin on it.
        kubectl("apply", "-f", "-", stdin=json.dumps(holder_pod(shape)))
        holder_node = nodes.wait_for(lambda e: is_pool_node(e.object) and e.name != gpu_node, STEP_LIMIT,
                                     "a GPU node for the holder pod").name
        kubectl("wait", "pod/gpu-holder", "-n", "default", "--for=jsonpath={.status.phase}=Running",
                f"--timeout={STEP_LIMIT}s")
        kubectl("wait", f"daemonset/{DEVICE_PLUGIN_NAME}", "-n", "kube-system",
                "--for=jsonpath={.status.numberReady}=1", f"--timeout={STEP_LIMIT}s")
        plugin = get(kubectl, "daemonset", DEVICE_PLUGIN_NAME, "-n", "kube-system")
        plugin_pods = get(kubectl, "pods", "-n", "kube-system", "-l",
                          f"app.kubernetes.io/name={DEVICE_PLUGIN_NAME}")["items"]
        node_then = get(kubectl, "node", holder_node)

        # With that GPU node up and its GPU free: an ordinary task, and a GPU task without the
        # pool's toleration and selector.
        runner.go("holder")
        runs = {run["dag_id"]: run for run in runner.finish()}
        kubectl("delete", "pod", "gpu-holder", "-n", "default")
        return Story(node_then, plugin, plugin_pods, pool_before_gpu_task, runs, pods.events(), nodes.events(),
                     claims.events(), namespace)


def pod_events(kubectl, name: str, namespace: str) -> list[str]:
    """What the scheduler, Karpenter and the fake kubelet reported about a pod; events outlive it."""
    listed = get(kubectl, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    return [f"{event['reason']}: {event.get('message', '')}" for event in listed["items"]]


def test_the_karpenter_crd_rejects_a_node_pool_with_a_bad_field(gpu_program, kubectl, gpu_pool):
    bad = karpenter_node_pool(gpu_pool, KWOK_NODE_CLASS_REF, 1)
    bad["metadata"]["name"] = "remote-kpo-gpu-bad"
    bad["spec"]["disruption"]["consolidationPolicy"] = "WhenIdle"
    result = kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(bad), check=False)
    assert result.returncode != 0
    assert 'spec.disruption.consolidationPolicy: Unsupported value: "WhenIdle"' in result.stderr, result.stderr


def test_the_node_pool_the_component_declares_passes_the_crd_and_karpenter_marks_it_ready(
        gpu_program, kubectl, gpu_pool):
    kubectl("wait", f"nodepool/{NODE_POOL_NAME}", "--for=condition=Ready", f"--timeout={STEP_LIMIT}s")
    stored = get(kubectl, "nodepool", NODE_POOL_NAME)["spec"]
    declared = karpenter_node_pool(gpu_pool, KWOK_NODE_CLASS_REF, 1)["spec"]
    assert stored["template"]["metadata"]["labels"] == GPU_LABELS
    assert stored["template"]["spec"]["taints"] == [GPU_TAINT]
    assert stored["template"]["spec"]["nodeClassRef"] == KWOK_NODE_CLASS_REF
    # g5.xlarge on spot, at most maxNodes GPUs' worth (Pulumi.eks.yaml's gpuPool).
    assert stored["template"]["spec"]["requirements"] == declared["template"]["spec"]["requirements"] == [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g5.xlarge"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}]
    assert stored["limits"] == declared["limits"] == {GPU_RESOURCE: "4"}
    assert stored["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert stored["disruption"]["consolidateAfter"] == CONSOLIDATE_AFTER


def test_the_device_plugin_runs_on_the_gpu_node_and_on_no_other(story):
    node = story.holder_node
    labels = node["metadata"]["labels"]
    assert labels[POOL_LABEL] == NODE_POOL_NAME
    assert {key: labels.get(key) for key in GPU_LABELS} == GPU_LABELS
    assert GPU_TAINT in node["spec"]["taints"]
    assert node["status"]["allocatable"][GPU_RESOURCE] == "1"
    assert story.plugin["status"]["desiredNumberScheduled"] == 1
    assert [(pod["spec"]["nodeName"], pod["status"]["phase"]) for pod in story.plugin_pods] == [
        (node["metadata"]["name"], "Running")]


def test_an_ordinary_task_runs_on_the_ordinary_node_while_a_gpu_node_is_up(story):
    run = story.runs[dag("success")]
    assert run["state"] == "success"
    pod = run["tasks"]["run_pod"]["xcom"]["pod_name"]
    bound = {e.object["spec"].get("nodeName") for e in story.pods if e.name == pod} - {None}
    assert bound == {"kwok-node-0"}


def test_a_gpu_task_without_the_pool_toleration_and_selector_never_lands_on_the_gpu_node(story, kubectl):
    run = story.runs[dag("gpu_untolerated")]
    assert run["state"] == "failed"
    pod = run["tasks"]["run_pod"]["xcom"]["pod_name"]
    [failure] = run["failures"]
    assert failure["message"].startswith(f"Pod {pod} returned a failure.")
    assert any(cause.startswith("PodLaunchTimeoutException: Pod took too long to be scheduled on the cluster")
               for cause in failure["causes"]), failure["causes"]
    seen = [e for e in story.pods if e.name == pod]
    assert seen and not [e for e in seen if e.object["spec"].get("nodeName")]
    # The scheduler weighed it against both nodes: kwok-node-0 has no GPU, the GPU node's taint kept
    # it off. Karpenter, asked for a node, found none of its pool would take it.
    events = pod_events(kubectl, pod, story.namespace)
    assert any(e.startswith("FailedScheduling: 0/2 nodes are available: 1 Insufficient nvidia.com/gpu, "
                            "1 node(s) had untolerated taint(s).") for e in events), events
    karpenter_says = "Failed to schedule pod, did not tolerate taint (taint=nvidia.com/gpu=present:NoSchedule)"
    assert f"FailedScheduling: {karpenter_says}" in events, events
    # Nor did Karpenter add a node for it: one NodeClaim for the GPU task, one for the holder.
    assert len({e.name for e in story.node_claims}) == 2


def test_a_gpu_task_on_a_pool_at_zero_gets_a_node_runs_there_and_the_node_goes(story):
    assert story.pool_before_gpu_task == []
    run = story.runs[dag("gpu")]
    assert run["state"] == "success"
    pod = run["tasks"]["run_pod"]["xcom"]["pod_name"]
    seen = [e for e in story.pods if e.name == pod]
    bound = next(i for i, e in enumerate(seen) if e.object["spec"].get("nodeName"))
    node = seen[bound].object["spec"]["nodeName"]
    node_events = [e for e in story.nodes if e.name == node]
    # Pending and unschedulable first, then Karpenter's node for the pool, then the pod bound there.
    unschedulable = next(e for e in seen[:bound] if pod_unschedulable(e.object))
    assert node_events[0].type == "ADDED" and is_pool_node(node_events[0].object)
    assert unschedulable.at <= node_events[0].at <= seen[bound].at
    assert any(pod_phase(e.object) == "Succeeded" for e in seen[bound:])
    claims = [e for e in story.node_claims if e.object.get("status", {}).get("nodeName") == node]
    assert claims and claims[0].object["metadata"]["labels"][POOL_LABEL] == NODE_POOL_NAME
    # Once the task was done, the node went.
    assert node_events[-1].type == "DELETED"
    assert seen[-1].type == "DELETED" and seen[-1].at <= node_events[-1].at
