"""The policy pack (policy/): its rules on every example stack's mock-registered resources, and
on violating resources made from them.

The rules are plain functions (policy/rules.py), called here the way pulumi_policy calls them:
`props` is a read-only Mapping/Sequence view with secrets unwrapped, under the SDK's wire
names, as the engine passes a resource's inputs. The last test runs the same resources through
the real pulumi_policy pack in policy/venv, when that venv exists.
"""

import copy
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from types import SimpleNamespace

import pytest
import yaml
from pulumi.runtime import rpc

import config
from components import access, metadata
from harness import ROOT, run_program, stack_config
from policy import rules
from test_aks_stack import AzureMocks
from harness import ADMIN_KUBECONFIG
from test_eks_stack import EksMocks
from test_gke_stack import GkeMocks
from policy_task_cases import TASK_IDENTITY_VIOLATIONS

pytestmark = pytest.mark.filterwarnings(r"ignore:gcp\.compute\.\w+ has been deprecated:DeprecationWarning")

# Rules that see one resource at a time; STACK_RULES see every resource of a stack at once.
RULES = {rule.name: rule for rule in rules.RULES if not rule.stack}
STACK_RULES = {rule.name: rule for rule in rules.RULES if rule.stack}
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
GKE_CLUSTER = "gcp:container/cluster:Cluster"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
AKS_CLUSTER = "azure-native:containerservice:ManagedCluster"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
NAMESPACE = "kubernetes:core/v1:Namespace"
ACCESS_POLICY_ASSOCIATION = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"

# pulumi_policy.proxy's sentinels for values unknown during preview.
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
UNKNOWN_ARRAY = "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2"
UNKNOWN_OBJECT = "dd056dcd-154b-4c76-9bd3-c8f88648b5ff"
UNKNOWNS = (UNKNOWN_STRING, UNKNOWN_ARRAY, UNKNOWN_OBJECT)
POLICY_PYTHON = ROOT / "policy" / "venv" / "bin" / "python"


# ---- the engine's view of a resource ------------------------------------------------------

class UnknownValueError(Exception):
    """Stands in for pulumi_policy.proxy.UnknownValueError (rules recognise it by name)."""


def _checked(value):
    if isinstance(value, str) and value in UNKNOWNS:
        raise UnknownValueError(value)
    return value


class EngineMapping(Mapping):
    """Like pulumi_policy's _DictProxy: a Mapping (not a dict) that raises on unknowns."""

    def __init__(self, target: dict):
        self._target = target

    def __getitem__(self, key):
        return _checked(self._target[key])

    def __iter__(self):
        return iter(self._target)

    def __len__(self):
        return len(self._target)


class EngineSequence(Sequence):
    def __init__(self, target: list):
        self._target = target

    def __getitem__(self, index):
        return _checked(self._target[index])

    def __len__(self):
        return len(self._target)


def engine_props(value):
    """Mock inputs as the policy engine hands them to a rule: secrets unwrapped, proxied."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return engine_props(value["value"])
        return EngineMapping({key: engine_props(item) for key, item in value.items()})
    if isinstance(value, list):
        return EngineSequence([engine_props(item) for item in value])
    return value


def violations(rule_name: str, typ: str, props: dict, name: str = "resource") -> list[str]:
    found: list[str] = []
    args = SimpleNamespace(resource_type=typ, props=engine_props(props), name=name,
                           urn=f"urn:pulumi:test::remote-kpo::{typ}::{name}")
    RULES[rule_name].validate(args, lambda message, urn=None: found.append(message))
    return found


def stack_violations(resources: list[tuple[str, str, dict]]) -> dict[str, list[str]]:
    """What each stack rule reports on a stack of (type, name, inputs)."""
    args = SimpleNamespace(resources=[
        SimpleNamespace(resource_type=typ, props=engine_props(inputs), name=name,
                        urn=f"urn:pulumi:test::remote-kpo::{typ}::{name}") for typ, name, inputs in resources])
    found: dict[str, list[str]] = {}
    for rule_name, rule in STACK_RULES.items():
        rule.validate(args, lambda message, urn=None, rule_name=rule_name: found.setdefault(rule_name, []).append(message))
    return found


def all_violations(typ: str, props: dict, name: str = "resource") -> dict[str, list[str]]:
    found = {rule: violations(rule, typ, props, name) for rule in RULES}
    return {rule: messages for rule, messages in found.items() if messages}


# ---- the example stacks -------------------------------------------------------------------

@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict:
    """stack -> [(type, name, inputs)] of every resource the example stack registers."""
    kubeconfig = tmp_path_factory.mktemp("dev") / "admin.kubeconfig"
    kubeconfig.write_text(ADMIN_KUBECONFIG)
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(kubeconfig))
        runs["dev"] = run_program(stack_config("dev"))
        runs["onprem"] = run_program(stack_config("onprem"), stack="onprem")
    runs["gke"] = run_program(stack_config("gke"), stack="gke", mocks=GkeMocks())
    runs["eks"] = run_program(stack_config("eks"), stack="eks", mocks=EksMocks())
    runs["aks"] = run_program(stack_config("aks"), stack="aks", mocks=AzureMocks())
    return {stack: [(r.typ, r.name, r.inputs) for r in run.resources] for stack, run in runs.items()}


def inputs_of(examples: dict, stack: str, name: str, typ: str | None = None) -> dict:
    """A deep copy (to mutate) of one example resource's inputs."""
    (inputs,) = [i for t, n, i in examples[stack] if n == name and (typ is None or t == typ)]
    return copy.deepcopy(inputs)


