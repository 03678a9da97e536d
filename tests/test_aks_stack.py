"""The aks stack (seed 002) under Pulumi mocks: cluster, pools, identities, RBAC and outputs."""

import base64
import json
from unittest import mock

import pulumi
import pytest
from pulumi.runtime.mocks import MockMonitor

import config
from components import aks
from harness import DEFAULT_JANITOR, RecordingMocks, assert_objects_replaced_with_cluster, run_program, stack_config

CLUSTER = "azure-native:containerservice:ManagedCluster"
AGENT_POOL = "azure-native:containerservice:AgentPool"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
FEDERATED = "azure-native:managedidentity:FederatedIdentityCredential"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
USER_CREDENTIALS = "azure-native:containerservice:listManagedClusterUserCredentials"

SUBSCRIPTION = "/subscriptions/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
EXAMPLE_TENANT = "3d1f6c2a-8b7e-4f05-9a1d-6c2e4b8f0a17"
EXAMPLE_RESOURCE_GROUP_ID = f"{SUBSCRIPTION}/resourceGroups/rg-kpo-gpu-weu"
EXAMPLE_CLUSTER_ID = f"{EXAMPLE_RESOURCE_GROUP_ID}/providers/Microsoft.ContainerService/managedClusters/kpo-gpu-weu"
EXAMPLE_SERVER = "https://kpo-gpu-weu-dns.hcp.westeurope.azmk8s.io:443"
TENANT = "99999999-8888-7777-6666-555555555555"
GROUP = "11111111-2222-3333-4444-555555555555"
AZURE = {"issuer": "https://oidc.astronomer.example/abc", "subject": "system:serviceaccount:astro-ns:airflow-worker"}
MINIMAL = {
    "cloud": "aks",
    "aks": {"location": "eastus2", "tenantId": TENANT, "adminGroupObjectIds": [GROUP], "login": "workloadidentity"},
    "deployments": [{"name": "reports", "identity": {"azure": AZURE}}],
}


def ca_of(cluster_name: str) -> str:
    return base64.b64encode(f"CA of {cluster_name}".encode()).decode()


