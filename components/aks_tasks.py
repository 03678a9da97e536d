"""AKS task pods (issue 16): AcrPull for the kubelet identity, and workload identity for the
namespace's `remote-kpo-task`.

- `aks.acrIds`: the built-in AcrPull role on each registry for the cluster's kubelet identity
  (ManagedCluster identityProfile.kubeletidentity), the identity nodes pull images with
  ("Authenticate with Azure Container Registry from Azure Kubernetes Service",
  https://learn.microsoft.com/azure/aks/cluster-container-registry-integration).
- `taskIdentity.azureIdentity`: a user-assigned identity (made here for `{}`, else the given one,
  in the stack's subscription) with a federated credential for the cluster's OIDC issuer and
  subject `system:serviceaccount:<namespace>:remote-kpo-task`, audience
  api://AzureADTokenExchange; the ServiceAccount is annotated `azure.workload.identity/client-id`.
  A task pod also needs the label `azure.workload.identity/use: "true"`, which makes the
  workload identity webhook mount the token ("Use Microsoft Entra Workload ID with AKS",
  https://learn.microsoft.com/azure/aks/workload-identity-overview).
"""

import hashlib
import re
from typing import Optional

import pulumi
from pulumi_azure_native import authorization, managedidentity

from components.aks import TOKEN_EXCHANGE_AUDIENCE, AksCluster, role_definition_id, subscription_of
from components.permissions import (
    ACR_PULL_ROLE_DEFINITION,
    TASK_SERVICE_ACCOUNT,
    task_identity_subject,
)
from config import Deployment, TaskIdentity

CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
USE_LABEL = "azure.workload.identity/use"
# A federated credential's name: 3-120 characters.
CREDENTIAL_NAME_MAX = 120


# ---- pure functions -------------------------------------------------------------------

def acr_pull_role_definition_id(acr_id: str) -> str:
    """The built-in AcrPull role, addressed in the registry's subscription."""
    return role_definition_id(subscription_of(acr_id), ACR_PULL_ROLE_DEFINITION)


def acr_resource_name(acr_id: str) -> str:
    """A stable Pulumi name per registry (its name and a hash of its id): reordering acrIds
    replaces nothing."""
    digest = hashlib.sha256(acr_id.lower().encode()).hexdigest()[:6]
    return f"{acr_id.rsplit('/', 1)[-1].lower()}-{digest}"


def identity_parts(identity_id: str) -> tuple[str, str]:
    """(resource group, name) of a user-assigned identity's resource id."""
    match = re.search(r"/resourceGroups/([^/]+)/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/([^/]+)$",
                      identity_id, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a user-assigned identity id: {identity_id}")
    return match.group(1), match.group(2)


def federated_credential_name(cluster_name: str, namespace: str) -> str:
    """`remote-kpo-task-<cluster>-<namespace>`: unique on an identity shared by clusters and
    namespaces, and marked as a task credential for the policy pack."""
    name = f"{TASK_SERVICE_ACCOUNT}-{cluster_name}-{namespace}"
    if len(name) <= CREDENTIAL_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:CREDENTIAL_NAME_MAX - 9]}-{digest}"


def kubelet_object_id(identity_profile) -> str:
    kubelet = (identity_profile or {}).get("kubeletidentity")
    if kubelet is None or not kubelet.object_id:
        raise RuntimeError("the AKS cluster reports no kubelet identity (identityProfile.kubeletidentity)")
    return kubelet.object_id


def issuer_url(oidc_issuer_profile) -> str:
    if oidc_issuer_profile is None or not oidc_issuer_profile.issuer_url:
        raise RuntimeError("the AKS cluster reports no OIDC issuer (oidcIssuerProfile.issuerURL)")
    return oidc_issuer_profile.issuer_url


# ---- components -----------------------------------------------------------------------

class AksAcrPull(pulumi.ComponentResource):
    """AcrPull (NODE_ACTIONS["aks"]["acrPull"]) for the kubelet identity on each registry."""

    def __init__(self, name: str, cluster: AksCluster, acr_ids: list[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:AksAcrPull", name, None, opts)
        kubelet = cluster.cluster.identity_profile.apply(kubelet_object_id)
        for acr_id in acr_ids:
            authorization.RoleAssignment(
                f"{name}-{acr_resource_name(acr_id)}",
                principal_id=kubelet,
                # Stated, so Azure does not look up a principal that may not have replicated yet.
                principal_type="ServicePrincipal",
                role_definition_id=acr_pull_role_definition_id(acr_id),
                scope=acr_id,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"kubeletObjectId": kubelet})


class AksTaskIdentity(pulumi.ComponentResource):
    """The task identity (made or given) federated with this namespace's remote-kpo-task."""

    def __init__(self, name: str, deployment: Deployment, task_identity: TaskIdentity, cluster: AksCluster,
                 after: Optional[list[pulumi.Resource]] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:AksTaskIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = deployment.namespace_name
        given = task_identity.azure_identity
        if isinstance(given, str):
            group_name, identity_name = identity_parts(given)
            found = managedidentity.get_user_assigned_identity_output(
                resource_group_name=group_name, resource_name=identity_name,
                opts=pulumi.InvokeOutputOptions(parent=self))
            resource_group: pulumi.Input[str] = group_name
            identity: pulumi.Input[str] = identity_name
            self.client_id, self.principal_id = found.client_id, found.principal_id
        else:
            made = managedidentity.UserAssignedIdentity(
                f"{name}-identity",
                resource_group_name=cluster.resource_group.name,
                resource_name_=f"{cluster.cluster_name}-{deployment.name}-task",
                location=cluster.location,
                opts=child,
            )
            resource_group, identity = cluster.resource_group.name, made.name
            self.client_id, self.principal_id = made.client_id, made.principal_id

        issuer = cluster.cluster.oidc_issuer_profile.apply(issuer_url)
        self.credential = managedidentity.FederatedIdentityCredential(
            f"{name}-federated-credential",
            resource_group_name=resource_group,
            resource_name_=identity,
            federated_identity_credential_resource_name=federated_credential_name(
                cluster.cluster_name, namespace),
            issuer=issuer,
            subject=task_identity_subject("aks", namespace),
            audiences=[TOKEN_EXCHANGE_AUDIENCE],
            # Credentials on one identity are written one at a time: Entra ID answers concurrent
            # writes with 409 ("Important considerations and restrictions for federated identity
            # credentials", https://learn.microsoft.com/entra/workload-id/workload-identity-federation-considerations).
            opts=pulumi.ResourceOptions(parent=self, depends_on=after or []),
        )
        self.annotations = {CLIENT_ID_ANNOTATION: self.client_id}
        self.register_outputs({"clientId": self.client_id, "principalId": self.principal_id})