@pytest.mark.parametrize("stack", ["dev", "onprem", "gke", "eks", "aks"])
def test_every_example_stack_passes_every_rule(examples, stack):
    found = {f"{typ} {name}": bad for typ, name, inputs in examples[stack]
             if (bad := all_violations(typ, inputs, name))}
    assert found == {}
    assert stack_violations(examples[stack]) == {}
    assert len(examples[stack]) > 5


def test_each_deployment_role_says_whether_its_deployment_has_xcom(examples):
    labels = {name: inputs["metadata"]["labels"] for typ, name, inputs in examples["dev"] if typ == ROLE}
    assert {name: label[rules.XCOM_LABEL] for name, label in labels.items()} == {
        "analytics-role": "true", "ml-training-role": "false"}
    assert labels["analytics-role"][rules.MANAGED_BY_LABEL] == "remote-kpo"
    assert (rules.XCOM_LABEL, rules.MANAGED_BY_LABEL) == (access.XCOM_LABEL, *metadata.MANAGED_BY)


# ---- violating resources: one builder per case, each from an example resource --------------

def _role_with(field, value):
    def build(ex):
        role = inputs_of(ex, "dev", "analytics-role")
        role["rules"][0][field] = value
        return ROLE, role
    return build


def _cluster_role_with_non_resource_urls(ex):
    role = inputs_of(ex, "dev", "analytics-role")
    del role["metadata"]["namespace"]
    role["rules"].append({"nonResourceURLs": ["/metrics/*"], "verbs": ["get"]})
    return CLUSTER_ROLE, role


def _as_type(typ, stack, name):
    return lambda ex: (typ, inputs_of(ex, stack, name))


def _binding_to_cluster_role(ex):
    binding = inputs_of(ex, "eks", "analytics-rolebinding")
    binding["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}
    return ROLE_BINDING, binding


def _no_xcom_role_with_exec(ex):
    role = inputs_of(ex, "dev", "ml-training-role")
    role["rules"].append({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]})
    return ROLE, role


def _xcom_role_relabelled(value):
    def build(ex):
        role = inputs_of(ex, "gke", "analytics-role")
        if value is None:
            del role["metadata"]["labels"][rules.XCOM_LABEL]
        else:
            role["metadata"]["labels"][rules.XCOM_LABEL] = value
        return ROLE, role
    return build


def _gcp_custom_role_with_pods(ex):
    role = inputs_of(ex, "gke", "kpo-gpu-prod-auth")
    role["permissions"].append("container.pods.exec")
    return "gcp:projects/iAMCustomRole:IAMCustomRole", role


def _gcp_member_with(role):
    def build(ex):
        member = inputs_of(ex, "gke", "analytics-gcp-authenticate")
        member["role"] = role
        return "gcp:projects/iAMMember:IAMMember", member
    return build


def _gcp_policy_with_developer(ex):
    return "gcp:projects/iAMPolicy:IAMPolicy", {"project": "acme-data-platform", "policyData": json.dumps(
        {"bindings": [{"role": "roles/container.developer",
                       "members": ["serviceAccount:astro-analytics@acme-astro.iam.gserviceaccount.com"]}]})}


