"""TenantAdmission: what keeps one Deployment's tasks from hurting another's through the API
(issue 20), with what Kubernetes itself offers on every cluster.

RBAC lets a Deployment create and patch pods in its namespace; what those pods may say is
bounded here:

- ResourceQuotas that admit no pod at all of a kind (`hard: {pods: "0"}` with a scope), for every
  request in the namespace, admins' included: pods of the system PriorityClasses (which preempt
  other tenants' tasks), pods with cross-namespace (anti-)affinity (which keep other tenants'
  pods off nodes), and BestEffort pods (which request nothing, so no quota counts what they use;
  the LimitRange gives every container requests unless it sets zeros).
  https://kubernetes.io/docs/concepts/policy/resource-quotas/#quota-scopes
- One ValidatingAdmissionPolicy (GA since Kubernetes 1.30) and its binding per Deployment, for
  requests made as the Deployment's own identity (the RoleBinding's subject; admins and the
  cluster's controllers are not held back) in its namespace only. Each refusal says what is
  refused and why, in words a DAG author can act on; the priority and affinity rules repeat the
  quotas above so that the author reads why instead of a quota name.
  https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/

The policy and its binding are cluster-scoped. Two stacks may share a cluster, so their names
carry the stack and the namespace (which only one stack can own), and the binding selects that
one namespace: one stack's destroy never removes another's protection.

The ValidatingAdmissionPolicy plugin runs before ResourceQuota in kube-apiserver's admission
chain (pkg/kubeapiserver/options/plugins.go, AllOrderedPlugins), so the Deployment meets the
policy's message first.
"""

import json
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.admissionregistration.v1 import (
    MatchResourcesArgsDict,
    ValidatingAdmissionPolicyBindingSpecArgsDict,
    ValidatingAdmissionPolicySpecArgsDict,
    ValidationArgsDict,
    VariableArgsDict,
)
from pulumi_kubernetes.core.v1 import ResourceQuotaSpecArgsDict
from pulumi_kubernetes.meta.v1 import ObjectMetaArgsDict
from pulumi_kubernetes.rbac.v1 import SubjectArgsDict

from components.gpu import GPU_LABELS, GPU_RESOURCE, GPU_TAINT
from components.names import stack_scoped
from components.permissions import DEPLOYMENT_TOKEN_SECRET, PULL_SECRET, TASK_SERVICE_ACCOUNT
from config import Deployment

# The PriorityClasses every cluster has for its own components (scheduling/v1, built in): a pod
# that names one preempts lower-priority pods, other tenants' tasks included.
SYSTEM_PRIORITY_CLASSES = ("system-node-critical", "system-cluster-critical")
# The label KubernetesPodOperator patches onto a pod it has finished with (operators/pod.py of
# apache-airflow-providers-cncf-kubernetes, `patch_already_checked`: body
# {"metadata": {"labels": {"already_checked": "True"}}}); the only change it makes to a pod.
KPO_CHECKED_LABEL = ("already_checked", "True")
DEFAULT_SERVICE_ACCOUNT = "default"
# Secrets the program puts in a Deployment's namespace that its pods must not read: the
# Deployment's own token (existing), and the registry login, which reaches pods only as
# imagePullSecrets (the kubelet pulls with it; the ServiceAccount admission plugin adds it).
PROTECTED_SECRETS = (DEPLOYMENT_TOKEN_SECRET, PULL_SECRET)

# name -> spec of the quotas that admit no pod of a kind.
FORBIDDING_QUOTAS: dict[str, ResourceQuotaSpecArgsDict] = {
    "remote-kpo-no-system-priority": {"hard": {"pods": "0"}, "scope_selector": {"match_expressions": [
        {"scope_name": "PriorityClass", "operator": "In", "values": list(SYSTEM_PRIORITY_CLASSES)}]}},
    "remote-kpo-no-cross-namespace-affinity": {"hard": {"pods": "0"}, "scope_selector": {"match_expressions": [
        {"scope_name": "CrossNamespacePodAffinity", "operator": "Exists"}]}},
    "remote-kpo-no-best-effort": {"hard": {"pods": "0"}, "scopes": ["BestEffort"]},
}

MESSAGE_PREFIX = "remote-kpo: "


def cel_string(value: str) -> str:
    """A CEL string literal (JSON's escapes are CEL's)."""
    return json.dumps(value)


def cel_list(values) -> str:
    return "[" + ", ".join(cel_string(v) for v in values) + "]"


def identity_condition(subject: SubjectArgsDict) -> pulumi.Output[str]:
    """CEL that holds for requests made as `subject`, the identity the Deployment's RoleBinding
    names, as the authorizer sees it: a User's username (gke: the Google service account's email;
    aks: the managed identity's principal id), a Group among the user's groups (eks: the access
    entry's group), a ServiceAccount's `system:serviceaccount:<namespace>:<name>` (existing)."""
    kind = subject["kind"]
    name = pulumi.Output.from_input(subject["name"])
    if kind == "User":
        return name.apply(lambda n: f"request.userInfo.username == {cel_string(n)}")
    if kind == "Group":
        return name.apply(lambda n: f"{cel_string(n)} in request.userInfo.groups")
    if kind == "ServiceAccount":
        namespace = subject.get("namespace")
        return name.apply(
            lambda n: f"request.userInfo.username == {cel_string(f'system:serviceaccount:{namespace}:{n}')}")
    raise ValueError(f"unknown RBAC subject kind {kind}")


