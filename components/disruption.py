"""What keeps a running task's node, on every cloud, and what bounds it.

A KPO task is a bare pod: evicted, it is not rescheduled and the task fails. Autoscalers and
Karpenter remove nodes they find under-used (consolidation), out of date (drift) or old
(expiry); two annotations on the pod keep its node while it runs. On EKS the program's own
NodePool then bounds how long a pod may hold a node that must go (`terminationGracePeriod`), so
a stuck task cannot keep a GPU node forever.
"""

# Keep a running task's node: cluster-autoscaler (GKE, AKS) honours safe-to-evict, Karpenter
# (EKS Auto Mode) do-not-disrupt. Both are set so one task shape works on every cloud.
NO_EVICTION_ANNOTATIONS = {
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
    "karpenter.sh/do-not-disrupt": "true",
}


def task_shape() -> dict:
    """The `task` output: what every KubernetesPodOperator task passes (README, Tasks that
    outlive their node's plans); `gpuTask` includes it."""
    return {"annotations": dict(NO_EVICTION_ANNOTATIONS)}


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