def _aws_access_policy_with(statement):
    def build(ex):
        policy = inputs_of(ex, "eks", "ml-training-access-policy")
        document = json.loads(policy["policy"])
        document["Statement"].append(statement)
        policy["policy"] = json.dumps(document)
        return "aws:iam/rolePolicy:RolePolicy", policy
    return build


def _aws_admin_attachment(ex):
    attachment = inputs_of(ex, "eks", "kpo-gpu-node-AmazonEKSWorkerNodeMinimalPolicy")
    attachment["policyArn"] = "arn:aws:iam::aws:policy/AdministratorAccess"
    return "aws:iam/rolePolicyAttachment:RolePolicyAttachment", attachment


def _aws_access_role_trusting_the_account(ex):
    role = inputs_of(ex, "eks", "analytics-access-role")
    role["assumeRolePolicy"] = role["assumeRolePolicy"].replace(
        "role/astro-analytics-workload", "root")
    return "aws:iam/role:Role", role


def _azure_role_definition_with(key, value):
    def build(ex):
        definition = inputs_of(ex, "aks", "aks-agent-pool-role")
        definition["permissions"][0][key] = value
        return ROLE_DEFINITION, definition
    return build


def _azure_assignment_of(guid):
    def build(ex):
        assignment = inputs_of(ex, "aks", "ml-training-azure-agent-pools")
        assignment["roleDefinitionId"] = f"/subscriptions/0b1c/providers/Microsoft.Authorization/roleDefinitions/{guid}"
        return ROLE_ASSIGNMENT, assignment
    return build


def _mutated(stack, name, typ, change):
    def build(ex):
        inputs = inputs_of(ex, stack, name, typ)
        change(inputs)
        return typ, inputs
    return build


def _access_policy_association(ex):
    return ACCESS_POLICY_ASSOCIATION, {
        "clusterName": "kpo-gpu",
        "principalArn": "arn:aws:iam::123456789012:role/analytics-access-role",
        "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
        "accessScope": {"type": "cluster"},
    }


def _masters_access_entry(ex):
    entry = inputs_of(ex, "eks", "analytics-access-entry")
    entry["kubernetesGroups"] = ["system:masters"]
    return "aws:eks/accessEntry:AccessEntry", entry


def _namespace_with_enforce(stack, value):
    def build(ex):
        namespace = inputs_of(ex, stack, "analytics-namespace", NAMESPACE)
        labels = namespace["metadata"]["labels"]
        if value is None:
            del labels[rules.POD_SECURITY_ENFORCE_LABEL]
        else:
            labels[rules.POD_SECURITY_ENFORCE_LABEL] = value
        return NAMESPACE, namespace
    return build


def _namespace_list_with_a_privileged_item(ex):
    namespace = inputs_of(ex, "dev", "ml-training-namespace", NAMESPACE)
    namespace["metadata"]["labels"][rules.POD_SECURITY_ENFORCE_LABEL] = "privileged"
    return NAMESPACE + "List", {"items": [inputs_of(ex, "dev", "analytics-namespace", NAMESPACE), namespace]}


def _namespace_patch_to_privileged(ex):
    return NAMESPACE + "Patch", {"metadata": {"name": "kpo-analytics", "labels": {
        rules.POD_SECURITY_ENFORCE_LABEL: "privileged"}}}


