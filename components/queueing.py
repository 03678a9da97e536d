"""Queueing (issue 26, opt-in): a task over its Deployment's quota waits in line instead of being
refused, and Deployments lend each other idle quota. Built on Kueue (sigs.k8s.io/kueue) and its
plain-pod integration.

- One cohort per stack (`remote-kpo-<stack>`), so two stacks on one cluster never share quota.
- Two ResourceFlavors per stack: `-default` for cpu and memory (any node), `-gpu` for
  nvidia.com/gpu, naming the stack's GPU pool by its label and taint (components/gpu.py).
- Per Deployment a ClusterQueue in the cohort holding its `quota` (cpu, memory, gpu) as nominal
  quota, with its borrowing and lending limits, open to its namespace only; and in its namespace
  the LocalQueue `default`. Kueue puts `kueue.x-k8s.io/queue-name: default` on every pod created in
  a namespace that has a LocalQueue of that name (LocalQueueDefaulting, GA and locked on in v0.17:
  pkg/features/kube_features.go; the pod webhook, pkg/controller/jobs/pod/pod_webhook.go
  Default), so a task that leaves the label out is queued all the same and no pod escapes the
  quota. The task shapes carry the label too, to say so.
- The namespace's ResourceQuota keeps only the pod counts: a ResourceQuota counts a gated
  (queued) pod's requests at creation and would refuse it with 403 "exceeded quota", which is
  what queueing is for (Kueue KEP 77, keps/77-dynamically-sized-jobs/README.md, "PodScheduling
  Readiness and ResourceQuota": "pods that are gated using PodSchedulingGates are still counted
  toward the namespace's ResourceQuota"). The pod caps bound how many tasks a runaway DAG queues.

Preemption: a Deployment's own tasks never preempt each other (withinClusterQueue Never) and a
borrowing task never preempts to borrow (borrowWithinCohort Never). Taking lent quota back is
`queueing.reclaim`: `wait` (default; reclaimWithinCohort Never) lets the borrower's running tasks
finish, and the owner's tasks come first for what they free, since Kueue admits workloads within
their nominal quota before borrowing ones (pkg/scheduler/scheduler.go, makeClassicalIterator:
"1. Request under nominal quota"); `preempt` (reclaimWithinCohort Any) has Kueue evict the
borrowing tasks at once, which deletes their pods (pkg/controller/jobs/pod/pod_controller.go,
Stop), so those KPO tasks fail and go to their retries. Every KPO pod has the same priority, so
`LowerPriority` would never reclaim anything.
"""

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.kueue import KUEUE_API_VERSION, KUEUE_GROUP, KUEUE_VERSION, LOCAL_QUEUE, QUEUE_LABEL
from components.gpu import GPU_LABELS, GPU_RESOURCE, GPU_STARTUP_TIMEOUT_SECONDS, node_taints
from components.metadata import object_metadata, stack_annotations, MANAGED_BY
from components.names import stack_scoped
from config import Deployment, StackConfig
from config import Queueing as QueueingConfig

# The released chart of KUEUE_VERSION (its chart version is the tag without the v).
KUEUE_CHART = "oci://registry.k8s.io/kueue/charts/kueue"
KUEUE_NAMESPACE = "kueue-system"
# What the program makes and reads: each must be served at KUEUE_API_VERSION.
KUEUE_CRDS = tuple(f"{plural}.{KUEUE_GROUP}" for plural in ("resourceflavors", "clusterqueues", "localqueues", "workloads"))
# On each Deployment namespace while queueing is on: Kueue's managedJobsNamespaceSelector (and so
# its pod webhook's namespaceSelector) selects these namespaces only.
QUEUEING_NAMESPACE_LABEL = "remote-kpo/queueing"
# The port Kueue's webhook server listens on in its pod (the chart's webhookService targetPort).
KUEUE_WEBHOOK_PORT = 9443
# The port of Kueue's visibility API server in its pod (Configuration visibility.bindPort's
# default; the chart's visibility-server Service targets it, behind the APIServices
# v1beta1/v1beta2.visibility.kueue.x-k8s.io it always installs: templates/visibility/). The API
# server calls it as it calls the webhook; unreachable, the APIService is unavailable, which
# breaks API discovery for every client and stalls namespace deletion.
KUEUE_VISIBILITY_PORT = 8082
# What a private cluster's control plane must reach on the nodes.
KUEUE_CONTROL_PLANE_PORTS = [KUEUE_WEBHOOK_PORT, KUEUE_VISIBILITY_PORT]
# KubernetesPodOperator's default startup_timeout_seconds, which it also uses as the schedule
# timeout when none is given (operators/pod.py, cncf.kubernetes 10.25.0).
KPO_DEFAULT_STARTUP_SECONDS = 120


