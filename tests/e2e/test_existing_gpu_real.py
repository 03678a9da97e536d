"""An `existing` cluster with GPU nodes of its own (issue 19 item 10): `gpuPool: {enabled: true}`
makes no nodes and exports `gpuTask`; a GPU task shaped by it, made through the Deployment's
exported kubeconfig, lands on the GPU node the cluster's operators labelled and tainted as the
README says, and a pod without that shape does not.

The GPU node is a kwok node (fake: nothing runs) that advertises `nvidia.com/gpu: 1`, as a device
plugin would; the session cluster's kwok plays every node annotated kwok.x-k8s.io/node=fake.
"""

import json
from pathlib import Path

import pytest

NODE = "existing-gpu-0"
NAMESPACE = "existing-gpu"


def gpu_node() -> dict:
    # Nodes keep their status on create (the node registry's PrepareForCreate), and kwok's
    # node-initialize stage keeps the allocatable a node sets (scripts/go/kwok/stages.yaml).
    resources = {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "1"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}},
            "spec": {"taints": []},
            "status": {"capacity": resources, "allocatable": resources}}


def pod(name: str, shape: dict | None) -> dict:
    container = {"name": "base", "image": "nvidia/cuda", "command": ["nvidia-smi"]}
    spec = {"containers": [container], "restartPolicy": "Never"}
    annotations = {"kwok.remote-kpo.local/runtime": "1h"}
    if shape:
        container["resources"] = {"limits": {shape["resourceName"]: "1"}}
        spec |= {"nodeSelector": shape["nodeSelector"], "tolerations": shape["tolerations"]}
        annotations |= shape["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations}, "spec": spec}


@pytest.fixture(scope="module")
def labelled_gpu_node(kubectl):
    """The node, labelled and tainted with the README's own commands."""
    kubectl("apply", "-f", "-", stdin=json.dumps(gpu_node()))
    kubectl("label", "node", NODE, "remote-kpo/gpu=true")
    kubectl("taint", "node", NODE, "nvidia.com/gpu=present:NoSchedule")
    kubectl("wait", "--for=condition=Ready", f"node/{NODE}", "--timeout=60s")
    yield NODE
    kubectl("delete", "node", NODE, "--wait=false")


def test_a_gpu_task_from_an_existing_stacks_gpu_task_runs_on_the_clusters_own_gpu_node(
        pulumi_cli, kubectl, labelled_gpu_node, tmp_path: Path):
    pulumi_cli.write_stack("existing-gpu", {
        "cloud": "existing", "clusterName": "existing-gpu", "gpuPool": {"enabled": True},
        "deployments": [{"name": "trainer", "namespace": NAMESPACE, "xcom": False, "quota": {"gpu": 1}}]})
    pulumi_cli.run("stack", "init", "existing-gpu")
    pulumi_cli.run("up", "--yes", "--skip-preview", "--stack", "existing-gpu")
    outputs = pulumi_cli.outputs("existing-gpu")
    state = json.loads(pulumi_cli.run("stack", "export", "--stack", "existing-gpu").stdout)["deployment"]
    kinds = {r["type"] for r in state["resources"] if r["type"].startswith("kubernetes:")}
    assert not [kind for kind in kinds if "NodePool" in kind or "DaemonSet" in kind], kinds
    kubeconfig = tmp_path / "trainer.json"
    kubeconfig.write_text(outputs["kubeconfigs"]["trainer"])
    try:
        kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(pod("gpu-task", outputs["gpuTask"])),
                kubeconfig=kubeconfig)
        kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(pod("plain-task", None)), kubeconfig=kubeconfig)
        kubectl("wait", "--for=jsonpath={.status.phase}=Running", "pod/gpu-task", "-n", NAMESPACE, "--timeout=90s")
        placed = json.loads(kubectl("get", "pod", "gpu-task", "-n", NAMESPACE, "-o", "json").stdout)
        assert placed["spec"]["nodeName"] == NODE
        # Without the shape: the scheduler finds no node for it, the GPU node's taint keeping it off
        # (and the kwok node's own taint the other node here).
        kubectl("wait", "--for=jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}=Unschedulable",
                "pod/plain-task", "-n", NAMESPACE, "--timeout=60s")
        plain = json.loads(kubectl("get", "pod", "plain-task", "-n", NAMESPACE, "-o", "json").stdout)
        (scheduled,) = [c for c in plain["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert "0/2 nodes are available: 2 node(s) had untolerated taint" in scheduled["message"], scheduled
    finally:
        pulumi_cli.run("destroy", "--yes", "--skip-preview", "--stack", "existing-gpu", check=False)
