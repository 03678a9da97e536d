"""cloud: gke — a private, Workload-Identity GKE cluster for KPO tasks (seeds 000 and 001).

Each Deployment's Google service account authenticates with gke-gcloud-auth-plugin and is
bound, as a Kubernetes User named by its email, to the Role in its namespace.
"""

import pulumi
import pulumi_kubernetes as k8s

from components import kubeconfig as kc
from components import queueing
from components.access import DeploymentAccess, rbac_subject
from components.on_cluster import on_cluster
from components.gke_tasks import GkeTaskIdentity
from components.kube_client import client_settings
from components.task_pods import TaskPods, TaskPodsArgs, task_details, has_task_pods
from components.gke import (
    PODS_RANGE,
    SERVICES_RANGE,
    DeploymentIdentity,
    DeploymentRoles,
    GkeCluster,
    GkeClusterArgs,
    GkeNetwork,
    NodeServiceAccount,
    WebhookFirewall,
    cluster_only_condition,
    network_project,
    provider_user,
)
from config import GkeConfig, StackConfig, present
from stacks.outputs import DeploymentEndpoint, stack_outputs


def provider_kubeconfig(cluster_name: str, server: str, ca_data: str, login: str) -> str:
    """The program's own kubeconfig: the same exec plugin, run with the credentials of whoever
    runs `pulumi up` (gke.login); no token is stored in state."""
    return kc.to_json(kc.kubeconfig(
        cluster_name=cluster_name, server=server, ca_data=ca_data, namespace="default",
        user_name=f"{cluster_name}-pulumi", user=provider_user(login)))


def _warn_public_endpoint(gke: GkeConfig) -> None:
    # The endpoint stays public (Astro reaches it); without authorized networks GKE admits any
    # address to it.
    if not gke.master_authorized_networks:
        pulumi.log.warn("remote-kpo:gke.masterAuthorizedNetworks is empty: the cluster's public endpoint "
                        "accepts connections from any address (requests still need Google credentials)")


def _warn_node_pool_rights(cfg: StackConfig) -> None:
    # container.clusters.update is GKE's one permission for every change to the cluster: GKE
    # API permissions and REST reference ask it for clusters.update and setLegacyAbac on the
    # cluster's name as much as for nodePools.create/delete (on the cluster) and setSize (on the
    # pool's name). The IAM condition keeps it on this cluster, not on the Deployment's pools.
    for i, deployment in enumerate(cfg.deployments):
        if deployment.ephemeral_node_pools:
            pulumi.log.warn(
                f"remote-kpo:deployments[{i}].ephemeralNodePools: on GKE this "
                f"grants {deployment.name} container.clusters.update on the whole cluster: besides creating "
                "and deleting its own node pools it may change any setting (authorized networks, legacy ABAC, "
                "release channel) and resize or delete the system and GPU pools and other Deployments' pools "
                "(README, Security)")


def build(cfg: StackConfig, stack: str) -> dict:
    gke = present(cfg.gke, "gke")
    cluster_name = cfg.resolved_cluster_name(stack)
    _warn_public_endpoint(gke)
    _warn_node_pool_rights(cfg)

    if gke.network:
        # The platform's own network: GKE picks (or creates) the secondary ranges, and NAT
        # for private nodes is the network owner's to provide.
        network, subnetwork, pods_range, services_range = gke.network, gke.subnetwork, None, None
    else:
        vpc = GkeNetwork(f"{cluster_name}-network", cluster_name, gke)
        network, subnetwork = vpc.network.id, vpc.subnetwork.id
        pods_range, services_range = PODS_RANGE, SERVICES_RANGE

    nodes = NodeServiceAccount(f"{cluster_name}-nodes", cluster_name, gke.project)
    cluster = GkeCluster(cluster_name, GkeClusterArgs(
        cluster_name=cluster_name, gke=gke, network=network, subnetwork=subnetwork,
        pods_range=pods_range, services_range=services_range,
        node_service_account=nodes.email, system_pool=cfg.system_pool, gpu_pool=cfg.gpu_pool))

    provider = k8s.Provider(
        "gke-cluster",
        kubeconfig=pulumi.Output.all(cluster.endpoint, cluster.ca_certificate).apply(
            lambda args: provider_kubeconfig(cluster_name, args[0], args[1], gke.login)),
        # The name, as before: the objects on the cluster are replaced with it (on_cluster).
        cluster_identifier=cluster_name,
        kube_client_settings=client_settings(cfg.kube_client),
    )

    on_gke = on_cluster(provider, cluster.cluster)
    kueue_after: list[pulumi.Resource] = [cluster.system_pool]
    if cfg.queueing.enabled and gke.private_nodes:
        host = network_project(gke.network, gke.project) if gke.network else gke.project
        if host != gke.project:
            # Shared VPC: the rule belongs in the host project, which is not this program's.
            pulumi.log.warn(
                f"remote-kpo:queueing.enabled: gke.network is in project {host}; "
                f"its owner must allow TCP {', '.join(map(str, queueing.KUEUE_CONTROL_PLANE_PORTS))} from the control "
                f"plane to the nodes' service account (README, Queueing), else Kueue's webhook is unreachable")
        else:
            kueue_after.append(WebhookFirewall(f"{cluster_name}-kueue", cluster_name, gke, network, cluster.cluster,
                                               nodes.email, queueing.KUEUE_CONTROL_PLANE_PORTS))
    queue = queueing.cloud_queueing(cfg, stack, on_gke, after=kueue_after)

    roles = DeploymentRoles(
        f"{cluster_name}-deployment-roles", cluster_name, gke.project,
        node_pools=any(d.ephemeral_node_pools for d in cfg.deployments))
    endpoints = []
    for deployment in cfg.deployments:
        identity = DeploymentIdentity(
            f"{deployment.name}-gcp", deployment, gke.project, roles, nodes.resource_name,
            cluster_only_condition(gke.project, gke.location, cluster_name))
        access = DeploymentAccess(
            deployment.name, deployment,
            # GKE names a Google service account's Kubernetes user by its email.
            subject=rbac_subject("User", identity.email),
            opts=on_gke, queue=queue)
        annotations = {}
        task = deployment.task_identity
        if task is not None and task.gcp_service_account is not None:  # config requires it on gke
            task_identity = GkeTaskIdentity(
                f"{deployment.name}-gcp-task", email=task.gcp_service_account,
                workload_pool=cluster.workload_pool, namespace=deployment.namespace_name)
            annotations = task_identity.annotations
        if has_task_pods(deployment):
            TaskPods(f"{deployment.name}-tasks", TaskPodsArgs(deployment, access.namespace_name, annotations),
                     opts=pulumi.ResourceOptions(parent=access))
        endpoints.append(DeploymentEndpoint(deployment, access.namespace_name, kc.gke_user(),
                                            details=dict(task_details(deployment))))
    outputs = stack_outputs(cfg, cluster_name, cluster.endpoint, cluster.ca_certificate, endpoints)
    if roles.node_pool_roles is not None:
        # What a DAG's nodePools.create needs beside clusterName: without the node service
        # account (the only one it may actAs) GKE would use the Compute Engine default account.
        outputs["nodeServiceAccount"] = nodes.email
        outputs["project"] = gke.project
        outputs["location"] = gke.location
    return outputs
