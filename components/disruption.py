"""What keeps a running task's node, on every cloud, and what bounds it.

A KPO task is a bare pod: evicted, it is not rescheduled and the task fails. Autoscalers and
Karpenter remove nodes they find under-used (consolidation), out of date (drift) or old
(expiry); two annotations on the pod keep its node while it runs. On EKS the program's own
NodePools then bound how long a pod may hold a node that must go (`terminationGracePeriod`), so
a stuck task cannot keep a node forever, and ordinary tasks run on a NodePool of their own that
never consolidates a node with a task on it (the task NodePool below).
"""

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.metadata import stack_annotations
from config import NodeLifetime

# Keep a running task's node: cluster-autoscaler (GKE, AKS) honours safe-to-evict, Karpenter
# (EKS Auto Mode) do-not-disrupt. Both are set so one task shape works on every cloud.
NO_EVICTION_ANNOTATIONS = {
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
    "karpenter.sh/do-not-disrupt": "true",
}

# --- EKS Auto Mode: the NodePool ordinary tasks run on ----------------------------------------

# Auto Mode's built-in general-purpose pool, where an untargeted pod lands, consolidates
# under-used nodes and cannot be changed (EKS user guide, "Create a Node Pool for EKS Auto Mode":
# "You cannot modify the built-in system and general-purpose node pools", and under Disruption,
# "By default, EKS Auto Mode: Consolidates underutilized instances"). So tasks get a NodePool of
# their own, on the same `default` NodeClass, which Auto Mode creates while a built-in pool is
# enabled (same page, "Cluster without built-in node pools"); components/eks.py enables both.
TASK_NODE_POOL_NAME = "remote-kpo-tasks"
TASK_POOL_LABELS = {"remote-kpo/tasks": "true"}
# Only tasks land there: another workload would keep a WhenEmpty node up for good.
TASK_TAINT = {"key": "remote-kpo/tasks", "value": "true", "effect": "NoSchedule"}
# The general-purpose pool's instances (EKS user guide, "Enable or Disable Built-in NodePools":
# C, M and R families, generation 5 or newer, on-demand, amd64), in Auto Mode's own labels
# ("Create a Node Pool for EKS Auto Mode", EKS Auto Mode Supported Labels).
TASK_REQUIREMENTS = [
    {"key": "eks.amazonaws.com/instance-category", "operator": "In", "values": ["c", "m", "r"]},
    {"key": "eks.amazonaws.com/instance-generation", "operator": "Gt", "values": ["4"]},
    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
]
# An emptied task node waits this long for the next task (scheduled DAGs start tasks in bursts).
TASK_CONSOLIDATE_AFTER = "5m"
# The NodeClass EKS Auto Mode creates with the cluster (EKS user guide, "Create a Node Pool for
# EKS Auto Mode"). The local proofs point the same specs at a KWOKNodeClass instead.
EKS_NODE_CLASS_REF = {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "default"}


def _toleration(taint: dict) -> dict:
    return {"key": taint["key"], "operator": "Equal", "value": taint["value"], "effect": taint["effect"]}


def task_shape(cloud: str) -> dict:
    """The `task` output: what every KubernetesPodOperator task passes (README, Tasks that
    outlive their node's plans): the annotations, and on EKS the task NodePool's selector and
    toleration. `gpuTask` includes the annotations."""
    shape: dict = {"annotations": dict(NO_EVICTION_ANNOTATIONS)}
    if cloud == "eks":
        shape.update(nodeSelector=dict(TASK_POOL_LABELS), tolerations=[_toleration(TASK_TAINT)])
    return shape


def karpenter_disruption(consolidate_after: str) -> dict:
    """A NodePool's `spec.disruption` for task nodes.

    WhenEmpty: a node with a running task is never consolidated, annotated or not (Karpenter's
    default, WhenEmptyOrUnderutilized, would move pods to pack nodes). The budget lets drift
    replace one node at a time, so a template change (or an Auto Mode AMI update) does not drain
    every task node at once; empty nodes go unbudgeted, they hold no task. Karpenter takes the
    most restrictive budget that names a reason, none for the others
    (sigs.k8s.io/karpenter pkg/apis/v1/nodepool.go, GetAllowedDisruptionsByReason). Expiry is
    not budgeted in Karpenter v1: it is bounded by terminationGracePeriod instead.
    """
    return {"consolidationPolicy": "WhenEmpty", "consolidateAfter": consolidate_after,
            "budgets": [{"nodes": "1", "reasons": ["Drifted"]}]}


def karpenter_node_pool(name: str, labels: dict, taint: dict, requirements: list[dict], lifetime: NodeLifetime,
                        node_class_ref: dict, consolidate_after: str, limits: Optional[dict] = None) -> dict:
    """A `karpenter.sh/v1` NodePool of task nodes: its label and taint, emptied nodes removed
    after `consolidate_after`, nodes replaced after `expireAfter`, and a task that blocks a
    drifted or expired node's drain deleted after `terminationGracePeriod`. Scales from zero by
    design (Karpenter has no minimum)."""
    spec: dict = {
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": {
                "nodeClassRef": dict(node_class_ref),
                "taints": [dict(taint)],
                # Bounds a do-not-disrupt task on a node that drift or expiry removes: Karpenter
                # waits for it this long, then deletes it (pkg/apis/v1/nodepool.go, and
                # EventualDisruptionClass in pkg/controllers/disruption/types.go).
                "terminationGracePeriod": lifetime.termination_grace_period,
                "expireAfter": lifetime.expire_after,
                "requirements": [dict(r) for r in requirements],
            },
        },
        "disruption": karpenter_disruption(consolidate_after),
    }
    if limits is not None:
        spec["limits"] = dict(limits)
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name}, "spec": spec}


def task_node_pool(lifetime: NodeLifetime, node_class_ref: dict) -> dict:
    """The task NodePool for the stack's `taskPool`."""
    return karpenter_node_pool(TASK_NODE_POOL_NAME, TASK_POOL_LABELS, TASK_TAINT, TASK_REQUIREMENTS, lifetime,
                               node_class_ref, TASK_CONSOLIDATE_AFTER)


def apply_node_pool(name: str, manifest: dict, parent: pulumi.Resource,
                    opts: Optional[pulumi.ResourceOptions]) -> k8s.apiextensions.CustomResource:
    """A NodePool manifest as a component's child. `opts.depends_on` (the cluster: its NodePool
    CRD and NodeClass exist once it is up) is passed on, which a component's children do not
    inherit."""
    return k8s.apiextensions.CustomResource(
        f"{name}-nodepool", api_version=manifest["apiVersion"], kind=manifest["kind"],
        metadata={**manifest["metadata"], "annotations": stack_annotations()}, spec=manifest["spec"],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=opts.depends_on if opts else None))


class TaskNodePool(pulumi.ComponentResource):
    """The task NodePool, applied through the cluster's Kubernetes provider (`opts.providers`)."""

    def __init__(self, name: str, lifetime: NodeLifetime, node_class_ref: dict,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:TaskNodePool", name, None, opts)
        self.node_pool = apply_node_pool(name, task_node_pool(lifetime, node_class_ref), self, opts)
        self.register_outputs({"name": TASK_NODE_POOL_NAME})
