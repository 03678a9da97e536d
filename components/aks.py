"""AKS (seed 002): an Entra ID-integrated cluster with local accounts off and workload identity
on, its system and GPU pools, and per Deployment a user-assigned managed identity federated
with the Deployment's service account.

Entra ID authenticates, Kubernetes RBAC authorizes: a Deployment's identity needs no Azure role
to use its kubeconfig, and its pod rights come only from the namespace RoleBinding.
"""

import base64
import re
from typing import Any, Optional

import pulumi
import yaml
# Submodules only: the package root would import every Azure service.
from pulumi_azure_native import authorization, containerservice, managedidentity, resources

from components import gpu
from components import kubeconfig as kc
from components import names
from components.permissions import CLOUD_ACTIONS
from config import AksConfig, Deployment, GpuPool, NodePool, present

SYSTEM_POOL = "system"
GPU_POOL = "gpu"
# A user-assigned identity's name: 3-128 characters (Azure resource naming rules); a
# cluster (40) and a Deployment name (63) always fit, the cut is a guard.
MANAGED_IDENTITY_NAME_MAX = 128
# The audience Entra ID requires on a federated token it exchanges (seed 002).
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


def aad_profile(aks: AksConfig) -> containerservice.ManagedClusterAADProfileArgsDict:
    """Managed Entra ID for authentication; Kubernetes RBAC (not Azure RBAC) decides access."""
    return {
        "managed": True,
        "enable_azure_rbac": False,
        "admin_group_object_ids": list(aks.admin_group_object_ids),
        "tenant_id": aks.tenant_id,
    }


def api_server_access_profile(aks: AksConfig) -> containerservice.ManagedClusterAPIServerAccessProfileArgsDict:
    # Always sent, [] included: AKS keeps the ranges a request leaves out, so emptying
    # authorizedIpRanges must send the empty list to open the endpoint (the program warns).
    return {"authorized_ip_ranges": list(aks.authorized_ip_ranges)}


def _autoscaled(pool: NodePool, name: str, mode: str) -> containerservice.ManagedClusterAgentPoolProfileArgsDict:
    # Nodes get no public IP; the cluster autoscaler owns the count between min and max.
    return {
        "name": name,
        "mode": mode,
        "vm_size": present(pool.machine_type, "machineType"),
        "os_type": "Linux",
        "type": "VirtualMachineScaleSets",
        "enable_auto_scaling": True,
        "min_count": pool.min_nodes,
        "max_count": pool.max_nodes,
        "count": pool.min_nodes,
        "enable_node_public_ip": False,
    }


def system_pool_profile(pool: NodePool) -> containerservice.ManagedClusterAgentPoolProfileArgsDict:
    return _autoscaled(pool, SYSTEM_POOL, "System")


def gpu_taints(spot: bool) -> list[str]:
    # On spot, AKS puts its spot taint on every node itself; declaring it too keeps the pool's
    # inputs equal to what Azure reports (no diff on refresh).
    return [gpu.taint_string(taint) for taint in gpu.node_taints("aks", spot)]


# Batch work leaves nodes idle as soon as a task ends: remove them after minutes, not the
# cluster autoscaler's default ten (pulumi-azure-native ManagedClusterPropertiesAutoScalerProfile;
# values are whole minutes with an `m`).
AUTO_SCALER_PROFILE: containerservice.ManagedClusterPropertiesAutoScalerProfileArgsDict = {
    "scale_down_unneeded_time": "3m",
    "scale_down_delay_after_add": "3m",
}


def gpu_pool_args(pool: GpuPool) -> dict[str, Any]:
    """A User pool that scales from `minNodes` (0 by default): only tolerating pods land on it."""
    # The AgentPool resource takes the pool's name as agent_pool_name.
    profile = {key: value for key, value in _autoscaled(pool, GPU_POOL, "User").items() if key != "name"}
    args: dict[str, Any] = {
        **profile,
        "node_taints": gpu_taints(pool.spot),
        # On spot, AKS's own label too, declared like its taint (no diff on refresh).
        "node_labels": {**gpu.GPU_LABELS, **(gpu.AKS_SPOT_LABELS if pool.spot else {})},
    }
    if pool.spot:
        # Delete evicted nodes (no stopped VMs holding quota); -1 pays up to the on-demand
        # price, so nodes are evicted for capacity, never for price.
        args.update(scale_set_priority="Spot", scale_set_eviction_policy="Delete", spot_max_price=-1)
    return args


def subscription_of(resource_id: str) -> str:
    match = re.match(r"/subscriptions/([^/]+)/", resource_id)
    if not match:
        raise ValueError(f"not an Azure resource id: {resource_id}")
    return match.group(1)


