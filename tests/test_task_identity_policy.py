"""The policy rule task-identity-one-service-account (issue 16): it passes every task identity
the program makes, on every cloud, and fires on each binding wider than one namespace's
remote-kpo-task (tests/policy_task_cases.py)."""

import pytest

from components import permissions
from harness import run_program
from policy import rules
from policy_task_cases import TASK_IDENTITY_VIOLATIONS
from test_eks_stack import EksMocks
from test_gke_stack import GkeMocks
from test_policy import UNKNOWN_STRING, all_violations, violations
from test_task_pods import AKS, EKS, GKE, TaskAzureMocks

RULE = "task-identity-one-service-account"
pytestmark = pytest.mark.filterwarnings(r"ignore:gcp\.compute\.\w+ has been deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def task_stacks() -> dict:
    runs = {"gke": run_program(GKE, stack="gke", mocks=GkeMocks()),
            "eks": run_program(EKS, stack="eks", mocks=EksMocks()),
            "aks": run_program(AKS, stack="staging", mocks=TaskAzureMocks())}
    return {cloud: [(r.typ, r.name, r.inputs) for r in run.resources] for cloud, run in runs.items()}


@pytest.mark.parametrize("cloud", ["gke", "eks", "aks"])
def test_stacks_with_task_identities_registries_and_acr_pull_pass_every_rule(task_stacks, cloud):
    found = {f"{typ} {name}": bad for typ, name, inputs in task_stacks[cloud]
             if (bad := all_violations(typ, inputs, name))}
    assert found == {}


def test_the_rule_sees_each_clouds_task_binding(task_stacks):
    # The passing stacks above do contain what the rule checks.
    kinds = {cloud: {typ for typ, _, _ in resources} for cloud, resources in task_stacks.items()}
    assert "gcp:serviceaccount/iAMMember:IAMMember" in kinds["gke"]
    assert "aws:eks/podIdentityAssociation:PodIdentityAssociation" in kinds["eks"]
    assert "azure-native:managedidentity:FederatedIdentityCredential" in kinds["aks"]
    assert "azure-native:authorization:RoleAssignment" in kinds["aks"]


@pytest.mark.parametrize("case", list(TASK_IDENTITY_VIOLATIONS))
def test_a_task_identity_bound_wider_than_its_one_service_account_is_a_violation(case):
    typ, props = TASK_IDENTITY_VIOLATIONS[case](None)
    assert violations(RULE, typ, props), case
    assert set(all_violations(typ, props)) == {RULE}


def test_the_violation_names_the_member_and_the_one_account_allowed():
    typ, props = TASK_IDENTITY_VIOLATIONS["gke-member-default-service-account"](None)
    assert violations(RULE, typ, props, name="etl-wiu") == [
        "etl-wiu: grants roles/iam.workloadIdentityUser to the member "
        "'serviceAccount:acme-platform.svc.id.goog[kpo-etl/default]', the ServiceAccount 'default' (every pod "
        "that runs as it); a task identity is bound to <namespace>/remote-kpo-task only"]


def test_the_deployments_own_federated_credential_for_astro_passes():
    typ, props = TASK_IDENTITY_VIOLATIONS["aks-subject-wildcard"](None)
    props["subject"] = "system:serviceaccount:celestial-nebula-4821:celestial-nebula-4821-worker-serviceaccount"
    assert violations(RULE, typ, props) == []


def test_unknown_values_during_preview_are_not_violations():
    for case in ("gke-member-default-service-account", "eks-association-for-default", "aks-task-credential-for-default"):
        typ, props = TASK_IDENTITY_VIOLATIONS[case](None)
        for key in ("member", "serviceAccount", "subject"):
            if key in props:
                props[key] = UNKNOWN_STRING
        assert all_violations(typ, props) == {}, case


def test_the_pack_and_the_permission_table_agree_on_the_task_service_account():
    assert rules.TASK_SERVICE_ACCOUNT == permissions.TASK_SERVICE_ACCOUNT
    assert rules.WORKLOAD_IDENTITY_USER == permissions.TASK_IDENTITY_BINDINGS["gke"].grant


def test_acr_pull_for_the_kubelet_is_not_a_pod_right(task_stacks):
    assignments = [inputs for typ, _, inputs in task_stacks["aks"] if typ == "azure-native:authorization:RoleAssignment"]
    assert assignments and all(violations("no-iam-pod-rights", "azure-native:authorization:RoleAssignment", a) == []
                               for a in assignments)
