"""Task pods (issue 16) under Pulumi mocks, on every cloud: the registries pull Secret and the
default ServiceAccount patch, the remote-kpo-task ServiceAccount and its cloud binding, AKS
AcrPull, and the outputs that name them."""

import base64
import json

import pulumi
import pytest
from pulumi.runtime import rpc

import config
from components import access, aks_tasks, eks_tasks, gke_tasks, permissions, task_pods
from components import metadata as metadata_module
from harness import run_program
from test_aks_stack import MINIMAL as AKS_MINIMAL
from test_aks_stack import SUBSCRIPTION, AzureMocks
from harness import ADMIN_KUBECONFIG, DEFAULT_JANITOR
from test_eks_stack import EksMocks
from test_gke_stack import GkeMocks

pytestmark = pytest.mark.filterwarnings(r"ignore:gcp\.compute\.\w+ has been deprecated:DeprecationWarning")

SECRET = "kubernetes:core/v1:Secret"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
SERVICE_ACCOUNT_PATCH = "kubernetes:core/v1:ServiceAccountPatch"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
SA_MEMBER = "gcp:serviceaccount/iAMMember:IAMMember"
POD_IDENTITY = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
FEDERATED = "azure-native:managedidentity:FederatedIdentityCredential"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
GET_IDENTITY = "azure-native:managedidentity:getUserAssignedIdentity"

PASSWORD = "ghp_s3cr3t-registry-password"


def cloud_annotations(metadata: dict) -> dict:
    """A ServiceAccount's annotations but the stack's own (tests/test_ownership.py)."""
    return {key: value for key, value in metadata["annotations"].items() if key != metadata_module.STACK_ANNOTATION}

REGISTRIES = [{"server": "ghcr.io", "username": "acme-bot", "password": PASSWORD},
              {"server": "registry.acme.example:5000", "username": "kpo", "password": "second-pass"}]
DOCKER_CONFIG = json.dumps({"auths": {"quay.io": {"auth": base64.b64encode(b"robot:tok3n").decode()}}})
TASK_GSA = "etl-tasks@acme-data.iam.gserviceaccount.com"
TASK_ROLE = "arn:aws:iam::123456789012:role/kpo-etl-task"
ISSUER = "https://westeurope.oic.prod-aks.azure.com/tenant/cluster-guid/"
ACR = f"{SUBSCRIPTION}/resourceGroups/rg-images/providers/Microsoft.ContainerRegistry/registries/acmeimages"
OTHER_ACR = ("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-shared/providers/"
             "Microsoft.ContainerRegistry/registries/sharedimages")
GIVEN_IDENTITY = (f"{SUBSCRIPTION}/resourceGroups/rg-identities/providers/"
                  "Microsoft.ManagedIdentity/userAssignedIdentities/etl-reader")


def plain(value):
    """A mock input with any secret wrapper removed."""
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return value["value"]
    return value


def is_secret(value) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def by_namespace(run, typ: str) -> dict:
    return {r.inputs["metadata"]["namespace"]: r.inputs for r in run.of_type(typ)}


class TaskAzureMocks(AzureMocks):
    """Adds the cluster's kubelet identity and OIDC issuer, and an existing identity's lookup."""

    def new_resource(self, args):
        resource_id, outputs = super().new_resource(args)
        if args.typ == "azure-native:containerservice:ManagedCluster":
            outputs["identityProfile"] = {"kubeletidentity": {
                "objectId": "kubelet-object-id", "clientId": "kubelet-client-id",
                "resourceId": f"{SUBSCRIPTION}/resourceGroups/MC_x/providers/Microsoft.ManagedIdentity/"
                              "userAssignedIdentities/kubelet"}}
            outputs["oidcIssuerProfile"] = {"enabled": True, "issuerURL": ISSUER}
        return [resource_id, outputs]

    def call(self, args):
        if args.token == GET_IDENTITY:
            self.calls.append(args)
            name = args.args["resourceName"]
            return {"clientId": f"client-id-of-{name}", "principalId": f"principal-id-of-{name}",
                    "id": GIVEN_IDENTITY, "name": name, "location": "westeurope", "tenantId": "t",
                    "type": "Microsoft.ManagedIdentity/userAssignedIdentities", "azureApiVersion": "2023-01-31",
                    "systemData": {}, "tags": {}}
        return super().call(args)