def role_definition_id(subscription: str, guid: str) -> str:
    """A role definition in the form Azure reads a role assignment's roleDefinitionId back in
    (subscription-scoped, whatever scope the role was defined at): any other form differs after a
    refresh, and the next `up` would replace the assignment, which Azure refuses as
    RoleAssignmentExists (terraform-provider-azurerm #13993: the read-back form)."""
    return f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def agent_pool_role_name(subscription: str, resource_group: str, cluster_name: str) -> str:
    """Custom role names are unique per tenant, not per subscription (azure-powershell #4365:
    custom roles are created per tenant): the subscription makes two stacks' roles distinct."""
    return f"remote-kpo agent pools {subscription}/{resource_group}/{cluster_name}"


def agent_pool_permissions() -> list[authorization.PermissionArgsDict]:
    return [{"actions": list(CLOUD_ACTIONS["aks"]["ephemeralNodePools"].actions)}]


def provider_user(login: str, tenant_id: str) -> dict:
    """The exec user of this program's own Kubernetes provider (local accounts are off).

    azurecli: the person's `az login`. workloadidentity: kubelogin reads AZURE_CLIENT_ID and
    AZURE_FEDERATED_TOKEN_FILE. spn: kubelogin reads AAD_SERVICE_PRINCIPAL_CLIENT_ID and
    AAD_SERVICE_PRINCIPAL_CLIENT_SECRET. No credential ever lands in the kubeconfig or state.
    """
    args = ["get-token", "--login", login, "--server-id", kc.AKS_SERVER_ID, "--tenant-id", tenant_id]
    return kc.exec_user("kubelogin", args, provide_cluster_info=False)


def server_and_ca(user_kubeconfig_b64: str) -> tuple[str, str]:
    """(API server URL, base64 CA) from the cluster-user kubeconfig AKS returns base64-encoded."""
    return kc.cluster_of(yaml.safe_load(base64.b64decode(user_kubeconfig_b64)), None)


# The names AKS binds to the auto-upgrade channels (`upgrade_channel` and
# `node_os_upgrade_channel` above); a configuration under any other name gates nothing (azure-cli,
# acs/maintenanceconfiguration.py: --config-name must be one of default,
# aksManagedAutoUpgradeSchedule or aksManagedNodeOSUpgradeSchedule).
MAINTENANCE_CONFIGURATIONS = ("aksManagedAutoUpgradeSchedule", "aksManagedNodeOSUpgradeSchedule")


def maintenance_window(aks: AksConfig) -> containerservice.MaintenanceWindowArgsDict:
    """The weekly window of `aks.maintenanceWindow`, in UTC."""
    window = aks.maintenance_window
    return {
        "schedule": {"weekly": {"day_of_week": window.day_of_week, "interval_weeks": 1}},
        "start_time": window.start_time,
        "duration_hours": window.duration_hours,
        "utc_offset": "+00:00",
        "not_allowed_dates": [{"start": span.start, "end": span.end} for span in window.not_allowed_dates],
    }