def allowed_service_accounts(deployment: Deployment) -> list[str]:
    """What a task pod may run as: `default`, and `remote-kpo-task` when it is made. Not
    `remote-kpo`, the Deployment's own account on existing, nor any other of the namespace."""
    return [DEFAULT_SERVICE_ACCOUNT] + ([TASK_SERVICE_ACCOUNT] if deployment.task_identity is not None else [])


GPU_LABEL = next(iter(GPU_LABELS))

VARIABLES: list[VariableArgsDict] = [
    {"name": "containers", "expression": "object.spec.containers + object.spec.?initContainers.orValue([])"},
    {"name": "affinityTerms", "expression": " + ".join(
        f"object.spec.?affinity.?{kind}.?requiredDuringSchedulingIgnoredDuringExecution.orValue([]) + "
        f"object.spec.?affinity.?{kind}.?preferredDuringSchedulingIgnoredDuringExecution.orValue([])"
        ".map(w, w.podAffinityTerm)"
        for kind in ("podAffinity", "podAntiAffinity"))},
    {"name": "targetsGpuPool", "expression": (
        f"object.spec.?nodeSelector[?{cel_string(GPU_LABEL)}].hasValue() || "
        "object.spec.?affinity.?nodeAffinity.?requiredDuringSchedulingIgnoredDuringExecution"
        f".?nodeSelectorTerms.orValue([]).exists(t, t.?matchExpressions.orValue([]).exists(e, e.key == {cel_string(GPU_LABEL)})) || "
        # A toleration of the GPU taint, or of every taint (empty key, Exists).
        f"object.spec.?tolerations.orValue([]).exists(t, t.?key.orValue('') == {cel_string(GPU_TAINT['key'])} || "
        "(t.?key.orValue('') == '' && t.?operator.orValue('') == 'Exists'))")},
    {"name": "requestsGpu", "expression": (
        "variables.containers.exists(c, "
        f"[c.?resources.?limits[?{cel_string(GPU_RESOURCE)}], c.?resources.?requests[?{cel_string(GPU_RESOURCE)}]]"
        ".exists(q, q.hasValue() && quantity(string(q.value())).isGreaterThan(quantity('0'))))")},
    {"name": "labels", "expression": "object.metadata.?labels.orValue({})"},
    {"name": "oldLabels", "expression": "oldObject.metadata.?labels.orValue({})"},
]


def _on_create(expression: str) -> str:
    return f"request.operation != 'CREATE' || ({expression})"


def _on_update(expression: str) -> str:
    return f"request.operation != 'UPDATE' || ({expression})"


def validations(deployment: Deployment) -> list[ValidationArgsDict]:
    """The rules, each with the message a refused DAG author reads."""
    accounts = allowed_service_accounts(deployment)
    label, value = KPO_CHECKED_LABEL
    secret_refs = (
        f"object.spec.?volumes.orValue([]).exists(v, v.?secret.?secretName.orValue('') in {cel_list(PROTECTED_SECRETS)} || "
        f"v.?projected.?sources.orValue([]).exists(s, s.?secret.?name.orValue('') in {cel_list(PROTECTED_SECRETS)})) || "
        "variables.containers.exists(c, "
        f"c.?env.orValue([]).exists(e, e.?valueFrom.?secretKeyRef.?name.orValue('') in {cel_list(PROTECTED_SECRETS)}) || "
        f"c.?envFrom.orValue([]).exists(f, f.?secretRef.?name.orValue('') in {cel_list(PROTECTED_SECRETS)}))")
    rules = [
        (_on_create(f"!(object.spec.?priorityClassName.orValue('') in {cel_list(SYSTEM_PRIORITY_CLASSES)})"),
         f"priorityClassName {' and '.join(SYSTEM_PRIORITY_CLASSES)} are reserved for the cluster's own "
         "components: a task with one would preempt (evict) other Deployments' tasks; leave priority_class_name unset"),
        (_on_create("variables.affinityTerms.all(t, t.?namespaces.orValue([]).size() == 0 && !has(t.namespaceSelector))"),
         "pod (anti-)affinity may only refer to pods of this namespace: namespaces and namespaceSelector "
         "in an affinity term are not allowed (they would let a task keep other Deployments' pods off nodes)"),
        (_on_create("!has(object.spec.nodeName)"),
         "spec.nodeName is not allowed; let the scheduler place the pod (nodeName skips the scheduler, "
         "and with it node taints and other tasks' claims on the node)"),
        (_on_create("!variables.targetsGpuPool || variables.requestsGpu"),
         f"a pod that selects or tolerates the GPU pool (node label {GPU_LABEL}, taint {GPU_TAINT['key']}, or "
         f"a toleration of every taint) must request a GPU ({GPU_RESOURCE} in container_resources limits); "
         "otherwise it would hold a GPU node without using its GPU"),
        (_on_create(f"object.spec.?serviceAccountName.orValue({cel_string(DEFAULT_SERVICE_ACCOUNT)}) in {cel_list(accounts)}"),
         f"a task pod runs as the ServiceAccount {' or '.join(accounts)} (service_account_name), not as "
         "another account of the namespace such as the Deployment's own"),
        (_on_create(f"!({secret_refs})"),
         f"the Secrets {' and '.join(PROTECTED_SECRETS)} (the Deployment's credentials and its registry "
         "login) cannot be mounted or put in the environment; images are pulled with the registry "
         "login through the ServiceAccount's imagePullSecrets"),
        (_on_update("object.spec == oldObject.spec && "
                    "object.metadata.?annotations.orValue({}) == oldObject.metadata.?annotations.orValue({}) && "
                    "object.metadata.?finalizers.orValue([]) == oldObject.metadata.?finalizers.orValue([]) && "
                    "object.metadata.?ownerReferences.orValue([]) == oldObject.metadata.?ownerReferences.orValue([])"),
         f"a pod cannot be changed once created (image, tolerations, annotations, ...): only the label "
         f"{label}={value} may be added, as KubernetesPodOperator does"),
        (_on_update("variables.labels.all(k, (k in variables.oldLabels && variables.oldLabels[k] == variables.labels[k]) "
                    f"|| (k == {cel_string(label)} && variables.labels[k] == {cel_string(value)})) && "
                    "variables.oldLabels.all(k, k in variables.labels)"),
         f"a pod's labels cannot be changed once created: only the label {label}={value} may be added, "
         "as KubernetesPodOperator does"),
    ]
    return [{"expression": expression, "message": MESSAGE_PREFIX + message, "reason": "Forbidden"}
            for expression, message in rules]