# ---- existing: the Kubernetes half ---------------------------------------------------------

EXISTING = {
    "cloud": "existing",
    "deployments": [
        {"name": "etl", "registries": REGISTRIES, "taskIdentity": {}},
        {"name": "reports", "registries": [{"dockerConfigJson": DOCKER_CONFIG}]},
        {"name": "plain"},
    ],
}


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    kubeconfig = tmp_path_factory.mktemp("admin") / "admin.kubeconfig"
    kubeconfig.write_text(ADMIN_KUBECONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(kubeconfig))
        return run_program(EXISTING)


def test_registries_become_a_dockerconfigjson_secret_in_the_namespace(existing):
    secrets = {s.inputs["metadata"]["namespace"]: s.inputs for s in existing.of_type(SECRET)
               if s.inputs["type"] == "kubernetes.io/dockerconfigjson"}
    assert sorted(secrets) == ["kpo-etl", "kpo-reports"]
    assert secrets["kpo-etl"]["metadata"]["name"] == "remote-kpo-registries"
    document = json.loads(base64.b64decode(plain(secrets["kpo-etl"]["data"])[".dockerconfigjson"]))
    assert document == {"auths": {
        "ghcr.io": {"username": "acme-bot", "password": PASSWORD,
                    "auth": base64.b64encode(f"acme-bot:{PASSWORD}".encode()).decode()},
        "registry.acme.example:5000": {"username": "kpo", "password": "second-pass",
                                       "auth": base64.b64encode(b"kpo:second-pass").decode()}}}
    # A given Docker config JSON is used as it is.
    assert base64.b64decode(plain(secrets["kpo-reports"]["data"])[".dockerconfigjson"]).decode() == DOCKER_CONFIG


def test_the_pull_secret_data_is_a_pulumi_secret_even_from_plain_config(existing):
    for secret in existing.of_type(SECRET):
        if secret.inputs["type"] == "kubernetes.io/dockerconfigjson":
            assert is_secret(secret.inputs["data"])


def test_the_default_service_account_gets_the_pull_secret_by_a_patch_that_owns_nothing_else(existing):
    patches = by_namespace(existing, SERVICE_ACCOUNT_PATCH)
    assert sorted(patches) == ["kpo-etl", "kpo-reports"]
    assert patches["kpo-etl"] == {"apiVersion": "v1", "kind": "ServiceAccount",
                                  "metadata": {"name": "default", "namespace": "kpo-etl"},
                                  "imagePullSecrets": [{"name": "remote-kpo-registries"}]}
    # The patch is applied only once the Secret it names exists.
    options = existing.options["etl-tasks-default-pull-secret"]
    assert [r._name for r in options.depends_on] == ["etl-tasks-registries"]


def test_task_identity_makes_the_remote_kpo_task_service_account_with_the_pull_secret(existing):
    accounts = {(a.inputs["metadata"]["namespace"], a.inputs["metadata"]["name"]): a.inputs
                for a in existing.of_type(SERVICE_ACCOUNT)}
    task = accounts[("kpo-etl", "remote-kpo-task")]
    assert task["imagePullSecrets"] == [{"name": "remote-kpo-registries"}]
    # On existing there is no cloud identity to bind: no annotation.
    assert cloud_annotations(task["metadata"]) == {}
    assert ("kpo-reports", "remote-kpo-task") not in accounts and ("kpo-plain", "remote-kpo-task") not in accounts


def test_a_deployment_without_registries_or_task_identity_gets_nothing_new(existing):
    namespaced = [r for r in existing.resources if r.typ.startswith("kubernetes:")
                  and r.inputs.get("metadata", {}).get("namespace") == "kpo-plain"]
    # What every Deployment gets (DeploymentAccess, and on existing its ServiceAccount and token).
    assert sorted(r.typ.rsplit(":", 1)[-1] for r in namespaced) == [
        "LimitRange", "ResourceQuota", "ResourceQuota", "ResourceQuota", "ResourceQuota", "Role", "RoleBinding",
        "Secret", "ServiceAccount"]
    assert sorted(r.name for r in existing.resources if r.typ == "remote-kpo:index:TaskPods") == ["etl-tasks", "reports-tasks"]