class AksCluster(pulumi.ComponentResource):
    """Resource group, managed cluster with its system pool, optional GPU pool, and the custom
    role for Deployments that manage their own agent pools."""

    def __init__(self, name: str, *, cluster_name: str, resource_group: str, aks: AksConfig,
                 system_pool: NodePool, gpu_pool: GpuPool, agent_pool_role: bool,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:AksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.cluster_name = cluster_name
        self.location = aks.location
        self.resource_group = resources.ResourceGroup(
            f"{name}-resource-group", resource_group_name=resource_group, location=aks.location,
            opts=child)
        self.cluster = containerservice.ManagedCluster(
            name,
            resource_group_name=self.resource_group.name,
            resource_name_=cluster_name,
            location=aks.location,
            dns_prefix=cluster_name,
            kubernetes_version=aks.kubernetes_version,
            identity={"type": containerservice.ResourceIdentityType.SYSTEM_ASSIGNED},
            aad_profile=aad_profile(aks),
            enable_rbac=True,
            disable_local_accounts=True,
            oidc_issuer_profile={"enabled": True},
            security_profile={"workload_identity": {"enabled": True}},
            api_server_access_profile=api_server_access_profile(aks),
            agent_pool_profiles=[system_pool_profile(system_pool)],
            auto_scaler_profile=AUTO_SCALER_PROFILE,
            auto_upgrade_profile={"upgrade_channel": "patch", "node_os_upgrade_channel": "NodeImage"},
            # protect: `pulumi destroy` fails at its preview, before it deletes what depends on
            # the cluster. No CanNotDelete management lock: a lock on a resource covers its
            # child resources too (Azure Resource Manager docs, resource locks: "a lock on a
            # resource and its child resources"), and agent pools are children of the cluster,
            # so DAGs could no longer delete their pools, nor `up` replace the GPU pool.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["agentPoolProfiles[0].count"],
                                        protect=aks.deletion_protection),
        )
        for config_name in MAINTENANCE_CONFIGURATIONS:
            containerservice.MaintenanceConfiguration(
                f"{name}-{config_name}",
                resource_group_name=self.resource_group.name,
                resource_name_=self.cluster.name,
                config_name=config_name,
                maintenance_window=maintenance_window(aks),
                opts=child)
        if gpu_pool.enabled:
            containerservice.AgentPool(
                f"{name}-gpu-pool",
                resource_group_name=self.resource_group.name,
                resource_name_=self.cluster.name,
                agent_pool_name=GPU_POOL,
                **gpu_pool_args(gpu_pool),
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["count"]),
            )

        self.agent_pool_role: Optional[authorization.RoleDefinition] = None
        if agent_pool_role:
            # Custom roles are defined for, and assignable in, management groups, subscriptions
            # or resource groups, not single resources (learn.microsoft.com/en-us/azure/
            # role-based-access-control/role-definitions#assignablescopes): the narrowest is the
            # cluster's resource group. Each assignment is on the cluster itself
            # (AksDeploymentIdentity), so it reaches no other cluster.
            self.agent_pool_role = authorization.RoleDefinition(
                f"{name}-agent-pool-role",
                scope=self.resource_group.id,
                assignable_scopes=[self.resource_group.id],
                role_name=self.resource_group.id.apply(
                    lambda group_id: agent_pool_role_name(subscription_of(group_id), resource_group, cluster_name)),
                description=CLOUD_ACTIONS["aks"]["ephemeralNodePools"].why,
                role_type="CustomRole",
                permissions=agent_pool_permissions(),
                opts=child,
            )

        # The cluster-user credential (listClusterUserCredential, the least of the credential
        # actions) of an Entra ID cluster holds no secret: just the server and its CA.
        credentials = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=self.resource_group.name, resource_name=self.cluster.name,
            opts=pulumi.InvokeOutputOptions(parent=self))
        server_ca = credentials.kubeconfigs.apply(lambda kubeconfigs: server_and_ca(kubeconfigs[0].value))
        # Public values: keep them plain outputs even if the provider marks the result secret.
        self.endpoint = pulumi.Output.unsecret(server_ca[0])
        self.ca_data = pulumi.Output.unsecret(server_ca[1])
        self.register_outputs({"clusterId": self.cluster.id, "endpoint": self.endpoint})


class AksDeploymentIdentity(pulumi.ComponentResource):
    """One Deployment's user-assigned managed identity, federated with its service account
    (seed 002); with ephemeralNodePools, the agent-pool role on this cluster only."""

    def __init__(self, name: str, deployment: Deployment, cluster: AksCluster,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:AksDeploymentIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        azure = present(present(deployment.identity, "identity").azure, "identity.azure")

        self.identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity",
            resource_group_name=cluster.resource_group.name,
            resource_name_=names.fit(f"{cluster.cluster_name}-{deployment.name}", MANAGED_IDENTITY_NAME_MAX),
            location=cluster.location,
            opts=child,
        )
        # One after another: Entra ID answers 409 Conflict to concurrent creation of federated
        # credentials on one identity (learn.microsoft.com/en-us/entra/workload-id/
        # workload-identity-federation-considerations).
        previous: list[pulumi.Resource] = []
        for i, subject in enumerate(azure.all_subjects):
            suffix = "" if i == 0 else f"-{i + 1}"
            credential = managedidentity.FederatedIdentityCredential(
                f"{name}-federated-credential{suffix}",
                resource_group_name=cluster.resource_group.name,
                resource_name_=self.identity.name,
                federated_identity_credential_resource_name=f"astro-deployment{suffix}",
                issuer=azure.issuer,
                subject=subject,
                audiences=[TOKEN_EXCHANGE_AUDIENCE],
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
            )
            previous = [credential]
        if deployment.ephemeral_node_pools:
            role = cluster.agent_pool_role
            if role is None:
                raise ValueError(f"{deployment.name} manages agent pools, but the cluster was made without the role")
            authorization.RoleAssignment(
                f"{name}-agent-pools",
                principal_id=self.identity.principal_id,
                # Stated, so Azure does not look up a principal that may not have replicated yet.
                principal_type="ServicePrincipal",
                role_definition_id=pulumi.Output.all(cluster.resource_group.id, role.name).apply(
                    lambda args: role_definition_id(subscription_of(args[0]), args[1])),
                scope=cluster.cluster.id,
                # A replacement (a stack made with the resource-group form of the role id gets one)
                # cannot create its twin first: Azure refuses a second assignment of the same
                # role, principal and scope (RoleAssignmentExists).
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            )

        self.client_id = self.identity.client_id
        self.principal_id = self.identity.principal_id
        self.register_outputs({"clientId": self.client_id, "principalId": self.principal_id})
