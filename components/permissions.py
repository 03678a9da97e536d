"""THE table of what the KubernetesPodOperator needs (and what explains its waiting tasks):
namespace RBAC and cloud IAM.

Every RBAC verb and cloud action the program grants is a row here; components, docs and
tests all read these tables, so a permission cannot be granted without appearing here.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

# For the type only: scripts/verify reads these tables where only the kubernetes client is installed.
if TYPE_CHECKING:
    from pulumi_kubernetes.rbac.v1 import PolicyRuleArgsDict


@dataclass(frozen=True)
class KpoPermission:
    call: str
    # As RBAC and `kubectl auth can-i` spell it: `pods/exec` in the core group,
    # `workloads.kueue.x-k8s.io` in another.
    resource: str
    verbs: tuple[str, ...]
    xcom_only: bool = False
    queueing_only: bool = False


# Derived from the cncf.kubernetes provider's calls (operators/pod.py, utils/pod_manager.py,
# triggers/pod.py), in sync and deferrable mode; and, with queueing, what shows a Deployment its
# queue (scripts/verify), read-only and in its namespace: no ClusterQueue (cluster-scoped, other
# Deployments' quota), no write to a LocalQueue or Workload (MUST_DENY_* below).
KPO_PERMISSIONS: tuple[KpoPermission, ...] = (
    # The janitor DAG (dags/remote_kpo_janitor.py) lists and deletes the orphans of this row's pods
    # through the same connection: no verb of its own.
    KpoPermission(
        "find pod by labels, create, poll, mark already_checked, delete",
        "pods",
        ("list", "create", "get", "patch", "delete"),
    ),
    KpoPermission("stream or poll logs", "pods/log", ("get",)),
    # The triggerer watches events and falls back to polling on 403.
    KpoPermission("pod events", "events", ("list", "watch")),
    # Not KPO's own: why a task waits (dags/remote_kpo_explain.py, from scripts/verify --explain and the
    # smoke DAG) compares the namespace's quota use with its limits. Read-only, this namespace only.
    KpoPermission("quota use against its limits, for why a task waits", "resourcequotas", ("list",)),
    # The WebSocket upgrade is a GET; Kubernetes 1.35 also checks create.
    KpoPermission(
        "read the XCom sidecar and stop it (do_xcom_push)",
        "pods/exec",
        ("create", "get"),
        xcom_only=True,
    ),
    # Kueue's own viewer roles grant the same (charts/kueue/templates/rbac/localqueue_viewer_role.yaml,
    # workload_viewer_role.yaml, pending_workloads_lq_viewer_role.yaml), here without watch.
    KpoPermission("read its LocalQueue: pending and admitted tasks (verify)", "localqueues.kueue.x-k8s.io",
                  ("get",), queueing_only=True),
    KpoPermission("list its tasks' Workloads: queued or admitted (verify)", "workloads.kueue.x-k8s.io",
                  ("list",), queueing_only=True),
    KpoPermission("its queued tasks' places in line (verify; Kueue's visibility API)",
                  "localqueues.visibility.kueue.x-k8s.io/pendingworkloads", ("get",), queueing_only=True),
)


def kpo_permissions(xcom: bool, queueing: bool = False) -> tuple[KpoPermission, ...]:
    """The rows that apply to a Deployment: pods/exec only with XCom push, the queue's only with
    queueing."""
    return tuple(p for p in KPO_PERMISSIONS if (xcom or not p.xcom_only) and (queueing or not p.queueing_only))


def rbac_resource(resource: str) -> tuple[str, str]:
    """(API group, resource as a Role names it) of a table spelling: `workloads.kueue.x-k8s.io`
    is ("kueue.x-k8s.io", "workloads"), `pods/exec` ("", "pods/exec")."""
    resource, slash, subresource = resource.partition("/")
    name, _, group = resource.partition(".")
    return group, name + slash + subresource


def kpo_role_rules(xcom: bool, queueing: bool = False) -> "list[PolicyRuleArgsDict]":
    """The namespace Role's rules, one per table row."""
    rules: "list[PolicyRuleArgsDict]" = []
    for p in kpo_permissions(xcom, queueing):
        group, resource = rbac_resource(p.resource)
        rules.append({"api_groups": [group], "resources": [resource], "verbs": list(p.verbs)})
    return rules


@dataclass(frozen=True)
class CloudActions:
    """Cloud IAM actions for one purpose on one cloud, with why they are needed."""

    why: str
    actions: tuple[str, ...]