# ---- pure functions ----------------------------------------------------------------------

def cohort_name(stack: str) -> str:
    return stack_scoped(stack, limit=63)


def flavor_names(stack: str) -> dict[str, str]:
    """{"default": ..., "gpu": ...}: the stack's two ResourceFlavors."""
    return {kind: stack_scoped(stack, kind, limit=63) for kind in ("default", "gpu")}


def cluster_queue_name(stack: str, namespace: str) -> str:
    return stack_scoped(stack, namespace, limit=63)


def gpu_flavor_spec(cfg: StackConfig) -> dict:
    """The GPU flavor names the stack's GPU pool: Kueue admits a GPU task to it only if the task
    tolerates the pool's taints, and puts the pool's label on the task's nodeSelector
    (ResourceFlavorSpec, apis/kueue/v1beta2/resourceflavor_types.go). A Deployment with
    ephemeralNodePools runs GPU tasks on node pools its DAGs make, which lack the label: then the
    flavor names no nodes and is a count of GPUs only."""
    if not cfg.gpu_pool.enabled or any(d.ephemeral_node_pools for d in cfg.deployments):
        return {}
    return {"nodeLabels": dict(GPU_LABELS), "nodeTaints": node_taints(cfg.cloud, cfg.gpu_pool.spot)}


def resource_flavors(cfg: StackConfig, stack: str) -> dict[str, dict]:
    """name -> spec of the stack's ResourceFlavors."""
    names = flavor_names(stack)
    return {names["default"]: {}, names["gpu"]: gpu_flavor_spec(cfg)}


def _quota_entry(name: str, nominal: str, borrowing: Optional[str], lending: Optional[str]) -> dict:
    entry = {"name": name, "nominalQuota": nominal, "borrowingLimit": borrowing or "0"}
    if lending is not None:
        entry["lendingLimit"] = lending
    return entry


def cluster_queue_spec(deployment: Deployment, stack: str, queueing: QueueingConfig) -> dict:
    """The Deployment's ClusterQueue: its quota as nominal quota in the stack's cohort, borrowing
    nothing unless `quota.borrowingLimit` says, lending all its idle quota unless
    `quota.lendingLimit` says (Kueue: a null lendingLimit lends everything), open to its own
    namespace only (Kueue's default namespaceSelector, null, would open it to none)."""
    quota = deployment.quota
    borrowing = quota.borrowing_limit
    lending = quota.lending_limit

    def limit(limits, resource: str) -> Optional[str]:
        value = getattr(limits, resource) if limits is not None else None
        return None if value is None else str(value)

    flavors = flavor_names(stack)
    return {
        "cohortName": cohort_name(stack),
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": deployment.namespace_name}},
        # A small CPU task need not wait behind a GPU task that does not fit yet.
        "queueingStrategy": "BestEffortFIFO",
        "preemption": {
            "reclaimWithinCohort": "Any" if queueing.reclaim == "preempt" else "Never",
            "withinClusterQueue": "Never",
            "borrowWithinCohort": {"policy": "Never"},
        },
        "resourceGroups": [
            {"coveredResources": ["cpu", "memory"],
             "flavors": [{"name": flavors["default"], "resources": [
                 _quota_entry(resource, getattr(quota, resource), limit(borrowing, resource), limit(lending, resource))
                 for resource in ("cpu", "memory")]}]},
            {"coveredResources": [GPU_RESOURCE],
             "flavors": [{"name": flavors["gpu"], "resources": [
                 _quota_entry(GPU_RESOURCE, str(quota.gpu), limit(borrowing, "gpu"), limit(lending, "gpu"))]}]},
        ],
    }


def local_queue_spec(stack: str, namespace: str) -> dict:
    return {"clusterQueue": cluster_queue_name(stack, namespace)}