VIOLATIONS = {
    "namespace-pod-security": {
        "no-enforce-label": _namespace_with_enforce("dev", None),
        "privileged": _namespace_with_enforce("aks", "privileged"),
        "list-item-privileged": _namespace_list_with_a_privileged_item,
        "patch-to-privileged": _namespace_patch_to_privileged,
    },
    "no-rbac-wildcard": {
        "verb": _role_with("verbs", ["*"]),
        "resource": _role_with("resources", ["pods/*"]),
        "api-group": _role_with("apiGroups", ["*"]),
        "non-resource-url": _cluster_role_with_non_resource_urls,
    },
    "no-cluster-scoped-rbac": {
        "cluster-role-binding": _as_type(CLUSTER_ROLE_BINDING, "dev", "analytics-rolebinding"),
        "cluster-role": _as_type(CLUSTER_ROLE, "aks", "analytics-role"),
        "role-binding-to-cluster-role": _binding_to_cluster_role,
    },
    "pods-exec-only-with-xcom": {
        "exec-in-xcom-false-role": _no_xcom_role_with_exec,
        "exec-relabelled-false": _xcom_role_relabelled("false"),
        "exec-without-label": _xcom_role_relabelled(None),
    },
    "no-iam-pod-rights": {
        "gcp-custom-role-container-pods": _gcp_custom_role_with_pods,
        "gcp-container-developer": _gcp_member_with("roles/container.developer"),
        "gcp-editor": _gcp_member_with("roles/editor"),
        "gcp-iam-policy": _gcp_policy_with_developer,
        "aws-eks-star": _aws_access_policy_with({"Effect": "Allow", "Action": "eks:*", "Resource": "*"}),
        "aws-star": _aws_access_policy_with({"Effect": "Allow", "Action": ["*"], "Resource": "*"}),
        "aws-access-entry-actions": _aws_access_policy_with(
            {"Effect": "Allow", "Action": ["eks:CreateAccessEntry", "eks:AssociateAccessPolicy"], "Resource": "*"}),
        "aws-not-action": _aws_access_policy_with({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}),
        "aws-administrator-access": _aws_admin_attachment,
        "aws-trust-of-account-root": _aws_access_role_trusting_the_account,
        "azure-pod-data-action": _azure_role_definition_with(
            "dataActions", ["Microsoft.ContainerService/managedClusters/pods/exec/action"]),
        "azure-star-data-action": _azure_role_definition_with("dataActions", ["*"]),
        "azure-star-action": _azure_role_definition_with("actions", ["*"]),
        "azure-rbac-cluster-admin": _azure_assignment_of("b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"),
    },
    "gke-private-nodes": {
        "cluster": _mutated("gke", "kpo-gpu-prod-cluster", GKE_CLUSTER,
                            lambda c: c["privateClusterConfig"].update(enablePrivateNodes=False)),
        "cluster-without-config": _mutated("gke", "kpo-gpu-prod-cluster", GKE_CLUSTER,
                                           lambda c: c.pop("privateClusterConfig")),
        "node-pool": _mutated("gke", "gpu", GKE_NODE_POOL,
                              lambda p: p.update(networkConfig={"enablePrivateNodes": False})),
    },
    "gke-workload-identity": {
        "no-pool": _mutated("gke", "kpo-gpu-prod-cluster", GKE_CLUSTER, lambda c: c.pop("workloadIdentityConfig")),
        "empty-pool": _mutated("gke", "kpo-gpu-prod-cluster", GKE_CLUSTER,
                               lambda c: c.update(workloadIdentityConfig={"workloadPool": ""})),
    },
    "gke-deletion-protection": {
        "off": _mutated("gke", "kpo-gpu-prod-cluster", GKE_CLUSTER, lambda c: c.update(deletionProtection=False)),
    },
    "gke-workload-metadata": {
        "node-pool-gce-metadata": _mutated(
            "gke", "gpu", GKE_NODE_POOL,
            lambda p: p["nodeConfig"]["workloadMetadataConfig"].update(mode="GCE_METADATA")),
        "node-pool-unset": _mutated("gke", "system", GKE_NODE_POOL,
                                    lambda p: p["nodeConfig"].pop("workloadMetadataConfig")),
        "cluster-default-pool": _mutated("gke", "kpo-gpu-prod-cluster", GKE_CLUSTER,
                                         lambda c: c["nodeConfig"].pop("workloadMetadataConfig")),
    },
    "eks-secrets-encryption": {
        "none": _mutated("eks", "kpo-gpu-cluster", EKS_CLUSTER, lambda c: c.pop("encryptionConfig")),
        "not-secrets": _mutated("eks", "kpo-gpu-cluster", EKS_CLUSTER,
                                lambda c: c["encryptionConfig"].update(resources=["configmaps"])),
        "no-key": _mutated("eks", "kpo-gpu-cluster", EKS_CLUSTER,
                           lambda c: c["encryptionConfig"].update(provider={})),
    },
    "eks-no-access-policy": {
        "cluster-admin-association": _access_policy_association,
        "system-masters-entry": _masters_access_entry,
    },
    "aks-local-accounts-off": {
        "local-accounts-on": _mutated("aks", "aks", AKS_CLUSTER, lambda c: c.update(disableLocalAccounts=False)),
        "local-accounts-unset": _mutated("aks", "aks", AKS_CLUSTER, lambda c: c.pop("disableLocalAccounts")),
        "aad-not-managed": _mutated("aks", "aks", AKS_CLUSTER, lambda c: c["aadProfile"].update(managed=False)),
        "rbac-off": _mutated("aks", "aks", AKS_CLUSTER, lambda c: c.update(enableRBAC=False)),
    },
}


