"""cloud: aks — an Entra ID-integrated AKS cluster (seed 002).

Each Deployment gets a managed identity federated with its Astro service account; its exported
kubeconfig runs `kubelogin --login workloadidentity` as that identity, and the namespace
RoleBinding names the identity's principal id as a User.
"""

import pulumi
import pulumi_kubernetes as k8s

from components import kubeconfig as kc
from components.access import DeploymentAccess, rbac_subject
from components.aks import AksCluster, AksDeploymentIdentity, provider_user
from config import StackConfig
from stacks.outputs import DeploymentEndpoint, stack_outputs


def build(cfg: StackConfig, stack: str) -> dict:
    aks = cfg.aks
    cluster_name = cfg.resolved_cluster_name(stack)
    cluster = AksCluster(
        "aks",
        cluster_name=cluster_name,
        resource_group=aks.resource_group or f"remote-kpo-{stack}",
        aks=aks,
        system_pool=cfg.system_pool,
        gpu_pool=cfg.gpu_pool,
        agent_pool_role=any(d.ephemeral_node_pools for d in cfg.deployments),
    )
    program_kubeconfig = pulumi.Output.all(cluster.endpoint, cluster.ca_data).apply(
        lambda args: kc.to_json(kc.kubeconfig(
            cluster_name=cluster_name, server=args[0], ca_data=args[1], namespace="default",
            user_name=f"{cluster_name}-pulumi", user=provider_user(aks.login, aks.tenant_id))))
    provider = k8s.Provider(
        "aks-cluster",
        kubeconfig=program_kubeconfig,
        # A changed kubeconfig must not replace every namespaced object.
        cluster_identifier=cluster_name,
    )

    endpoints = []
    for deployment in cfg.deployments:
        identity = AksDeploymentIdentity(f"{deployment.name}-azure", deployment, cluster)
        access = DeploymentAccess(
            deployment.name, deployment,
            # Entra ID names a managed identity's Kubernetes user by its principal (object) id.
            subject=rbac_subject("User", identity.principal_id),
            opts=pulumi.ResourceOptions(providers=[provider]),
        )
        user = identity.client_id.apply(lambda client_id: kc.aks_user(client_id, aks.tenant_id))
        # The identity to attach to the Astro Deployment as its workload identity (README).
        endpoints.append(DeploymentEndpoint(deployment, access.namespace_name, user,
                                            details={"azureClientId": identity.client_id}))
    return stack_outputs(cfg, cluster_name, cluster.endpoint, cluster.ca_data, endpoints)