def queued_shape(shape: dict, queueing: QueueingConfig, startup_seconds: int) -> dict:
    """A task shape (`task`, `gpuTask`) with the queue label and a schedule timeout that covers the
    wait in line (`queueing.maxWaitSeconds`) and then the start the shape allows for (a GPU node
    from zero): KPO counts both as waiting to be scheduled (a gated pod, then one admitted but
    without a node, has PodScheduled False: utils/pod_manager.py await_pod_start)."""
    return {**shape, "labels": {**shape.get("labels", {}), QUEUE_LABEL: LOCAL_QUEUE},
            "scheduleTimeoutSeconds": queueing.max_wait_seconds + startup_seconds}


def task_shapes(cfg: StackConfig, task: dict, gpu_task: Optional[dict]) -> tuple[dict, Optional[dict]]:
    """The `task` and `gpuTask` outputs, queued when queueing is on."""
    if not cfg.queueing.enabled:
        return task, gpu_task
    return (queued_shape(task, cfg.queueing, KPO_DEFAULT_STARTUP_SECONDS),
            None if gpu_task is None else queued_shape(gpu_task, cfg.queueing, GPU_STARTUP_TIMEOUT_SECONDS))


def queue_details(cfg: StackConfig, deployment: Deployment) -> dict[str, str]:
    """Public entries of a queued Deployment's `deployments` output: its queues, which
    scripts/verify shows."""
    if not cfg.queueing.enabled:
        return {}
    return {"localQueue": LOCAL_QUEUE,
            "clusterQueue": cluster_queue_name(pulumi.get_stack(), deployment.namespace_name)}


# Requests Kueue does not queue on (manager_config; scripts/local-cluster's copy of the config).
EXCLUDED_RESOURCE_PREFIXES = ("ephemeral-storage",)


def manager_config(namespace_label: str = QUEUEING_NAMESPACE_LABEL) -> dict:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2): the chart's defaults
    (charts/kueue/values.yaml, managerConfig.controllerManagerConfigYaml) with the pod integration
    only, and managed namespaces limited to the Deployments' (the chart also makes this the pod
    webhook's namespaceSelector: templates/webhook/manifests.yaml, mpod.kb.io)."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": ":8443"},
        "webhook": {"port": KUEUE_WEBHOOK_PORT},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        "clientConnection": {"qps": 50, "burst": 100},
        "managedJobsNamespaceSelector": {"matchLabels": {namespace_label: "true"}},
        "integrations": {"frameworks": ["pod"]},
        # Kueue admits only what a ClusterQueue covers ("resource %s unavailable in ClusterQueue",
        # pkg/scheduler/flavorassigner/flavorassigner.go); the queues cover cpu, memory and GPUs,
        # so a task asking for ephemeral-storage would wait in line forever. It is not queued on.
        "resources": {"excludeResourcePrefixes": list(EXCLUDED_RESOURCE_PREFIXES)},
    }


def chart_values() -> dict:
    """The chart's values: the Configuration above; the released chart pins its own image
    (registry.k8s.io/kueue/kueue at the chart's version: hack/helm-chart-package.sh)."""
    return {"managerConfig": {"controllerManagerConfigYaml": yaml.safe_dump(manager_config(), sort_keys=False)},
            # Two managers and a PodDisruptionBudget: the pod webhook fails closed in queueing
            # namespaces, so while a lone manager restarts (node upgrade, consolidation, expiry) no
            # task pod can be made. The non-leading replica serves webhooks too (its cache-feeding
            # controllers run unelected: pkg/controller/core/leader_aware_reconciler.go).
            "controllerManager": {"replicas": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}}


# ---- components --------------------------------------------------------------------------