VIOLATIONS["task-identity-one-service-account"] = TASK_IDENTITY_VIOLATIONS


def assert_fires(examples, rule_name: str, case: str) -> None:
    typ, props = VIOLATIONS[rule_name][case](examples)
    assert violations(rule_name, typ, props), f"{rule_name} did not fire on {case}"


def cases(rule_name: str):
    return pytest.mark.parametrize("case", list(VIOLATIONS[rule_name]))


@cases("no-rbac-wildcard")
def test_a_wildcard_in_a_role_rule_is_a_violation(examples, case):
    assert_fires(examples, "no-rbac-wildcard", case)


@cases("no-cluster-scoped-rbac")
def test_cluster_roles_cluster_role_bindings_and_bindings_to_cluster_roles_are_violations(examples, case):
    assert_fires(examples, "no-cluster-scoped-rbac", case)


@cases("pods-exec-only-with-xcom")
def test_pods_exec_in_a_role_not_labelled_xcom_true_is_a_violation(examples, case):
    assert_fires(examples, "pods-exec-only-with-xcom", case)


@cases("namespace-pod-security")
def test_a_namespace_that_does_not_enforce_baseline_or_restricted_is_a_violation(examples, case):
    assert_fires(examples, "namespace-pod-security", case)


def test_a_namespace_patch_that_leaves_pod_security_alone_or_raises_it_passes():
    for labels in ({"team": "data"}, {rules.POD_SECURITY_ENFORCE_LABEL: "restricted"}):
        props = {"metadata": {"name": "kpo-analytics", "labels": labels}}
        assert violations("namespace-pod-security", NAMESPACE + "Patch", props) == []


@cases("no-iam-pod-rights")
def test_a_cloud_iam_grant_that_reaches_pods_is_a_violation(examples, case):
    assert_fires(examples, "no-iam-pod-rights", case)


@cases("gke-private-nodes")
def test_a_gke_cluster_or_pool_with_public_nodes_is_a_violation(examples, case):
    assert_fires(examples, "gke-private-nodes", case)


@cases("gke-workload-identity")
def test_a_gke_cluster_without_a_workload_identity_pool_is_a_violation(examples, case):
    assert_fires(examples, "gke-workload-identity", case)


@cases("gke-deletion-protection")
def test_a_gke_cluster_without_deletion_protection_is_a_violation(examples, case):
    assert_fires(examples, "gke-deletion-protection", case)


@cases("gke-workload-metadata")
def test_a_gke_node_pool_without_the_gke_metadata_server_is_a_violation(examples, case):
    assert_fires(examples, "gke-workload-metadata", case)


@cases("eks-secrets-encryption")
def test_an_eks_cluster_without_kms_encryption_of_secrets_is_a_violation(examples, case):
    assert_fires(examples, "eks-secrets-encryption", case)


@cases("eks-no-access-policy")
def test_an_eks_access_policy_association_or_system_masters_entry_is_a_violation(examples, case):
    assert_fires(examples, "eks-no-access-policy", case)


@cases("aks-local-accounts-off")
def test_an_aks_cluster_with_local_accounts_or_without_managed_entra_id_is_a_violation(examples, case):
    assert_fires(examples, "aks-local-accounts-off", case)


def test_every_rule_has_violation_cases_and_fires_only_for_its_own_concern(examples):
    assert set(VIOLATIONS) == set(RULES)
    for rule_name, builders in VIOLATIONS.items():
        for case, build in builders.items():
            typ, props = build(examples)
            fired = set(all_violations(typ, props))
            # Cluster-scoped RBAC cases may also break the RBAC rules they were built to break.
            assert rule_name in fired and fired <= {rule_name, "no-cluster-scoped-rbac", "no-rbac-wildcard"}, (
                rule_name, case, fired)


# ---- the stack rule: every Deployment namespace keeps its guards ---------------------------

QUOTA = "kubernetes:core/v1:ResourceQuota"
LIMIT_RANGE = "kubernetes:core/v1:LimitRange"
POLICY = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
POLICY_BINDING = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"