def test_the_deployments_role_still_cannot_read_secrets_or_service_account_tokens(existing):
    for role in existing.of_type(ROLE):
        resources = {resource for rule in role.inputs["rules"] for resource in rule["resources"]}
        assert not resources & {"secrets", "serviceaccounts", "serviceaccounts/token"}


def test_deployments_output_names_the_task_service_account_and_pull_secret(existing):
    deployments = existing.outputs["deployments"]
    assert deployments["etl"] == {
        "namespace": "kpo-etl", "connectionId": "kpo_etl", "envVar": "AIRFLOW_CONN_KPO_ETL", "janitor": DEFAULT_JANITOR,
        "taskServiceAccount": "remote-kpo-task", "imagePullSecret": "remote-kpo-registries"}
    assert deployments["reports"]["imagePullSecret"] == "remote-kpo-registries"
    assert "taskServiceAccount" not in deployments["reports"]
    assert set(deployments["plain"]) == {"namespace", "connectionId", "envVar", "janitor"}


def test_no_registry_password_reaches_a_public_output(existing):
    assert existing.secret["deployments"] is False
    public = json.dumps({name: value for name, value in existing.outputs.items() if not existing.secret[name]})
    for needle in (PASSWORD, "second-pass", base64.b64encode(f"acme-bot:{PASSWORD}".encode()).decode(), "tok3n"):
        assert needle not in public


def test_task_pods_components_are_parented_to_the_deployments_access(existing):
    parent = existing.options["etl-tasks"].parent
    assert isinstance(parent, access.DeploymentAccess) and parent._name == "etl"


def test_docker_config_json_writes_one_auths_entry_per_login():
    cfg = config.load(EXISTING)
    document = json.loads(task_pods.docker_config_json(cfg.deployments[0].registries))
    assert sorted(document["auths"]) == ["ghcr.io", "registry.acme.example:5000"]
    assert task_pods.task_details(cfg.deployments[2]) == {}


# ---- gke -------------------------------------------------------------------------------------

GKE = {
    "cloud": "gke", "clusterName": "kpo-tasks",
    "gke": {"project": "acme-platform", "location": "us-central1"},
    "deployments": [
        {"name": "etl", "identity": {"gcpServiceAccount": "astro-etl@acme-astro.iam.gserviceaccount.com"},
         "registries": REGISTRIES[:1], "taskIdentity": {"gcpServiceAccount": TASK_GSA}},
        {"name": "reports", "identity": {"gcpServiceAccount": "astro-reports@acme-astro.iam.gserviceaccount.com"}},
    ],
}


@pytest.fixture(scope="module")
def gke():
    return run_program(GKE, stack="gke", mocks=GkeMocks())


def test_gke_task_account_lets_exactly_the_namespaces_task_service_account_act_as_it(gke):
    grants = [r.inputs for r in gke.of_type(SA_MEMBER) if r.inputs["role"] == "roles/iam.workloadIdentityUser"]
    assert grants == [{
        "serviceAccountId": f"projects/acme-data/serviceAccounts/{TASK_GSA}",
        "role": "roles/iam.workloadIdentityUser",
        # The cluster project's workload pool, whatever project the account is in.
        "member": "serviceAccount:acme-platform.svc.id.goog[kpo-etl/remote-kpo-task]"}]


def test_gke_task_service_account_is_annotated_with_the_google_service_account(gke):
    (task,) = gke.of_type(SERVICE_ACCOUNT)
    assert cloud_annotations(task.inputs["metadata"]) == {"iam.gke.io/gcp-service-account": TASK_GSA}
    assert task.inputs["metadata"]["namespace"] == "kpo-etl"
    assert task.provider.rsplit("$", 1)[-1] == "pulumi:providers:kubernetes::gke-cluster::gke-cluster-id"


def test_gke_deployment_without_task_identity_gets_no_workload_identity_grant(gke):
    members = [r.inputs["member"] for r in gke.of_type(SA_MEMBER)]
    assert not [m for m in members if "kpo-reports" in m]
    assert gke.outputs["deployments"]["etl"]["taskServiceAccount"] == "remote-kpo-task"
    assert "taskServiceAccount" not in gke.outputs["deployments"]["reports"]