# What a Deployment's cloud identity may do. Pod rights never appear here: they live in
# namespace RBAC above.
CLOUD_ACTIONS: dict[str, dict[str, CloudActions]] = {
    "gke": {
        "authenticate": CloudActions(
            "gke-gcloud-auth-plugin reads the cluster to mint a token",
            ("container.clusters.get",),
        ),
        # GKE's API: nodePools.create/delete need clusters.update, get/list need clusters.get.
        # Granted on this cluster only, by an IAM condition on its resource name.
        "ephemeralNodePools": CloudActions(
            "a DAG creates and deletes its own node pool in this cluster",
            ("container.clusters.get", "container.clusters.update"),
        ),
        # Waiting on the operation nodePools.create/delete return. Operations are named
        # projects/<p>/locations/<l>/operations/<id>, not below the cluster, so the cluster
        # condition cannot cover them; the permission only reads an operation's status.
        "nodePoolOperations": CloudActions(
            "a DAG waits for its node pool's create and delete operations",
            ("container.operations.get",),
        ),
        "actAsNodeServiceAccount": CloudActions(
            "a new node pool runs as the cluster's node service account",
            ("iam.serviceAccounts.actAs",),
        ),
    },
    "eks": {
        "authenticate": CloudActions(
            "aws eks get-token and kubeconfig refresh read the cluster",
            ("eks:DescribeCluster",),
        ),
        # The seed 004 DAG: EksCreateNodegroupOperator, EksNodegroupStateSensor,
        # EksDeleteNodegroupOperator. Granted per Deployment by tag: create only with the request
        # tag naming the Deployment, describe and delete only groups carrying it.
        "ephemeralNodePools": CloudActions(
            "a DAG creates, waits for and deletes its own node group",
            ("eks:CreateNodegroup", "eks:DescribeNodegroup", "eks:DeleteNodegroup"),
        ),
        # EKS authorizes the tags of a create request as eks:TagResource on the new group
        # (karpenter-provider-aws #4434, aws-cdk #7163). Granted only for the Deployment's own tag
        # on a group that has none yet: no retagging another Deployment's group.
        "tagOwnNodeGroups": CloudActions(
            "a DAG's node group gets the tag naming its Deployment as it is created",
            ("eks:TagResource",),
        ),
        # EKS creates AWSServiceRoleForAmazonEKSNodegroup with the permissions of whoever makes
        # the account's first managed node group ("Using roles for Amazon EKS node groups");
        # with Auto Mode nothing else makes one first. Granted on that role only.
        "nodegroupServiceLinkedRole": CloudActions(
            "the account's first node group: EKS creates its node-group service-linked role as the caller",
            ("iam:CreateServiceLinkedRole",),
        ),
        "passNodeRole": CloudActions(
            "a new node group runs as the stack's node-group role (passed to EKS only)",
            ("iam:PassRole",),
        ),
    },
    "aks": {
        # kubelogin's workload-identity login needs no Azure role: Entra ID issues the token.
        "authenticate": CloudActions("kubelogin exchanges the federated token", ()),
        "ephemeralNodePools": CloudActions(
            "a DAG creates, waits for and deletes its own agent pool",
            (
                "Microsoft.ContainerService/managedClusters/agentPools/read",
                "Microsoft.ContainerService/managedClusters/agentPools/write",
                "Microsoft.ContainerService/managedClusters/agentPools/delete",
            ),
        ),
    },
}