def _without(name):
    return lambda resources: [r for r in resources if r[1] != name]


def _changed(name, change):
    def build(resources):
        resources = copy.deepcopy(resources)
        for typ, resource_name, inputs in resources:
            if resource_name == name:
                change(inputs)
        return resources
    return build


def _pod_role_in_a_bare_namespace(resources):
    role = copy.deepcopy(next(i for t, n, i in resources if n == "analytics-role"))
    role["metadata"]["namespace"] = "hand-made"
    return resources + [(ROLE, "hand-made-role", role)]


STACK_VIOLATIONS = {
    "no-priority-quota": (_without("analytics-admission-no-system-priority"), "PriorityClass system-node-critical"),
    "priority-quota-one-class": (_changed("analytics-admission-no-system-priority", lambda q: q["spec"]["scopeSelector"][
        "matchExpressions"][0].update(values=["system-node-critical"])), "PriorityClass system-node-critical"),
    "no-affinity-quota": (_without("ml-training-admission-no-cross-namespace-affinity"), "CrossNamespacePodAffinity"),
    "best-effort-quota-allows-pods": (_changed("analytics-admission-no-best-effort",
                                               lambda q: q["spec"]["hard"].update(pods="10")), "BestEffort"),
    "usage-quota-without-count-pods": (_changed("analytics-quota", lambda q: q["spec"]["hard"].pop("count/pods")),
                                       "count/pods"),
    "limit-range-without-max": (_changed("analytics-limitrange", lambda r: r["spec"]["limits"][0].pop("max")),
                                "LimitRange"),
    "no-policy-binding": (_without("analytics-admission-policy-binding"), "ValidatingAdmissionPolicy"),
    "binding-warns-only": (_changed("analytics-admission-policy-binding",
                                    lambda b: b["spec"].update(validationActions=["Warn"])), "ValidatingAdmissionPolicy"),
    "binding-to-another-namespace": (_changed("analytics-admission-policy-binding", lambda b: b["spec"]["matchResources"][
        "namespaceSelector"]["matchExpressions"][0].update(values=["kpo-ml-training"])), "ValidatingAdmissionPolicy"),
    "policy-fails-open": (_changed("analytics-admission-policy", lambda p: p["spec"].update(failurePolicy="Ignore")),
                          "ValidatingAdmissionPolicy"),
    "hand-made-pod-namespace": (_pod_role_in_a_bare_namespace, "namespace hand-made:"),
}


@pytest.mark.parametrize("case", list(STACK_VIOLATIONS))
def test_a_deployment_namespace_missing_a_guard_is_a_stack_violation(examples, case):
    build, said = STACK_VIOLATIONS[case]
    found = stack_violations(build(examples["dev"]))
    assert list(found) == ["tenant-guards"]
    assert any(said in message for message in found["tenant-guards"]), found


def test_a_namespace_where_no_role_creates_pods_needs_no_guards(examples):
    stack = [(t, n, i) for t, n, i in examples["dev"] if not (t == ROLE and n == "analytics-role")]
    stack = [r for r in stack if "analytics-admission" not in r[1] and r[1] not in ("analytics-quota", "analytics-limitrange")]
    assert stack_violations(stack) == {}


def test_the_pack_and_the_components_agree_on_the_guards():
    from components import access, admission

    assert rules.SYSTEM_PRIORITY_CLASSES == admission.SYSTEM_PRIORITY_CLASSES
    assert set(rules.USAGE_QUOTA_KEYS) == set(access.resource_quota_hard(config.load(
        {"cloud": "existing", "deployments": [{"name": "a"}]}).deployments[0]))


# ---- preview: values not known yet --------------------------------------------------------