def policy_name(stack: str, namespace: str) -> str:
    """`remote-kpo-<stack>-<namespace>` as a DNS subdomain: unique per namespace (which one stack
    owns), and saying which stack made it."""
    return stack_scoped(stack, namespace)


def match_resources(namespace: pulumi.Input[str]) -> MatchResourcesArgsDict:
    """The one namespace, with what the API server would default spelt out: MatchResources is an
    atomic struct for server-side apply, so a value that differs from the stored one only by its
    defaults conflicts with the stored one's manager when a later `up` adopts the object (after an
    interrupted `up`, for instance). SetDefaults_MatchResources and SetDefaults_Rule in
    k8s.io/kubernetes pkg/apis/admissionregistration/v1/defaults.go."""
    return {"match_policy": "Equivalent", "object_selector": {},
            "namespace_selector": {"match_expressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}]}}


def policy_spec(deployment: Deployment, subject: SubjectArgsDict,
                namespace: pulumi.Input[str]) -> ValidatingAdmissionPolicySpecArgsDict:
    return {
        # A rule that cannot be evaluated refuses the request.
        "failure_policy": "Fail",
        "match_constraints": {
            **match_resources(namespace),
            "resource_rules": [{"api_groups": [""], "api_versions": ["v1"], "operations": ["CREATE", "UPDATE"],
                                "resources": ["pods"], "scope": "*"}],
        },
        "match_conditions": [{"name": "deployment-identity", "expression": identity_condition(subject)}],
        "variables": VARIABLES,
        "validations": validations(deployment),
    }


def binding_spec(name: pulumi.Input[str], namespace: pulumi.Input[str]) -> ValidatingAdmissionPolicyBindingSpecArgsDict:
    return {"policy_name": name, "validation_actions": ["Deny"],
            "match_resources": match_resources(namespace)}


class TenantAdmission(pulumi.ComponentResource):
    """The forbidding quotas in the Deployment's namespace, and its admission policy and binding."""

    def __init__(self, name: str, deployment: Deployment, subject: SubjectArgsDict,
                 namespace: pulumi.Output[str], metadata: ObjectMetaArgsDict,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:TenantAdmission", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.quotas = [
            k8s.core.v1.ResourceQuota(
                f"{name}-{quota_name.removeprefix('remote-kpo-')}",
                metadata={**metadata, "name": quota_name},
                spec=spec, opts=child)
            for quota_name, spec in FORBIDDING_QUOTAS.items()
        ]
        cluster_name = policy_name(pulumi.get_stack(), deployment.namespace_name)
        # Cluster-scoped: the namespaced metadata's labels and stack annotation, not its namespace.
        cluster_metadata: ObjectMetaArgsDict = {"labels": metadata.get("labels", {}),
                                                "annotations": metadata.get("annotations", {})}
        self.policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-policy",
            metadata={**cluster_metadata, "name": cluster_name},
            spec=policy_spec(deployment, subject, namespace),
            opts=child)
        self.binding = k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            f"{name}-policy-binding",
            metadata={**cluster_metadata, "name": cluster_name},
            spec=binding_spec(self.policy.metadata.apply(lambda _: cluster_name), namespace),
            opts=child)
        self.register_outputs({"policy": cluster_name})