class KueueInstall(pulumi.ComponentResource):
    """Kueue itself on a cloud cluster: its namespace (restricted Pod Security: the chart's
    manager pod runs as non-root with RuntimeDefault seccomp, no privilege escalation and every
    capability dropped, charts/kueue/values.yaml) and the released chart of KUEUE_VERSION as one
    Helm release, through the cluster's provider (`opts`).

    A helm.v3.Release rather than a helm.v4.Chart: the Release is one custom resource, so it is
    replaced (deleted first) with the cluster like every other object on it
    (components/on_cluster.py); a v4 Chart's objects are registered by the provider, out of reach
    of the SDK transformation that does this. The Release waits until Kueue's objects are ready,
    its webhook server included, before the queues (which Kueue's webhooks validate) are made.
    `after`: what Kueue's pods and webhooks need first (nodes, a firewall rule)."""

    def __init__(self, name: str, after: Optional[list[pulumi.Resource]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:KueueInstall", name, None, opts)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=object_metadata(KUEUE_NAMESPACE, labels={
                "pod-security.kubernetes.io/enforce": "restricted"}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=after))
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="kueue",
            chart=KUEUE_CHART,
            version=KUEUE_VERSION.removeprefix("v"),
            namespace=namespace.metadata.apply(lambda _: KUEUE_NAMESPACE),
            values=chart_values(),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, *(after or [])]))
        self.register_outputs({"version": KUEUE_VERSION})

@dataclass
class QueueSettings:
    """What a Deployment's queue (DeploymentQueue) needs from the stack."""

    stack: str
    queueing: QueueingConfig
    # The flavors and, on the clouds, Kueue's install: the ClusterQueue waits for them.
    after: list[pulumi.Resource] = field(default_factory=list)


class Queueing(pulumi.ComponentResource):
    """The stack's ResourceFlavors, through the cluster's Kubernetes provider (`opts`)."""

    def __init__(self, name: str, cfg: StackConfig, stack: str, after: Optional[list[pulumi.Resource]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:Queueing", name, None, opts)
        self.flavors = [
            k8s.apiextensions.CustomResource(
                f"{name}-flavor-{kind}", api_version=KUEUE_API_VERSION, kind="ResourceFlavor",
                metadata={"name": flavor, "labels": dict(MANAGED_BY), "annotations": stack_annotations()},
                spec=spec, opts=pulumi.ResourceOptions(parent=self, depends_on=after))
            for kind, (flavor, spec) in zip(("default", "gpu"), resource_flavors(cfg, stack).items())
        ]
        self.settings = QueueSettings(stack, cfg.queueing, after=[*(after or []), *self.flavors])
        self.register_outputs({"cohort": cohort_name(stack)})


def stack_queueing(cfg: StackConfig, stack: str, opts: pulumi.ResourceOptions,
                   after: Optional[list[pulumi.Resource]] = None) -> Optional[QueueSettings]:
    """With queueing on, the stack's flavors (made through `opts`), and what each Deployment's
    queue needs; None with it off."""
    if not cfg.queueing.enabled:
        return None
    return Queueing("queueing", cfg, stack, after=after, opts=opts).settings


def cloud_queueing(cfg: StackConfig, stack: str, opts: pulumi.ResourceOptions,
                   after: Optional[list[pulumi.Resource]] = None) -> Optional[QueueSettings]:
    """On a cloud cluster with queueing on: Kueue installed (after `after`), then the stack's
    flavors; None with it off."""
    if not cfg.queueing.enabled:
        return None
    install = KueueInstall("kueue", after=after, opts=opts)
    return stack_queueing(cfg, stack, opts, after=[install])


class DeploymentQueue(pulumi.ComponentResource):
    """One Deployment's ClusterQueue and, in its namespace, the LocalQueue `default`."""

    def __init__(self, name: str, deployment: Deployment, namespace: pulumi.Input[str], settings: QueueSettings,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:DeploymentQueue", name, None, opts)
        after = pulumi.ResourceOptions(parent=self, depends_on=settings.after)
        cq_name = cluster_queue_name(settings.stack, deployment.namespace_name)
        metadata = object_metadata(cq_name, deployment=deployment.name)
        self.cluster_queue = k8s.apiextensions.CustomResource(
            f"{name}-clusterqueue", api_version=KUEUE_API_VERSION, kind="ClusterQueue",
            metadata=metadata, spec=cluster_queue_spec(deployment, settings.stack, settings.queueing), opts=after)
        self.local_queue = k8s.apiextensions.CustomResource(
            f"{name}-localqueue", api_version=KUEUE_API_VERSION, kind="LocalQueue",
            metadata=object_metadata(LOCAL_QUEUE, namespace, deployment=deployment.name),
            spec=local_queue_spec(settings.stack, deployment.namespace_name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*settings.after, self.cluster_queue]))
        self.register_outputs({"clusterQueue": cq_name, "localQueue": LOCAL_QUEUE})
