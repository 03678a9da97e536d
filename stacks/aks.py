"""cloud: aks — an Entra ID-integrated AKS cluster (seed 002).

Each Deployment gets a managed identity federated with its Astro service account; its exported
kubeconfig runs `kubelogin --login workloadidentity` as that identity, and the namespace
RoleBinding names the identity's principal id as a User.
"""

import pulumi
import pulumi_kubernetes as k8s

from components import gpu, queueing, versions
from components import kubeconfig as kc
from components.access import DeploymentAccess, rbac_subject
from components.on_cluster import on_cluster
from components.aks import AksCluster, AksDeploymentIdentity, provider_user
from components.aks_tasks import AksAcrPull, AksTaskIdentity
from components.kube_client import client_settings
from components.task_pods import TaskPods, TaskPodsArgs, task_details, has_task_pods
from config import AksConfig, StackConfig, present
from stacks.outputs import DeploymentEndpoint, stack_outputs


def _warn_public_endpoint(aks: AksConfig) -> None:
    if not aks.authorized_ip_ranges:
        pulumi.log.warn("remote-kpo:aks.authorizedIpRanges is empty: the cluster's public endpoint "
                        "accepts connections from any address (requests still need Entra ID credentials)")


def _warn_agent_pool_reach(cfg: StackConfig) -> None:
    # Azure RBAC has no scope for agent pools a DAG has yet to create, and no conditions on
    # Microsoft.ContainerService actions: the narrowest assignment is the cluster.
    for i, deployment in enumerate(cfg.deployments):
        if deployment.ephemeral_node_pools:
            pulumi.log.warn(
                f"remote-kpo:deployments[{i}].ephemeralNodePools: {deployment.name}'s identity may change or "
                "delete every agent pool of the cluster, including the system pool, the GPU pool and other "
                "Deployments' pools (agentPools/write and /delete on the cluster)")


def build(cfg: StackConfig, stack: str) -> dict:
    aks = present(cfg.aks, "aks")
    cluster_name = cfg.resolved_cluster_name(stack)
    _warn_public_endpoint(aks)
    versions.warn_if_past_standard_support("aks", "aks.kubernetesVersion", aks.kubernetes_version)
    _warn_agent_pool_reach(cfg)
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
        # The name, as before: the objects on the cluster are replaced with it (on_cluster).
        cluster_identifier=cluster_name,
        kube_client_settings=client_settings(cfg.kube_client),
    )

    if cfg.gpu_pool.enabled or any(d.ephemeral_node_pools for d in cfg.deployments):
        # AKS installs the GPU driver on GPU nodes, not the device plugin: the stack's GPU pool
        # and the GPU pools DAGs make both need it.
        gpu.NvidiaDevicePlugin("aks-gpu", opts=on_cluster(provider, cluster.cluster))

    if aks.acr_ids:
        AksAcrPull("aks-acr-pull", cluster, aks.acr_ids)

    # The control plane calls webhooks through its tunnel to the nodes (Konnectivity), from inside
    # the cluster's network: Kueue's webhook port needs no network security group rule (README).
    queue = queueing.cloud_queueing(cfg, stack, on_cluster(provider, cluster.cluster))

    endpoints = []
    # The last federated credential written on each given task identity (see AksTaskIdentity).
    last_credential: dict[str, list[pulumi.Resource]] = {}
    for deployment in cfg.deployments:
        identity = AksDeploymentIdentity(f"{deployment.name}-azure", deployment, cluster)
        access = DeploymentAccess(
            deployment.name, deployment,
            # Entra ID names a managed identity's Kubernetes user by its principal (object) id.
            subject=rbac_subject("User", identity.principal_id),
            opts=on_cluster(provider, cluster.cluster),
            queue=queue,
        )
        details: dict[str, pulumi.Input[str]] = dict(task_details(deployment))
        annotations = {}
        if deployment.task_identity is not None:
            shared = deployment.task_identity.azure_identity
            key = shared.lower() if isinstance(shared, str) else None
            task_identity = AksTaskIdentity(f"{deployment.name}-azure-task", deployment,
                                            deployment.task_identity, cluster,
                                            after=last_credential.get(key, []) if key else None)
            if key:
                last_credential[key] = [task_identity.credential]
            annotations = task_identity.annotations
            # Whom to grant storage roles (e.g. Storage Blob Data Reader on a container).
            details.update(taskAzureClientId=task_identity.client_id,
                           taskAzurePrincipalId=task_identity.principal_id)
        if has_task_pods(deployment):
            TaskPods(f"{deployment.name}-tasks", TaskPodsArgs(deployment, access.namespace_name, annotations),
                     opts=pulumi.ResourceOptions(parent=access))
        user = identity.client_id.apply(lambda client_id: kc.aks_user(client_id, aks.tenant_id))
        # The identity to attach to the Astro Deployment as its workload identity (README): Astro
        # asks for its name and resource group.
        details.update(azureClientId=identity.client_id, azureIdentityName=identity.identity.name,
                       azureIdentityResourceGroup=cluster.resource_group.name)
        endpoints.append(DeploymentEndpoint(deployment, access.namespace_name, user, details=details))
    return stack_outputs(cfg, cluster_name, cluster.endpoint, cluster.ca_data, endpoints)
