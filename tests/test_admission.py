"""What keeps tenants apart (components/admission.py), as every stack registers it under mocks:
the forbidding quotas, and per Deployment an admission policy bound to its namespace that
applies to its own identity. What the API server makes of them is proven in
tests/e2e/test_tenancy_real.py.
"""

import pytest

from harness import ADMIN_KUBECONFIG, run_program, stack_config
from test_aks_stack import run as run_aks
from test_eks_stack import run_eks
from test_gke_stack import ANALYTICS_SA, run_gke

QUOTA = "kubernetes:core/v1:ResourceQuota"
POLICY = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
BINDING = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"
NAMESPACES = ["kpo-analytics", "kpo-ml-training"]
pytestmark = pytest.mark.filterwarnings(r"ignore:(gcp|aws)\S* has been deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    kubeconfig = tmp_path_factory.mktemp("dev") / "admin.kubeconfig"
    kubeconfig.write_text(ADMIN_KUBECONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(kubeconfig))
        return run_program(stack_config("dev"))


@pytest.fixture(scope="module")
def runs(dev) -> dict:
    return {"dev": dev, "gke": run_gke(stack_config("gke")), "eks": run_eks(stack_config("eks"))[0],
            "aks": run_aks(stack_config("aks"), "aks")[0]}


def policies(run) -> dict:
    """namespace -> the spec of the policy that guards it."""
    return {p.inputs["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"][0]["values"][0]: p.inputs
            for p in run.of_type(POLICY)}


def validation_messages(policy: dict) -> list[str]:
    return [v["message"] for v in policy["spec"]["validations"]]


@pytest.mark.parametrize("stack", ["dev", "gke", "eks", "aks"])
def test_every_deployment_namespace_refuses_system_priority_cross_namespace_affinity_and_best_effort_pods(runs, stack):
    guards = {}
    for quota in runs[stack].of_type(QUOTA):
        spec = quota.inputs["spec"]
        if spec["hard"] == {"pods": "0"}:
            guards.setdefault(quota.inputs["metadata"]["namespace"], []).append(
                (spec.get("scopes"), spec.get("scopeSelector")))
    expected = sorted([
        (None, {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In",
                                      "values": ["system-node-critical", "system-cluster-critical"]}]}),
        (None, {"matchExpressions": [{"scopeName": "CrossNamespacePodAffinity", "operator": "Exists"}]}),
        (["BestEffort"], None),
    ], key=repr)
    assert {ns: sorted(g, key=repr) for ns, g in guards.items()} == {ns: expected for ns in NAMESPACES}


@pytest.mark.parametrize("stack", ["dev", "gke", "eks", "aks"])
def test_each_deployment_has_a_policy_bound_to_its_own_namespace_only_that_fails_closed(runs, stack):
    run = runs[stack]
    guarded = policies(run)
    assert sorted(guarded) == NAMESPACES
    bindings = {b.inputs["spec"]["policyName"]: b.inputs for b in run.of_type(BINDING)}
    for namespace, policy in guarded.items():
        name = policy["metadata"]["name"]
        assert name == f"remote-kpo-{stack}-{namespace}"
        binding = bindings[name]
        assert binding["metadata"]["name"] == name
        assert binding["spec"]["validationActions"] == ["Deny"]
        # With the API server's defaults spelt out (matchPolicy, objectSelector, scope), so that a
        # later `up` that adopts the object applies what is stored (test_faults_real.py).
        selects = {"matchPolicy": "Equivalent", "objectSelector": {}, "namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}]}}
        assert binding["spec"]["matchResources"] == selects
        assert policy["spec"]["failurePolicy"] == "Fail"
        assert policy["spec"]["matchConstraints"] == {**selects, "resourceRules": [{
            "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"],
            "scope": "*"}]}
        assert policy["metadata"]["labels"]["remote-kpo/deployment"] == namespace.removeprefix("kpo-")
    assert len(bindings) == 2


def test_two_stacks_on_one_cluster_never_share_a_cluster_scoped_name(dev, admin_kubeconfig):
    other = run_program(stack_config("dev") | {"deployments": [{"name": "reports"}]}, stack="Team_B.prod")
    names = {r.inputs["metadata"]["name"] for r in other.resources if r.typ in (POLICY, BINDING)}
    assert names == {"remote-kpo-team-b-prod-kpo-reports"}
    assert not names & {r.inputs["metadata"]["name"] for r in dev.resources if r.typ in (POLICY, BINDING)}


@pytest.mark.parametrize("stack, expected", [
    # The identity each cloud's RoleBinding names, as the API server's userInfo carries it.
    ("dev", 'request.userInfo.username == "system:serviceaccount:kpo-analytics:remote-kpo"'),
    ("gke", f'request.userInfo.username == "{ANALYTICS_SA}"'),
    ("eks", '"remote-kpo:analytics" in request.userInfo.groups'),
    ("aks", 'request.userInfo.username == "principal-id-of-kpo-gpu-weu-analytics"'),
])
def test_the_policy_applies_to_requests_made_as_the_deployments_own_identity(runs, stack, expected):
    assert policies(runs[stack])["kpo-analytics"]["spec"]["matchConditions"] == [
        {"name": "deployment-identity", "expression": expected}]


def test_a_task_pod_may_run_as_default_and_as_remote_kpo_task_only_where_it_is_made(admin_kubeconfig):
    run = run_program(stack_config("dev") | {"deployments": [{"name": "plain"}, {"name": "tasks", "taskIdentity": {}}]})
    accounts = {}
    for namespace, policy in policies(run).items():
        [rule] = [v for v in policy["spec"]["validations"] if "serviceAccountName" in v["expression"]]
        accounts[namespace] = (rule["expression"], rule["message"])
    assert accounts["kpo-plain"][0].endswith('in ["default"])')
    assert accounts["kpo-tasks"][0].endswith('in ["default", "remote-kpo-task"])')
    assert "runs as the ServiceAccount default or remote-kpo-task" in accounts["kpo-tasks"][1]


def test_the_deployments_token_and_the_registry_login_are_the_secrets_a_pod_may_not_use(dev):
    [rule] = [v for v in policies(dev)["kpo-analytics"]["spec"]["validations"] if "secretKeyRef" in v["expression"]]
    assert '["remote-kpo-token", "remote-kpo-registries"]' in rule["expression"]
    assert "remote-kpo-token and remote-kpo-registries" in rule["message"]


def test_every_refusal_says_it_comes_from_remote_kpo_and_what_is_refused(dev):
    messages = validation_messages(policies(dev)["kpo-ml-training"])
    assert all(m.startswith("remote-kpo: ") for m in messages)
    said = " ".join(messages)
    for what in ("system-node-critical", "namespaceSelector", "spec.nodeName", "nvidia.com/gpu",
                 "service_account_name", "remote-kpo-registries", "already_checked=True"):
        assert what in said, what


def test_the_rolebinding_waits_for_every_guard_of_its_namespace(dev):
    depends_on = dev.options["analytics-rolebinding"].depends_on
    names = {getattr(resource, "_name", None) for resource in depends_on}
    assert {"analytics-limitrange", "analytics-quota", "analytics-admission"} <= names
