"""The GPU path, one source of truth for every cloud and for the local proof.

What a GPU node carries (label, taint, resource), what a GPU KPO task must say to land on one
(the `gpuTask` output), and the Kubernetes-side objects that make a pool at zero scale up: the
EKS Auto Mode NodePool (`karpenter.sh/v1`) and the NVIDIA device plugin DaemonSet (AKS). The
pure functions build plain manifests; the components apply them through a stack's provider.
"""

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.disruption import NO_EVICTION_ANNOTATIONS, apply_node_pool, karpenter_node_pool as task_nodes
from components.metadata import MANAGED_BY, stack_annotations
from config import GpuPool

GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABELS = {"remote-kpo/gpu": "true"}
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
# AKS puts this taint and label on every Spot node itself (AKS docs, "Add a spot node pool").
AKS_SPOT_TAINT = {"key": "kubernetes.azure.com/scalesetpriority", "value": "spot", "effect": "NoSchedule"}
AKS_SPOT_LABELS = {"kubernetes.azure.com/scalesetpriority": "spot"}
# AKS labels every node of an NVIDIA VM size itself (AKS docs, "Use labels": reserved
# kubernetes.azure.com/accelerator), also in pools a DAG makes, which lack remote-kpo/gpu.
AKS_ACCELERATOR_LABEL = {"kubernetes.azure.com/accelerator": "nvidia"}
# GKE's API spells taint effects in upper snake case.
GKE_TAINT_EFFECT = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}

# KPO's default startup_timeout_seconds (120) is shorter than a GPU node's boot from zero
# (provisioning, driver install, image pull): 15 minutes covers a cold pool.
GPU_STARTUP_TIMEOUT_SECONDS = 900


def node_taints(cloud: str, spot: bool) -> list[dict]:
    """The taints a GPU node carries: the pool's own and, on AKS spot pools, Azure's."""
    if cloud == "aks" and spot:
        return [dict(GPU_TAINT), dict(AKS_SPOT_TAINT)]
    return [dict(GPU_TAINT)]


def taint_string(taint: dict) -> str:
    """`key=value:Effect`, the form AKS node pools take."""
    return f"{taint['key']}={taint['value']}:{taint['effect']}"


def gpu_tolerations(cloud: str, spot: bool) -> list[dict]:
    """Tolerations for every taint a GPU node carries (node_taints)."""
    tolerations = []
    for taint in node_taints(cloud, spot):
        if taint["key"] == GPU_TAINT["key"]:
            tolerations.append({"key": taint["key"], "operator": "Exists", "effect": taint["effect"]})
        else:
            tolerations.append({"key": taint["key"], "operator": "Equal",
                                "value": taint["value"], "effect": taint["effect"]})
    return tolerations


def gpu_task(cloud: str, pool: GpuPool) -> dict:
    """The `gpuTask` output: what a GPU KubernetesPodOperator task passes (README), the `task`
    shape's annotations included."""
    return {
        "annotations": dict(NO_EVICTION_ANNOTATIONS),
        "nodeSelector": dict(GPU_LABELS),
        "tolerations": gpu_tolerations(cloud, pool.spot),
        "resourceName": GPU_RESOURCE,
        "startupTimeoutSeconds": GPU_STARTUP_TIMEOUT_SECONDS,
    }


# --- EKS Auto Mode: the GPU pool as a Karpenter NodePool --------------------------------------

NODE_POOL_NAME = "remote-kpo-gpu"
# An empty GPU node goes soon after its last task: GPUs are billed by the second.
CONSOLIDATE_AFTER = "1m"


def karpenter_node_pool(pool: GpuPool, node_class_ref: dict, gpus_per_node: int) -> dict:
    """The GPU pool as a task NodePool (components/disruption.py): one instance type, spot or
    on-demand, the pool's label and taint, capped at `maxNodes` nodes' worth of GPUs."""
    requirements = [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [pool.machine_type]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot" if pool.spot else "on-demand"]},
    ]
    return task_nodes(NODE_POOL_NAME, GPU_LABELS, GPU_TAINT, requirements, pool, node_class_ref, CONSOLIDATE_AFTER,
                      limits={GPU_RESOURCE: str(pool.max_nodes * gpus_per_node)})


class GpuNodePool(pulumi.ComponentResource):
    """The GPU NodePool, applied through the cluster's Kubernetes provider (`opts.providers`)."""

    def __init__(self, name: str, pool: GpuPool, node_class_ref: dict, gpus_per_node: int,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:GpuNodePool", name, None, opts)
        self.node_pool = apply_node_pool(name, karpenter_node_pool(pool, node_class_ref, gpus_per_node), self, opts)
        self.register_outputs({"name": NODE_POOL_NAME})


# --- AKS: the NVIDIA device plugin ------------------------------------------------------------

DEVICE_PLUGIN_NAME = "nvidia-device-plugin"
# The newest release: tag v0.20.0 of github.com/NVIDIA/k8s-device-plugin (CHANGELOG.md, and
# deployments/static/nvidia-device-plugin.yml at that tag, which this DaemonSet follows).
DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"


def _any_label(*labels: dict[str, str]) -> dict:
    """Node affinity matching a node with any of the given labels (nodeSelectorTerms are ORed)."""
    terms = [{"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
             for label in labels for key, value in label.items()]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}


def device_plugin_tolerations() -> list[dict]:
    """The GPU taint and AKS's spot taint, whatever their values: a pool a DAG makes (spot or
    not) is tolerated as well as the stack's own."""
    return [{"key": taint["key"], "operator": "Exists", "effect": taint["effect"]}
            for taint in (GPU_TAINT, AKS_SPOT_TAINT)]


def device_plugin_daemonset(annotations: dict[str, str]) -> dict:
    """NVIDIA's device plugin (its static manifest, nvidia-device-plugin.yml), placed on GPU
    nodes only: the stack's pool (remote-kpo/gpu) and any NVIDIA node AKS labels (a DAG's pool)."""
    labels = {"app.kubernetes.io/name": DEVICE_PLUGIN_NAME, **MANAGED_BY}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": DEVICE_PLUGIN_NAME, "namespace": "kube-system", "labels": labels,
                     "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": DEVICE_PLUGIN_NAME}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "affinity": _any_label(GPU_LABELS, AKS_ACCELERATOR_LABEL),
                    "tolerations": device_plugin_tolerations(),
                    # Without it, a full node could evict the plugin and strand its GPUs.
                    "priorityClassName": "system-node-critical",
                    "containers": [{
                        "name": "nvidia-device-plugin-ctr",
                        "image": DEVICE_PLUGIN_IMAGE,
                        # No FAIL_ON_INIT_ERROR=false (NVIDIA dropped it from the static manifest in
                        # v0.18.0, commit b3d0054): started before the driver is ready, the plugin
                        # exits and is restarted until it finds the GPUs, instead of waiting forever.
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "device-plugin", "mountPath": DEVICE_PLUGIN_DIR}],
                    }],
                    "volumes": [{"name": "device-plugin", "hostPath": {"path": DEVICE_PLUGIN_DIR, "type": "Directory"}}],
                },
            },
        },
    }


class NvidiaDevicePlugin(pulumi.ComponentResource):
    """The device plugin DaemonSet, applied through the cluster's Kubernetes provider."""

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:NvidiaDevicePlugin", name, None, opts)
        manifest = device_plugin_daemonset(stack_annotations())
        self.daemonset = k8s.apps.v1.DaemonSet(
            f"{name}-daemonset", metadata=manifest["metadata"], spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"name": DEVICE_PLUGIN_NAME})