class AzureMocks(RecordingMocks):
    """What Azure computes: names, ARM ids, identity client and principal ids, and the
    cluster-user kubeconfig (base64, like the API) that listClusterUserCredential returns."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def new_resource(self, args):
        resource_id, outputs = super().new_resource(args)
        inputs = args.inputs
        if args.typ == "azure-native:resources:ResourceGroup":
            outputs["name"] = inputs["resourceGroupName"]
            resource_id = f"{SUBSCRIPTION}/resourceGroups/{inputs['resourceGroupName']}"
        elif args.typ == CLUSTER:
            outputs["name"] = inputs["resourceName"]
            resource_id = (f"{SUBSCRIPTION}/resourceGroups/{inputs['resourceGroupName']}/providers/"
                           f"Microsoft.ContainerService/managedClusters/{inputs['resourceName']}")
        elif args.typ == IDENTITY:
            outputs.update(name=inputs["resourceName"], clientId=f"client-id-of-{inputs['resourceName']}",
                           principalId=f"principal-id-of-{inputs['resourceName']}")
        elif args.typ == ROLE_DEFINITION:
            # What Azure returns for a role defined at a resource group: an id under that scope,
            # and the role's GUID as its name.
            resource_id = f"{inputs['scope']}/providers/Microsoft.Authorization/roleDefinitions/agent-pools-guid"
            outputs["name"] = "agent-pools-guid"
        return [resource_id, outputs]

    def call(self, args):
        self.calls.append(args)
        if args.token != USER_CREDENTIALS:
            return {}
        name = args.args["resourceName"]
        user_kubeconfig = (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: {name}\n  cluster:\n"
            f"    server: https://{name}-dns.hcp.westeurope.azmk8s.io:443\n"
            f"    certificate-authority-data: {ca_of(name)}\n"
            f"contexts:\n- name: {name}\n  context: {{cluster: {name}, user: clusterUser_{name}}}\n"
            f"current-context: {name}\n"
            f"users:\n- name: clusterUser_{name}\n  user: {{exec: {{command: kubelogin}}}}\n")
        return {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(user_kubeconfig.encode()).decode()}]}


def run(raw: dict, stack: str):
    mocks = AzureMocks()
    return run_program(raw, stack=stack, mocks=mocks), mocks


@pytest.fixture(scope="module")
def example_and_mocks():
    return run(stack_config("aks"), "aks")


@pytest.fixture(scope="module")
def example(example_and_mocks):
    return example_and_mocks[0]


@pytest.fixture(scope="module")
def minimal():
    return run(MINIMAL, "staging")[0]


def only(run_, typ):
    (resource,) = run_.of_type(typ)
    return resource.inputs


def test_the_example_stack_file_is_a_complete_aks_stack():
    cfg = config.load(stack_config("aks"))
    assert cfg.cloud == "aks"
    assert [(d.name, d.ephemeral_node_pools) for d in cfg.deployments] == [("analytics", False), ("ml-training", True)]
    assert cfg.gpu_pool.enabled and cfg.aks.authorized_ip_ranges


def test_resource_group_is_the_configured_one_else_named_after_the_stack(example, minimal):
    assert only(example, "azure-native:resources:ResourceGroup") == {
        "resourceGroupName": "rg-kpo-gpu-weu", "location": "westeurope"}
    assert only(minimal, "azure-native:resources:ResourceGroup")["resourceGroupName"] == "remote-kpo-staging"
    assert only(minimal, CLUSTER)["resourceName"] == "remote-kpo-staging"


def test_cluster_authenticates_with_managed_entra_id_and_authorizes_with_kubernetes_rbac(example):
    cluster = only(example, CLUSTER)
    assert cluster["aadProfile"] == {
        "managed": True, "enableAzureRBAC": False, "tenantID": EXAMPLE_TENANT,
        "adminGroupObjectIDs": ["9b2e7d41-5c3a-4e8f-b1d6-0a7c3f9e2b58"]}
    assert cluster["enableRBAC"] is True


def test_cluster_disables_local_accounts_and_enables_oidc_issuer_and_workload_identity(example):
    cluster = only(example, CLUSTER)
    assert cluster["disableLocalAccounts"] is True
    assert cluster["oidcIssuerProfile"] == {"enabled": True}
    assert cluster["securityProfile"] == {"workloadIdentity": {"enabled": True}}


def test_cluster_has_a_system_assigned_identity_and_azures_default_version_unless_configured(example):
    cluster = only(example, CLUSTER)
    assert cluster["identity"] == {"type": "SystemAssigned"}
    assert (cluster["location"], cluster["dnsPrefix"]) == ("westeurope", "kpo-gpu-weu")
    # The example pins no version that can go stale; unset, AKS picks its default.
    assert "kubernetesVersion" not in cluster
    configured = run(MINIMAL | {"aks": MINIMAL["aks"] | {"kubernetesVersion": "1.36"}}, "staging")[0]
    assert only(configured, CLUSTER)["kubernetesVersion"] == "1.36"


def test_a_patch_version_is_refused_because_the_patch_channel_owns_the_patch():
    mocks = AzureMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_program(MINIMAL | {"aks": MINIMAL["aks"] | {"kubernetesVersion": "1.35.2"}}, stack="staging", mocks=mocks)
    assert str(caught.value) == (
        "remote-kpo:aks.kubernetesVersion: not a Kubernetes minor version like 1.35 "
        "(major.minor only: the patch auto-upgrade channel picks the patch)")
    assert mocks.resources == []


def test_deletion_protection_protects_the_cluster_in_pulumi_unless_configured_off(example):
    assert [name for name, opts in example.options.items() if opts is not None and opts.protect] == ["aks"]
    # No Azure lock: it would cover the agent pools DAGs delete.
    assert not [r for r in example.resources if "ManagementLock" in r.typ]
    off = run(MINIMAL | {"aks": MINIMAL["aks"] | {"deletionProtection": False}}, "staging")[0]
    assert off.options["aks"].protect is False


def test_the_objects_on_the_cluster_are_replaced_exactly_when_the_cluster_is(example):
    assert_objects_replaced_with_cluster(example, "kpo-gpu-weu", (CLUSTER, "aks"))


def test_api_server_is_limited_to_the_authorized_ranges_and_an_empty_list_is_sent_explicitly(example, minimal):
    assert only(example, CLUSTER)["apiServerAccessProfile"] == {
        "authorizedIPRanges": ["203.0.113.0/24", "198.51.100.23/32", "198.51.100.24/32"]}
    # AKS keeps ranges a request leaves out: emptying the list must send [] to open the endpoint.
    assert only(minimal, CLUSTER)["apiServerAccessProfile"] == {"authorizedIPRanges": []}


def test_system_pool_is_an_autoscaled_system_mode_pool_without_public_ips(example):
    assert only(example, CLUSTER)["agentPoolProfiles"] == [{
        "name": "system", "mode": "System", "vmSize": "Standard_D4s_v5", "osType": "Linux",
        "type": "VirtualMachineScaleSets", "enableAutoScaling": True,
        "minCount": 1, "maxCount": 3, "count": 1, "enableNodePublicIP": False}]


def test_gpu_pool_is_a_tainted_labelled_user_pool_that_scales_from_zero(example):
    pool = only(example, AGENT_POOL)
    assert (pool["agentPoolName"], pool["mode"], pool["vmSize"]) == ("gpu", "User", "Standard_NC4as_T4_v3")
    assert (pool["resourceName"], pool["resourceGroupName"]) == ("kpo-gpu-weu", "rg-kpo-gpu-weu")
    assert (pool["enableAutoScaling"], pool["minCount"], pool["maxCount"], pool["count"]) == (True, 0, 4, 0)
    assert pool["nodeTaints"][0] == "nvidia.com/gpu=present:NoSchedule"
    # The spot label AKS adds itself is declared beside its taint, so a refresh finds no drift.
    assert pool["nodeLabels"] == {"remote-kpo/gpu": "true", "kubernetes.azure.com/scalesetpriority": "spot"}
    assert pool["enableNodePublicIP"] is False


def test_spot_gpu_pool_deletes_evicted_nodes_and_pays_up_to_the_on_demand_price(example):
    pool = only(example, AGENT_POOL)
    assert (pool["scaleSetPriority"], pool["scaleSetEvictionPolicy"], pool["spotMaxPrice"]) == ("Spot", "Delete", -1)
    # The taint AKS puts on Spot nodes anyway, declared so the pool does not drift.
    assert pool["nodeTaints"] == ["nvidia.com/gpu=present:NoSchedule",
                                  "kubernetes.azure.com/scalesetpriority=spot:NoSchedule"]


def test_on_demand_gpu_pool_defaults_to_nc_series_from_zero_without_spot_settings():
    cfg = config.load(MINIMAL | {"gpuPool": {"enabled": True}})
    args = aks.gpu_pool_args(cfg.gpu_pool)
    assert (args["vm_size"], args["min_count"], args["count"]) == ("Standard_NC4as_T4_v3", 0, 0)
    assert args["node_taints"] == ["nvidia.com/gpu=present:NoSchedule"]
    assert args["node_labels"] == {"remote-kpo/gpu": "true"}
    assert not {"scale_set_priority", "scale_set_eviction_policy", "spot_max_price"} & set(args)


def test_no_gpu_pool_unless_enabled(minimal):
    assert minimal.of_type(AGENT_POOL) == []


def test_unneeded_nodes_leave_after_three_minutes_not_the_default_ten(example, minimal):
    for run_ in (example, minimal):
        assert only(run_, CLUSTER)["autoScalerProfile"] == {"scaleDownUnneededTime": "3m", "scaleDownDelayAfterAdd": "3m"}


GPU_NODES = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "remote-kpo/gpu", "operator": "In", "values": ["true"]}]},
    {"matchExpressions": [{"key": "kubernetes.azure.com/accelerator", "operator": "In", "values": ["nvidia"]}]}]}}}
PLUGIN_TOLERATIONS = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Exists", "effect": "NoSchedule"}]


def test_device_plugin_runs_in_kube_system_on_the_stacks_and_aks_labelled_gpu_nodes(example):
    (plugin,) = example.of_type(DAEMONSET)
    assert plugin.provider.rsplit("$", 1)[-1] == "pulumi:providers:kubernetes::aks-cluster::aks-cluster-id"
    assert (plugin.inputs["metadata"]["name"], plugin.inputs["metadata"]["namespace"]) == (
        "nvidia-device-plugin", "kube-system")
    assert plugin.inputs["metadata"]["annotations"] == {"remote-kpo/stack": "organization/remote-kpo/aks"}
    pod = plugin.inputs["spec"]["template"]["spec"]
    # Either label: the stack's pool carries remote-kpo/gpu, a DAG's pool only what AKS puts on
    # every NVIDIA node.
    assert pod["affinity"] == GPU_NODES and "nodeSelector" not in pod
    assert pod["tolerations"] == PLUGIN_TOLERATIONS
    assert pod["priorityClassName"] == "system-node-critical"
    (container,) = pod["containers"]
    assert container["image"] == "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"
    assert container["volumeMounts"] == [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}]
    assert pod["volumes"] == [{"name": "device-plugin",
                               "hostPath": {"path": "/var/lib/kubelet/device-plugins", "type": "Directory"}}]


def test_device_plugin_fails_and_restarts_until_the_driver_is_ready(example):
    # No FAIL_ON_INIT_ERROR=false: with it a plugin started before the driver waits forever.
    (container,) = example.of_type(DAEMONSET)[0].inputs["spec"]["template"]["spec"]["containers"]
    assert "FAIL_ON_INIT_ERROR" not in json.dumps(container)


def test_device_plugin_tolerates_every_taint_the_gpu_pool_declares(example):
    taints = only(example, AGENT_POOL)["nodeTaints"]
    (plugin,) = example.of_type(DAEMONSET)
    tolerated = {(t["key"], t["effect"]) for t in plugin.inputs["spec"]["template"]["spec"]["tolerations"]
                 if t["operator"] == "Exists"}
    for taint in taints:
        key, rest = taint.split("=", 1)
        assert (key, rest.split(":")[1]) in tolerated


def test_on_demand_gpu_pool_gets_the_same_device_plugin(example):
    raw = MINIMAL | {"gpuPool": {"enabled": True}}
    (plugin,) = run(raw, "staging")[0].of_type(DAEMONSET)
    assert plugin.inputs["spec"] == example.of_type(DAEMONSET)[0].inputs["spec"]


def test_a_deployment_with_ephemeral_node_pools_gets_the_device_plugin_without_a_gpu_pool():
    raw = MINIMAL | {"deployments": [{**MINIMAL["deployments"][0], "ephemeralNodePools": True}]}
    run_ = run(raw, "staging")[0]
    assert run_.of_type(AGENT_POOL) == []
    (plugin,) = run_.of_type(DAEMONSET)
    assert plugin.inputs["spec"]["template"]["spec"]["affinity"] == GPU_NODES
    assert "gpuTask" not in run_.outputs


def test_gpu_task_output_tolerates_the_spot_taint_too(example):
    assert example.secret["gpuTask"] is False
    task = example.outputs["gpuTask"]
    assert task["nodeSelector"] == {"remote-kpo/gpu": "true"}
    assert task["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot", "effect": "NoSchedule"}]
    assert (task["resourceName"], task["startupTimeoutSeconds"]) == ("nvidia.com/gpu", 900)
    assert task["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"


def test_no_device_plugin_or_gpu_task_without_a_gpu_pool(minimal):
    assert minimal.of_type(DAEMONSET) == []
    assert "gpuTask" not in minimal.outputs


def test_accelerator_on_aks_stops_before_any_resource():
    mocks = AzureMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_program(MINIMAL | {"gpuPool": {"enabled": True, "accelerator": {"type": "nvidia-tesla-t4"}}},
                    stack="staging", mocks=mocks)
    assert str(caught.value) == (
        "remote-kpo:gpuPool.accelerator: not used on aks: the VM size in machineType sets the GPU type and count")
    assert mocks.resources == []


def test_each_deployment_gets_a_managed_identity_federated_with_its_astro_service_account(example):
    identities = {r.name: r.inputs for r in example.of_type(IDENTITY)}
    assert identities == {
        "analytics-azure-identity": {"resourceName": "kpo-gpu-weu-analytics", "resourceGroupName": "rg-kpo-gpu-weu",
                               "location": "westeurope"},
        "ml-training-azure-identity": {"resourceName": "kpo-gpu-weu-ml-training", "resourceGroupName": "rg-kpo-gpu-weu",
                                 "location": "westeurope"},
    }
    assert len(example.of_type(FEDERATED)) == 3
    credential = example.named("ml-training-azure-federated-credential").inputs
    assert credential["resourceName"] == "kpo-gpu-weu-ml-training"
    assert credential["issuer"] == ("https://westeurope.oic.prod-aks.azure.com/5e8a1c9d-2f4b-4a6e-8d3c-7b1f0e9a4c26/"
                                    "a4c7e2d9-6b1f-4e3a-9c8d-2f5b7a0e1d63/")
    # Astro's service accounts: <namespace>-worker-serviceaccount and -triggerer-serviceaccount.
    assert credential["subject"] == "system:serviceaccount:quantum-orbit-7390:quantum-orbit-7390-worker-serviceaccount"
    assert example.named("ml-training-azure-federated-credential-2").inputs["subject"] == (
        "system:serviceaccount:quantum-orbit-7390:quantum-orbit-7390-triggerer-serviceaccount")
    assert credential["audiences"] == ["api://AzureADTokenExchange"]
    assert example.named("analytics-azure-federated-credential").inputs["subject"] == (
        "system:serviceaccount:celestial-nebula-4821:celestial-nebula-4821-worker-serviceaccount")


def test_a_list_of_subjects_gets_one_federated_credential_each_created_one_after_another():
    worker, triggerer = "system:serviceaccount:astro-ns:airflow-worker", "system:serviceaccount:astro-ns:airflow-triggerer"
    raw = MINIMAL | {"deployments": [{"name": "reports", "identity": {"azure": {
        "issuer": AZURE["issuer"], "subjects": [worker, triggerer]}}}]}
    dependencies: dict[str, list[str]] = {}
    register = MockMonitor.RegisterResource

    def recording(monitor, request):
        dependencies[request.name] = list(request.dependencies)
        return register(monitor, request)

    with mock.patch.object(MockMonitor, "RegisterResource", recording):
        run_ = run(raw, "staging")[0]
    credentials = run_.of_type(FEDERATED)
    assert [(c.name, c.inputs["federatedIdentityCredentialResourceName"], c.inputs["subject"]) for c in credentials] == [
        ("reports-azure-federated-credential", "astro-deployment", worker),
        ("reports-azure-federated-credential-2", "astro-deployment-2", triggerer)]
    assert {c.inputs["resourceName"] for c in credentials} == {"remote-kpo-staging-reports"}
    # Entra ID refuses concurrent creation on one identity: the second waits for the first.
    assert not [urn for urn in dependencies["reports-azure-federated-credential"] if "Federated" in urn]
    assert [urn.rsplit("::", 1)[1] for urn in dependencies["reports-azure-federated-credential-2"]
            if "Federated" in urn] == ["reports-azure-federated-credential"]


def test_rolebinding_names_the_identitys_principal_id_as_a_user(example):
    bindings = {r.inputs["metadata"]["namespace"]: r.inputs["subjects"] for r in example.of_type(BINDING)}
    assert bindings == {
        "kpo-analytics": [{"kind": "User", "name": "principal-id-of-kpo-gpu-weu-analytics",
                           "apiGroup": "rbac.authorization.k8s.io"}],
        "kpo-ml-training": [{"kind": "User", "name": "principal-id-of-kpo-gpu-weu-ml-training",
                             "apiGroup": "rbac.authorization.k8s.io"}],
    }


def test_only_the_ephemeral_node_pool_deployment_gets_an_azure_role_on_this_cluster(example):
    assert only(example, ROLE_ASSIGNMENT) == {
        "principalId": "principal-id-of-kpo-gpu-weu-ml-training",
        "principalType": "ServicePrincipal",
        # The subscription form Azure reads back, not the role's resource-group-scoped id: a
        # refresh then records no difference and the next up does not replace the assignment.
        "roleDefinitionId": f"{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/agent-pools-guid",
        "scope": EXAMPLE_CLUSTER_ID,
    }


def test_a_replaced_agent_pool_assignment_is_deleted_before_its_twin_is_created(example):
    # Stacks made with the resource-group form of the role id get a replacement on upgrade;
    # Azure refuses two assignments of one role, principal and scope.
    assert example.options["ml-training-azure-agent-pools"].delete_before_replace is True


def test_the_custom_role_name_names_the_subscription_so_it_is_unique_in_the_tenant(example):
    assert only(example, ROLE_DEFINITION)["roleName"] == (
        "remote-kpo agent pools 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0/rg-kpo-gpu-weu/kpo-gpu-weu")


def test_role_definition_ids_drop_the_scope_they_were_defined_at():
    assert aks.role_definition_id(aks.subscription_of(f"{EXAMPLE_RESOURCE_GROUP_ID}/providers/x/y/z"), "g") == (
        f"{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/g")
    with pytest.raises(ValueError):
        aks.subscription_of("resourceGroups/rg")


def test_agent_pool_role_allows_only_agent_pool_actions_and_is_defined_at_the_resource_group(example):
    role = only(example, ROLE_DEFINITION)
    assert role["permissions"] == [{"actions": [
        "Microsoft.ContainerService/managedClusters/agentPools/read",
        "Microsoft.ContainerService/managedClusters/agentPools/write",
        "Microsoft.ContainerService/managedClusters/agentPools/delete"]}]
    # Azure takes no single resource as a custom role's assignable scope; the assignment
    # (test above) stays on the cluster.
    assert (role["scope"], role["assignableScopes"], role["roleType"]) == (
        EXAMPLE_RESOURCE_GROUP_ID, [EXAMPLE_RESOURCE_GROUP_ID], "CustomRole")


def test_using_the_kubeconfig_needs_no_azure_role(minimal):
    assert minimal.of_type(ROLE_DEFINITION) == [] and minimal.of_type(ROLE_ASSIGNMENT) == []


def test_server_and_ca_come_from_the_cluster_user_credential_not_the_admin_one(example_and_mocks):
    example, mocks = example_and_mocks
    assert [(c.token, c.args) for c in mocks.calls] == [
        (USER_CREDENTIALS, {"resourceGroupName": "rg-kpo-gpu-weu", "resourceName": "kpo-gpu-weu"})]
    assert example.outputs["clusterEndpoint"] == EXAMPLE_SERVER
    assert example.outputs["clusterCaCertificate"] == ca_of("kpo-gpu-weu")


def test_program_provider_logs_in_with_kubelogin_as_configured(example):
    (provider,) = example.of_type("pulumi:providers:kubernetes")
    doc = json.loads(provider.inputs["kubeconfig"])
    assert doc["clusters"][0]["cluster"] == {"server": EXAMPLE_SERVER, "certificate-authority-data": ca_of("kpo-gpu-weu")}
    (user,) = doc["users"]
    assert user["user"]["exec"]["command"] == "kubelogin"
    assert user["user"]["exec"]["args"] == [
        "get-token", "--login", "azurecli", "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630",
        "--tenant-id", EXAMPLE_TENANT]


@pytest.mark.parametrize("login", ["azurecli", "workloadidentity", "spn"])
def test_provider_user_asks_kubelogin_for_an_aks_token_in_each_login_mode(login):
    # Client ids and secrets come from the environment (AZURE_CLIENT_ID, AAD_SERVICE_PRINCIPAL_*),
    # so none of them can appear in the provider's kubeconfig or the state.
    assert aks.provider_user(login, TENANT) == {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "kubelogin",
        "args": ["get-token", "--login", login, "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630",
                 "--tenant-id", TENANT],
        "provideClusterInfo": False, "interactiveMode": "Never"}}


def test_minimal_stack_provider_uses_workload_identity_login(minimal):
    (provider,) = minimal.of_type("pulumi:providers:kubernetes")
    args = json.loads(provider.inputs["kubeconfig"])["users"][0]["user"]["exec"]["args"]
    assert args[:3] == ["get-token", "--login", "workloadidentity"]


def test_provider_client_rate_limit_defaults_to_large_stack_values_and_follows_kube_client(example):
    (provider,) = example.of_type("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeClientSettings"]) == {"qps": 200, "burst": 400}
    configured, _ = run(stack_config("aks") | {"kubeClient": {"qps": 25.5, "burst": 60}}, "aks")
    (provider,) = configured.of_type("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeClientSettings"]) == {"qps": 25.5, "burst": 60}


def test_every_kubernetes_object_goes_through_the_aks_provider(example):
    objects = [r for r in example.resources if r.typ.startswith("kubernetes:")]
    # 2 x (Namespace, Role, RoleBinding, LimitRange, 4 ResourceQuotas, ValidatingAdmissionPolicy and
    # its binding) + the device plugin
    assert len(objects) == 21
    assert {r.provider.rsplit("$", 1)[-1] for r in objects} == {
        "pulumi:providers:kubernetes::aks-cluster::aks-cluster-id"}
    assert not [r for r in example.resources if "ClusterRole" in r.typ]


def test_exported_kubeconfig_runs_kubelogin_workload_identity_as_the_deployments_identity(example):
    doc = json.loads(example.outputs["kubeconfigs"]["ml-training"])
    assert doc["users"][0]["user"]["exec"]["args"] == [
        "get-token", "--login", "workloadidentity",
        "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630",
        "--client-id", "client-id-of-kpo-gpu-weu-ml-training",
        "--tenant-id", EXAMPLE_TENANT,
        "--environment", "AzurePublicCloud",
        "--federated-token-file", "/var/run/secrets/azure/tokens/azure-identity-token",
        "--disable-environment-override"]
    assert doc["contexts"][0]["context"]["namespace"] == "kpo-ml-training"
    assert doc["clusters"][0]["cluster"]["server"] == EXAMPLE_SERVER
    connection = json.loads(example.outputs["airflowConnections"]["ml-training"])
    assert connection["extra"]["kube_config"] == doc


def test_outputs_describe_the_cluster_and_keep_credentials_secret(example):
    assert (example.outputs["cloud"], example.outputs["clusterName"]) == ("aks", "kpo-gpu-weu")
    # The identity the exported kubeconfig runs as, to attach to the Astro Deployment: its client
    # id, and the name and resource group Astro asks for.
    assert example.outputs["deployments"]["ml-training"] == {
        "namespace": "kpo-ml-training", "connectionId": "kpo_ml_training", "envVar": "AIRFLOW_CONN_KPO_ML_TRAINING",
        "janitor": DEFAULT_JANITOR, "azureClientId": "client-id-of-kpo-gpu-weu-ml-training",
        "azureIdentityName": "kpo-gpu-weu-ml-training", "azureIdentityResourceGroup": "rg-kpo-gpu-weu"}
    assert example.named("ml-training-azure-identity").inputs["resourceName"] == "kpo-gpu-weu-ml-training"
    assert example.secret == {
        "cloud": False, "clusterName": False, "clusterEndpoint": False, "clusterCaCertificate": False,
        "deployments": False, "dockerfile": False, "gpuTask": False, "task": False,
        "kubeconfigs": True, "airflowConnections": True, "kubeconfig": True,
    }


def test_dockerfile_installs_the_azure_cli_kubectl_and_kubelogin(example):
    assert "https://aka.ms/InstallAzureCLIDeb" in example.outputs["dockerfile"]
    assert "az aks install-cli" in example.outputs["dockerfile"]


def test_an_endpoint_open_to_any_address_is_warned_about_and_an_authorized_one_is_not():
    def warnings_of(raw: dict, stack: str) -> list[str]:
        with mock.patch.object(pulumi.log, "warn") as warn:
            run(raw, stack)
        return [call.args[0] for call in warn.call_args_list]

    assert warnings_of(MINIMAL, "staging") == [
        "remote-kpo:aks.authorizedIpRanges is empty: the cluster's public endpoint accepts "
        "connections from any address (requests still need Entra ID credentials)"]
    # The example's only warning is the ephemeralNodePools one (below).
    assert not [w for w in warnings_of(stack_config("aks"), "aks") if "authorizedIpRanges" in w]
    stale = stack_config("aks")
    stale["aks"] = stale["aks"] | {"kubernetesVersion": "1.30"}
    assert [w for w in warnings_of(stale, "aks") if "kubernetesVersion" in w] == [
        "remote-kpo:aks.kubernetesVersion: Kubernetes 1.30 left AKS standard support on 2025-08-22 "
        "(https://learn.microsoft.com/azure/aks/supported-kubernetes-versions#aks-kubernetes-release-calendar): "
        "set a newer version, or unset it for the cloud's default"]


def test_a_deployment_with_ephemeral_node_pools_is_warned_that_it_reaches_every_agent_pool():
    with mock.patch.object(pulumi.log, "warn") as warn:
        run(stack_config("aks"), "aks")
    assert [call.args[0] for call in warn.call_args_list] == [
        "remote-kpo:deployments[1].ephemeralNodePools: ml-training's identity may change or delete every agent "
        "pool of the cluster, including the system pool, the GPU pool and other Deployments' pools "
        "(agentPools/write and /delete on the cluster)"]


def test_a_system_pool_that_scales_to_zero_stops_before_any_resource():
    mocks = AzureMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_program(MINIMAL | {"systemPool": {"minNodes": 0}}, stack="staging", mocks=mocks)
    assert str(caught.value) == "remote-kpo:systemPool.minNodes: an AKS system pool needs at least 1 node"
    assert mocks.resources == []


MAINTENANCE = "azure-native:containerservice:MaintenanceConfiguration"


def test_cluster_upgrades_and_node_image_upgrades_wait_for_saturday_by_default(example):
    configs = {r.inputs["configName"]: r.inputs for r in example.of_type(MAINTENANCE)}
    # The two names AKS binds to the patch and NodeImage channels; all of Saturday, UTC.
    assert sorted(configs) == ["aksManagedAutoUpgradeSchedule", "aksManagedNodeOSUpgradeSchedule"]
    for inputs in configs.values():
        assert inputs["resourceName"] == only(example, CLUSTER)["resourceName"] == "kpo-gpu-weu"
        assert inputs["maintenanceWindow"] == {
            "schedule": {"weekly": {"dayOfWeek": "Saturday", "intervalWeeks": 1}},
            "startTime": "00:00", "durationHours": 24, "utcOffset": "+00:00", "notAllowedDates": []}


def test_a_configured_window_and_blocked_dates_reach_both_schedules():
    raw = MINIMAL | {"aks": MINIMAL["aks"] | {"maintenanceWindow": {
        "dayOfWeek": "Sunday", "startTime": "22:00", "durationHours": 6,
        "notAllowedDates": [{"start": "2025-12-20", "end": "2026-01-04"}]}}}
    for resource in run(raw, "staging")[0].of_type(MAINTENANCE):
        assert resource.inputs["maintenanceWindow"] == {
            "schedule": {"weekly": {"dayOfWeek": "Sunday", "intervalWeeks": 1}},
            "startTime": "22:00", "durationHours": 6, "utcOffset": "+00:00",
            "notAllowedDates": [{"start": "2025-12-20", "end": "2026-01-04"}]}