def test_gke_workload_identity_binding_is_its_permission_table_row():
    row = permissions.TASK_IDENTITY_BINDINGS["gke"]
    assert row.grant == "roles/iam.workloadIdentityUser"
    assert permissions.task_identity_subject("gke", "kpo-a", "p.svc.id.goog") == (
        "serviceAccount:p.svc.id.goog[kpo-a/remote-kpo-task]")
    assert gke_tasks.service_account_resource("x-tasks@other-proj.iam.gserviceaccount.com") == (
        "projects/other-proj/serviceAccounts/x-tasks@other-proj.iam.gserviceaccount.com")


# ---- eks -------------------------------------------------------------------------------------

EKS = {
    "cloud": "eks", "clusterName": "kpo-tasks", "eks": {"region": "us-east-1"},
    "deployments": [
        {"name": "etl", "identity": {"awsRoleArn": "arn:aws:iam::123456789012:role/astro-etl"},
         "taskIdentity": {"awsRoleArn": TASK_ROLE}, "registries": [{"dockerConfigJson": DOCKER_CONFIG}]},
        {"name": "reports", "identity": {"awsRoleArn": "arn:aws:iam::123456789012:role/astro-reports"}},
    ],
}


@pytest.fixture(scope="module")
def eks():
    return run_program(EKS, stack="eks", mocks=EksMocks())


def test_eks_pod_identity_associates_the_task_role_with_the_task_service_account_only(eks):
    (association,) = eks.of_type(POD_IDENTITY)
    assert association.inputs == {"clusterName": "kpo-tasks", "namespace": "kpo-etl",
                                  "serviceAccount": "remote-kpo-task", "roleArn": TASK_ROLE}
    # In the stack's region, like the cluster.
    assert association.provider.rsplit("$", 1)[-1].startswith("pulumi:providers:aws::eks-region::")


def test_eks_task_service_account_needs_no_annotation_and_keeps_the_access_role_output(eks):
    (task,) = eks.of_type(SERVICE_ACCOUNT)
    assert cloud_annotations(task.inputs["metadata"]) == {}
    assert task.inputs["imagePullSecrets"] == [{"name": "remote-kpo-registries"}]
    entry = eks.outputs["deployments"]["etl"]
    assert entry["awsAccessRoleArn"].endswith("role/etl-access-role")
    assert (entry["taskServiceAccount"], entry["imagePullSecret"]) == ("remote-kpo-task", "remote-kpo-registries")


def test_eks_task_role_trust_policy_is_the_pod_identity_service_with_tag_session():
    assert eks_tasks.pod_identity_trust_policy()["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"]}]


# ---- aks -------------------------------------------------------------------------------------

AKS = AKS_MINIMAL | {
    "aks": AKS_MINIMAL["aks"] | {"acrIds": [ACR, OTHER_ACR]},
    "deployments": [
        {**AKS_MINIMAL["deployments"][0], "taskIdentity": {"azureIdentity": {}}, "registries": REGISTRIES[:1]},
        {"name": "etl", "identity": AKS_MINIMAL["deployments"][0]["identity"],
         "taskIdentity": {"azureIdentity": GIVEN_IDENTITY}},
        {"name": "plain", "identity": AKS_MINIMAL["deployments"][0]["identity"]},
    ],
}


@pytest.fixture(scope="module")
def aks_run():
    mocks = TaskAzureMocks()
    return run_program(AKS, stack="staging", mocks=mocks), mocks


@pytest.fixture(scope="module")
def aks(aks_run):
    return aks_run[0]


def test_aks_kubelet_identity_gets_acr_pull_on_each_listed_registry_only(aks):
    assignments = [r.inputs for r in aks.of_type(ROLE_ASSIGNMENT)]
    assert sorted(assignments, key=lambda a: a["scope"]) == sorted([
        {"principalId": "kubelet-object-id", "principalType": "ServicePrincipal", "scope": acr,
         "roleDefinitionId": f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/"
                             "7f951dda-4ed3-4680-a7ca-43fe172d538d"}
        for acr, subscription in ((ACR, SUBSCRIPTION.rsplit("/", 1)[-1]),
                                  (OTHER_ACR, "11111111-2222-3333-4444-555555555555"))], key=lambda a: a["scope"])