# What no Deployment identity may do, as (verb, resource) with resource as `kubectl auth can-i`
# and RBAC spell it (`pods/exec`, `roles.rbac.authorization.k8s.io`). The end-to-end access
# matrix (tests/e2e/matrix.py) and `scripts/verify` (consumer/verify.py) both ask the API
# server's authorizer for each and expect "no".
MUST_DENY_IN_NAMESPACE: tuple[tuple[str, str], ...] = (
    ("watch", "pods"), ("update", "pods"), ("deletecollection", "pods"), ("patch", "pods/status"),
    ("create", "pods/attach"), ("create", "pods/portforward"), ("create", "pods/eviction"),
    ("get", "secrets"), ("list", "secrets"), ("get", "configmaps"), ("list", "configmaps"),
    ("get", "serviceaccounts"), ("create", "serviceaccounts/token"), ("create", "events"),
    ("create", "deployments.apps"), ("create", "jobs.batch"), ("update", "resourcequotas"),
    ("delete", "limitranges"), ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("escalate", "roles.rbac.authorization.k8s.io"), ("bind", "roles.rbac.authorization.k8s.io"),
    # Queueing: a Deployment cannot requeue, reprioritise or drop its tasks, nor change its queue.
    ("create", "localqueues.kueue.x-k8s.io"), ("update", "localqueues.kueue.x-k8s.io"),
    ("delete", "localqueues.kueue.x-k8s.io"), ("patch", "workloads.kueue.x-k8s.io"),
    ("delete", "workloads.kueue.x-k8s.io"), ("patch", "workloads.kueue.x-k8s.io/status"),
)
MUST_DENY_CLUSTER_WIDE: tuple[tuple[str, str], ...] = (
    ("list", "nodes"), ("get", "nodes"), ("list", "namespaces"), ("create", "namespaces"),
    ("delete", "namespaces"), ("list", "persistentvolumes"), ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"), ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "users"), ("impersonate", "groups"), ("impersonate", "serviceaccounts"),
    ("create", "certificatesigningrequests.certificates.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    # Queueing: other Deployments' quota and tasks, and the cohort's flavors.
    ("get", "clusterqueues.kueue.x-k8s.io"), ("list", "clusterqueues.kueue.x-k8s.io"),
    ("update", "clusterqueues.kueue.x-k8s.io"), ("list", "resourceflavors.kueue.x-k8s.io"),
    ("list", "workloads.kueue.x-k8s.io"), ("list", "localqueues.kueue.x-k8s.io"),
)


# ---- task pods (issue 16) ------------------------------------------------------------------

# The ServiceAccount task pods run as to get a cloud identity (`taskIdentity`). The Deployment
# needs no extra RBAC to name it in a pod (creating a pod that runs as a ServiceAccount is
# allowed to whoever may create pods), and none to read its tokens (the Role has no secrets or
# serviceaccounts/token).
TASK_SERVICE_ACCOUNT = "remote-kpo-task"
# The registries pull Secret on the ServiceAccounts task pods run as (components/task_pods.py).
PULL_SECRET = "remote-kpo-registries"
# On existing: the Deployment's own ServiceAccount and its token Secret (stacks/existing.py).
DEPLOYMENT_SERVICE_ACCOUNT = "remote-kpo"
DEPLOYMENT_TOKEN_SECRET = "remote-kpo-token"


@dataclass(frozen=True)
class TaskIdentityBinding:
    """How one cloud lets pods of exactly one ServiceAccount act as the task identity."""

    why: str
    grant: str  # what is granted, exactly as the component passes it
    subject: str  # the only principal it names: {namespace} and {project} filled in per Deployment


# Every task identity binding the program makes is one row here, and names the Deployment's
# `remote-kpo-task` ServiceAccount only (the policy pack's task-identity-one-service-account rule
# refuses any other).
TASK_IDENTITY_BINDINGS: dict[str, TaskIdentityBinding] = {
    # GKE Workload Identity: the member is the KSA in the cluster's workload pool
    # (<project>.svc.id.goog).
    "gke": TaskIdentityBinding(
        "pods running as the namespace's remote-kpo-task get tokens of the task's Google service account",
        "roles/iam.workloadIdentityUser",
        "serviceAccount:{workload_pool}[{namespace}/" + TASK_SERVICE_ACCOUNT + "]",
    ),
    # EKS Pod Identity: the association names one namespace and one ServiceAccount.
    "eks": TaskIdentityBinding(
        "EKS Pod Identity hands the task role's credentials to pods running as the namespace's remote-kpo-task",
        "aws:eks/podIdentityAssociation:PodIdentityAssociation",
        "{namespace}/" + TASK_SERVICE_ACCOUNT,
    ),
    # AKS workload identity: a federated credential for the cluster issuer's token of one KSA.
    "aks": TaskIdentityBinding(
        "Entra ID exchanges the cluster's token for the namespace's remote-kpo-task for the task identity's",
        "azure-native:managedidentity:FederatedIdentityCredential",
        "system:serviceaccount:{namespace}:" + TASK_SERVICE_ACCOUNT,
    ),
}


def task_identity_subject(cloud: str, namespace: str, workload_pool: str = "") -> str:
    return TASK_IDENTITY_BINDINGS[cloud].subject.format(namespace=namespace, workload_pool=workload_pool)


# What the nodes' own identities get for task images, beyond what the cluster needs anyway.
# The AKS kubelet identity: the built-in AcrPull role on each registry in `aks.acrIds`, whose
# only action is the one below (Azure built-in roles, Containers: AcrPull,
# https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/containers#acrpull).
# GKE and EKS nodes already pull from their own project's or account's registry
# (roles/artifactregistry.reader; AmazonEC2ContainerRegistryPullOnly).
NODE_ACTIONS: dict[str, dict[str, CloudActions]] = {
    "aks": {
        "acrPull": CloudActions(
            "the kubelet pulls task images from the registries in aks.acrIds",
            ("Microsoft.ContainerRegistry/registries/pull/read",),
        ),
    },
}
# The built-in AcrPull role definition (the same GUID in every subscription).
ACR_PULL_ROLE_DEFINITION = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