def preview_cases(examples) -> list[tuple[str, dict]]:
    """Example resources as a preview sees them: outputs of other resources still unknown."""
    role = inputs_of(examples, "gke", "analytics-role")
    role["metadata"]["namespace"] = UNKNOWN_STRING
    unknown_rules = inputs_of(examples, "dev", "ml-training-role")
    unknown_rules["rules"] = UNKNOWN_ARRAY
    member = inputs_of(examples, "gke", "analytics-gcp-authenticate")
    member["role"] = UNKNOWN_STRING
    policy = inputs_of(examples, "eks", "ml-training-access-policy")
    policy["policy"] = UNKNOWN_STRING
    cluster = inputs_of(examples, "eks", "kpo-gpu-cluster", EKS_CLUSTER)
    cluster["encryptionConfig"]["provider"]["keyArn"] = UNKNOWN_STRING
    whole = inputs_of(examples, "eks", "kpo-gpu-cluster", EKS_CLUSTER)
    whole["encryptionConfig"] = UNKNOWN_OBJECT
    assignment = inputs_of(examples, "aks", "ml-training-azure-agent-pools")
    assignment["roleDefinitionId"] = UNKNOWN_STRING
    namespace = inputs_of(examples, "eks", "analytics-namespace", NAMESPACE)
    namespace["metadata"]["labels"] = UNKNOWN_OBJECT
    return [(NAMESPACE, namespace), (ROLE, role), (ROLE, unknown_rules), ("gcp:projects/iAMMember:IAMMember", member),
            ("aws:iam/rolePolicy:RolePolicy", policy), (EKS_CLUSTER, cluster), (EKS_CLUSTER, whole),
            (ROLE_ASSIGNMENT, assignment)]


def preview_stack(examples) -> list:
    """The dev stack as a preview may see it: where the guards go not known yet."""
    def unknown_namespace(inputs):
        inputs["metadata"]["namespace"] = UNKNOWN_STRING
    stack = examples["dev"]
    for name in ("analytics-quota", "analytics-limitrange", "analytics-admission-no-system-priority",
                 "analytics-admission-no-cross-namespace-affinity", "analytics-admission-no-best-effort"):
        stack = _changed(name, unknown_namespace)(stack)
    return _changed("analytics-admission-policy-binding",
                    lambda b: b["spec"]["matchResources"].update(namespaceSelector=UNKNOWN_OBJECT))(stack)


def test_values_unknown_during_preview_are_not_violations(examples):
    for typ, props in preview_cases(examples):
        assert all_violations(typ, props) == {}, typ
    assert stack_violations(preview_stack(examples)) == {}


# ---- documentation and the real pack ------------------------------------------------------

def test_the_pack_runs_on_python_in_its_own_virtualenv():
    manifest = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"] == {"name": "python", "options": {"virtualenv": "venv"}}
    assert "pulumi-policy==" in (ROOT / "policy" / "requirements.txt").read_text()


def test_every_rule_is_documented_in_the_pack_readme():
    readme = (ROOT / "policy" / "README.md").read_text()
    for rule in rules.RULES:
        assert f"| `{rule.name}` |" in readme, rule.name
        assert len(rule.description) > 40
    assert len(RULES) + len(STACK_RULES) == len(rules.RULES)


PACK_RUNNER = r"""
import json, runpy, sys
import pulumi_policy
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

pack = {}
def capture(name, policies, enforcement_level=None, **rest):
    pack.update(name=name, policies=policies, level=enforcement_level.value)
pulumi_policy.PolicyPack = capture
runpy.run_path(sys.argv[1], run_name="__main__")

results = []
for case in json.load(sys.stdin):
    found = []
    if "stack" in case:
        resources = [pulumi_policy.policy.PolicyResource(
            r["type"], unknown_checking_proxy(deserialize_properties(r["inputs"])),
            "urn:pulumi:test::remote-kpo::" + r["type"] + "::" + r["name"], r["name"], None, None, None, [], {})
            for r in case["stack"]]
        for policy in pack["policies"]:
            if isinstance(policy, pulumi_policy.StackValidationPolicy):
                policy.validate(pulumi_policy.StackValidationArgs(resources),
                                lambda message, urn=None, name=policy.name: found.append(name))
        results.append(sorted(set(found)))
        continue
    for policy in pack["policies"]:
        if isinstance(policy, pulumi_policy.StackValidationPolicy):
            continue
        args = pulumi_policy.ResourceValidationArgs(
            case["type"], unknown_checking_proxy(deserialize_properties(case["inputs"])),
            "urn:pulumi:test::remote-kpo::" + case["type"] + "::" + case["name"], case["name"], None, None)
        policy.validate(args, lambda message, urn=None, name=policy.name: found.append(name))
    results.append(sorted(set(found)))
json.dump({"name": pack["name"], "level": pack["level"], "policies": [p.name for p in pack["policies"]],
           "results": results}, sys.stdout)
"""