def test_aks_acr_pull_is_the_node_actions_row_and_names_stay_stable_when_reordered():
    assert permissions.NODE_ACTIONS["aks"]["acrPull"].actions == ("Microsoft.ContainerRegistry/registries/pull/read",)
    assert aks_tasks.acr_resource_name(ACR) == aks_tasks.acr_resource_name(ACR.upper().replace("SUBSCRIPTIONS", "subscriptions"))
    assert aks_tasks.acr_resource_name(ACR).startswith("acmeimages-")
    assert aks_tasks.acr_resource_name(ACR) != aks_tasks.acr_resource_name(OTHER_ACR)


def test_aks_task_identity_is_made_for_empty_object_and_looked_up_when_given(aks_run):
    aks, mocks = aks_run
    made = [r.inputs for r in aks.of_type(IDENTITY) if r.name == "reports-azure-task-identity"]
    assert made == [{"resourceName": "remote-kpo-staging-reports-task", "resourceGroupName": "remote-kpo-staging",
                     "location": "eastus2"}]
    lookups = [c.args for c in mocks.calls if c.token == GET_IDENTITY]
    assert lookups == [{"resourceGroupName": "rg-identities", "resourceName": "etl-reader"}]


def test_aks_federated_credentials_trust_the_cluster_issuer_for_one_task_service_account(aks):
    credentials = {r.name: r.inputs for r in aks.of_type(FEDERATED) if "task" in r.name}
    assert credentials == {
        "reports-azure-task-federated-credential": {
            "resourceGroupName": "remote-kpo-staging", "resourceName": "remote-kpo-staging-reports-task",
            "federatedIdentityCredentialResourceName": "remote-kpo-task-remote-kpo-staging-kpo-reports",
            "issuer": ISSUER, "subject": "system:serviceaccount:kpo-reports:remote-kpo-task",
            "audiences": ["api://AzureADTokenExchange"]},
        "etl-azure-task-federated-credential": {
            "resourceGroupName": "rg-identities", "resourceName": "etl-reader",
            "federatedIdentityCredentialResourceName": "remote-kpo-task-remote-kpo-staging-kpo-etl",
            "issuer": ISSUER, "subject": "system:serviceaccount:kpo-etl:remote-kpo-task",
            "audiences": ["api://AzureADTokenExchange"]},
    }


def test_aks_task_service_account_is_annotated_with_the_identitys_client_id(aks):
    accounts = {a.inputs["metadata"]["namespace"]: a.inputs for a in aks.of_type(SERVICE_ACCOUNT)}
    assert sorted(accounts) == ["kpo-etl", "kpo-reports"]
    assert cloud_annotations(accounts["kpo-reports"]["metadata"]) == {
        "azure.workload.identity/client-id": "client-id-of-remote-kpo-staging-reports-task"}
    assert cloud_annotations(accounts["kpo-etl"]["metadata"]) == {"azure.workload.identity/client-id": "client-id-of-etl-reader"}


def test_aks_outputs_name_the_task_identity_to_grant_storage_roles_to(aks):
    entry = aks.outputs["deployments"]["reports"]
    assert (entry["taskServiceAccount"], entry["taskAzureClientId"], entry["taskAzurePrincipalId"]) == (
        "remote-kpo-task", "client-id-of-remote-kpo-staging-reports-task", "principal-id-of-remote-kpo-staging-reports-task")
    # A Deployment without task pods has only the entries every aks Deployment has.
    assert set(aks.outputs["deployments"]["plain"]) == {
        "namespace", "connectionId", "envVar", "janitor", "azureClientId", "azureIdentityName", "azureIdentityResourceGroup"}


def test_aks_without_acr_ids_assigns_no_azure_role():
    mocks = TaskAzureMocks()
    run = run_program(AKS_MINIMAL | {"deployments": [{**AKS_MINIMAL["deployments"][0], "taskIdentity": {"azureIdentity": {}}}]},
                      stack="staging", mocks=mocks)
    assert run.of_type(ROLE_ASSIGNMENT) == []


def test_federated_credential_names_stay_within_azures_limit():
    name = aks_tasks.federated_credential_name("c" * 40, "n" * 63)
    assert len(name) == 120 and name.startswith("remote-kpo-task-")
    assert aks_tasks.federated_credential_name("c" * 40, "n" * 63) != aks_tasks.federated_credential_name("c" * 40, "n" * 62 + "m")


# ---- bad input stops before any resource --------------------------------------------------

def test_a_bad_registry_stops_the_program_before_any_resource():
    mocks = GkeMocks()
    bad = GKE | {"deployments": [{**GKE["deployments"][0], "registries": [{"server": "ghcr.io", "username": "x"}]}]}
    with pytest.raises(pulumi.RunError) as caught:
        run_program(bad, stack="gke", mocks=mocks)
    assert str(caught.value) == "remote-kpo:deployments[0].registries[0].password: required (or give dockerConfigJson alone)"
    assert mocks.resources == []


def registry_warnings(warnings: list[str]) -> list[str]:
    """Those about registries: the program also warns of the tokens a first `up` issues."""
    return [warning for warning in warnings if "registries" in warning]


def test_plain_text_registry_credentials_in_the_stack_file_get_a_warning_naming_the_key(tmp_path, monkeypatch):
    kubeconfig = tmp_path / "admin.kubeconfig"
    kubeconfig.write_text(ADMIN_KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    warnings = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, resource=None, **_: warnings.append(message))
    run_program(EXISTING)
    assert sorted(registry_warnings(warnings)) == [task_pods.plain_text_warning("etl"),
                                                   task_pods.plain_text_warning("reports")]
    assert task_pods.plain_text_warning("etl").startswith("remote-kpo:deployments: the registries of etl")


def test_no_warning_when_the_deployments_config_is_secret(tmp_path, monkeypatch):
    kubeconfig = tmp_path / "admin.kubeconfig"
    kubeconfig.write_text(ADMIN_KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["remote-kpo:deployments"]))
    warnings = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, resource=None, **_: warnings.append(message))
    run_program(EXISTING)
    assert registry_warnings(warnings) == []


def test_aks_credentials_on_one_shared_identity_are_written_one_after_another():
    shared = {"azureIdentity": GIVEN_IDENTITY}
    identity = AKS_MINIMAL["deployments"][0]["identity"]
    raw = AKS_MINIMAL | {"deployments": [{"name": n, "identity": identity, "taskIdentity": shared}
                                         for n in ("one", "two", "three")]}
    run = run_program(raw, stack="staging", mocks=TaskAzureMocks())
    after = {name: [r._name for r in run.options[f"{name}-azure-task-federated-credential"].depends_on]
             for name in ("one", "two", "three")}
    assert after == {"one": [], "two": ["one-azure-task-federated-credential"],
                     "three": ["two-azure-task-federated-credential"]}


def test_every_task_binding_is_a_row_of_the_permission_table(gke, eks, aks):
    rows = permissions.TASK_IDENTITY_BINDINGS
    grants = [r.inputs for r in gke.of_type(SA_MEMBER) if r.inputs["role"] == rows["gke"].grant]
    assert [g["member"] for g in grants] == [
        permissions.task_identity_subject("gke", "kpo-etl", "acme-platform.svc.id.goog")]
    associations = eks.of_type(rows["eks"].grant)
    assert [f"{a.inputs['namespace']}/{a.inputs['serviceAccount']}" for a in associations] == [
        permissions.task_identity_subject("eks", "kpo-etl")]
    credentials = [r.inputs["subject"] for r in aks.of_type(rows["aks"].grant) if "task" in r.name]
    assert sorted(credentials) == sorted(permissions.task_identity_subject("aks", ns) for ns in ("kpo-reports", "kpo-etl"))
    # The only Azure role the task features assign is AcrPull, the NODE_ACTIONS row.
    guids = {r.inputs["roleDefinitionId"].rsplit("/", 1)[-1] for r in aks.of_type(ROLE_ASSIGNMENT)}
    assert guids == {permissions.ACR_PULL_ROLE_DEFINITION}