def test_the_real_pack_is_mandatory_and_agrees_with_the_rules_on_every_case(examples):
    cases_in = [{"type": t, "name": n, "inputs": i, "expect": []}
                for stack in examples for t, n, i in examples[stack]]
    for rule_name, builders in VIOLATIONS.items():
        for case, build in builders.items():
            typ, props = build(examples)
            cases_in.append({"type": typ, "name": case, "inputs": props,
                             "expect": sorted(all_violations(typ, props))})
    cases_in += [{"type": t, "name": "preview", "inputs": p, "expect": []} for t, p in preview_cases(examples)]
    stacks = [examples[stack] for stack in examples] + [build(examples["dev"]) for build, _ in STACK_VIOLATIONS.values()]
    stacks.append(preview_stack(examples))
    cases_in += [{"stack": [{"type": t, "name": n, "inputs": i} for t, n, i in resources],
                  "expect": sorted(stack_violations(resources))} for resources in stacks]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    done = subprocess.run([str(POLICY_PYTHON), "-c", PACK_RUNNER, str(ROOT / "policy")],
                          input=json.dumps(cases_in), capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    pack = json.loads(done.stdout)
    assert (pack["name"], pack["level"]) == ("remote-kpo", "mandatory")
    assert pack["policies"] == [rule.name for rule in rules.RULES]
    assert [c["expect"] for c in cases_in] == pack["results"]


# ---- queueing: Kueue holds the compute quota --------------------------------------------------

LOCAL_QUEUE = "kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue"
CLUSTER_QUEUE = "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue"


@pytest.fixture(scope="module")
def queued_dev(tmp_path_factory) -> list:
    from components import queueing

    kubeconfig = tmp_path_factory.mktemp("queued") / "admin.kubeconfig"
    kubeconfig.write_text(ADMIN_KUBECONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(kubeconfig))
        run = run_program(stack_config("dev") | {"queueing": {"enabled": True}},
                          kueue_crds={name: ["v1beta2"] for name in queueing.KUEUE_CRDS})
    return [(r.typ, r.name, r.inputs) for r in run.resources]


def test_a_queued_stack_passes_every_rule_with_pod_counts_alone_in_its_resource_quota(queued_dev):
    found = {f"{typ} {name}": bad for typ, name, inputs in queued_dev if (bad := all_violations(typ, inputs, name))}
    assert found == {}
    assert stack_violations(queued_dev) == {}
    quota = next(i for t, n, i in queued_dev if n == "analytics-quota")
    assert set(quota["spec"]["hard"]) == set(rules.POD_COUNT_QUOTA_KEYS)


QUEUED_VIOLATIONS = {
    "no-local-queue": _without("analytics-queue-localqueue"),
    "local-queue-of-another-name": _changed("analytics-queue-localqueue", lambda q: q["metadata"].update(name="batch")),
    "cluster-queue-missing": _without("analytics-queue-clusterqueue"),
    "cluster-queue-shared-with-every-namespace": _changed(
        "analytics-queue-clusterqueue", lambda q: q["spec"].update(namespaceSelector={})),
    "cluster-queue-of-another-namespace": _changed(
        "analytics-queue-localqueue", lambda q: q["spec"].update(clusterQueue="remote-kpo-dev-kpo-ml-training")),
    "cluster-queue-without-gpus": _changed(
        "analytics-queue-clusterqueue", lambda q: q["spec"].update(resourceGroups=q["spec"]["resourceGroups"][:1])),
}


@pytest.mark.parametrize("case", list(QUEUED_VIOLATIONS))
def test_pod_counts_alone_bound_a_namespace_only_with_its_own_queue(queued_dev, case):
    found = stack_violations(QUEUED_VIOLATIONS[case](queued_dev))
    assert list(found) == ["tenant-guards"]
    (message,) = found["tenant-guards"]
    assert message.startswith("namespace kpo-analytics: ") and "requests.cpu" in message and "LocalQueue 'default'" in message


def test_the_pack_and_the_queues_agree_on_what_kueue_holds():
    from components import gpu, kueue

    d = config.load({"cloud": "existing", "queueing": {"enabled": True}, "deployments": [{"name": "a"}]}).deployments[0]
    assert set(rules.POD_COUNT_QUOTA_KEYS) == set(access.resource_quota_hard(d, queued=True))
    assert rules.LOCAL_QUEUE == kueue.LOCAL_QUEUE
    assert set(rules.QUEUED_RESOURCES) == {"cpu", "memory", gpu.GPU_RESOURCE}
