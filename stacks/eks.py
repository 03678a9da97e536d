"""cloud: eks — an EKS Auto Mode cluster for seed 004's tasks, with today's EKS practice.

Each Deployment gets an access role trusted by its own role (`identity.awsRoleArn`), an EKS
access entry mapping that role to a Kubernetes group, and namespace RBAC bound to the group.
Its kubeconfig runs `aws eks get-token --role-arn <access role>`. The GPU pool is a NodePool
on Auto Mode's default NodeClass, and so is the NodePool ordinary tasks run on.
"""

from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import disruption, eks, gpu, queueing, versions
from components import kubeconfig as kc
from components.access import DeploymentAccess, rbac_subject
from components.on_cluster import on_cluster
from components.eks_tasks import EksTaskIdentity, EksTaskIdentityArgs
from components.kube_client import client_settings
from components.task_pods import TaskPods, TaskPodsArgs, task_details, has_task_pods
from config import EksConfig, KubeClient, StackConfig, check_task_role_accounts, present
from stacks.outputs import DeploymentEndpoint, stack_outputs

def _warn_public_endpoint(config: EksConfig) -> None:
    if not config.public_access_cidrs:
        pulumi.log.warn("remote-kpo:eks.publicAccessCidrs is empty: the cluster's public endpoint "
                        "accepts connections from any address (requests still need AWS credentials)")


def _admin_provider(cluster: eks.EksCluster, region: str, cluster_name: str, client: KubeClient) -> k8s.Provider:
    """The program's own Kubernetes provider, acting as the cluster creator (its bootstrap admin)."""
    admin_kubeconfig = pulumi.Output.all(cluster.endpoint, cluster.ca_data).apply(
        lambda args: kc.to_json(kc.kubeconfig(
            cluster_name=cluster_name, server=args[0], ca_data=args[1], namespace="default",
            user_name=f"{cluster_name}-admin", user=eks.creator_user(region, cluster_name))))
    return k8s.Provider(
        "eks-cluster",
        kubeconfig=admin_kubeconfig,
        # The name, as before: the objects on the cluster are replaced with it (on_cluster).
        cluster_identifier=cluster_name,
        kube_client_settings=client_settings(client),
    )


def build(cfg: StackConfig, stack: str) -> dict:
    cluster_name = cfg.resolved_cluster_name(stack)
    config = present(cfg.eks, "eks")
    region = config.region
    _warn_public_endpoint(config)
    versions.warn_if_past_standard_support("eks", "eks.version", config.version)

    # Credentials come from the environment (AWS_PROFILE, keys, or a CI web identity), the same
    # place `aws eks get-token` reads them: the identity that creates the cluster is the one
    # the program's Kubernetes provider authenticates as.
    aws_provider = aws.Provider(
        "eks-region", region=region,
        default_tags={"tags": {"remote-kpo/cluster": cluster_name}})
    in_region = pulumi.ResourceOptions(providers={"aws": aws_provider})
    if any(d.task_identity is not None and d.task_identity.aws_role_arn for d in cfg.deployments):
        # The cluster is made in the account of the credentials running `pulumi up`.
        account = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=aws_provider)).account_id
        check_task_role_accounts(cfg, account)

    if config.subnet_ids is not None:
        subnet_ids: pulumi.Input[list[str]] = config.subnet_ids
    else:
        network = eks.EksNetwork(cluster_name, present(config.vpc_cidr, "eks.vpcCidr"), opts=in_region)
        subnet_ids = network.private_subnet_ids

    partition = eks.partition_of(region)
    cluster = eks.EksCluster(cluster_name, eks.EksClusterArgs(
        cluster_name=cluster_name, partition=partition, subnet_ids=subnet_ids,
        version=config.version, public_access_cidrs=config.public_access_cidrs,
        deletion_protection=config.deletion_protection,
    ), opts=in_region)
    ephemeral = any(d.ephemeral_node_pools for d in cfg.deployments)
    node_groups = None
    if ephemeral:
        node_groups = eks.EksNodeGroupSupport(cluster_name, eks.EksNodeGroupSupportArgs(
            cluster=cluster.cluster, cluster_name=cluster_name, partition=partition), opts=in_region)

    provider = _admin_provider(cluster, region, cluster_name, cfg.kube_client)

    def node_pool_opts() -> pulumi.ResourceOptions:
        # Auto Mode's NodePool CRD and default NodeClass exist once the cluster does.
        return pulumi.ResourceOptions.merge(on_cluster(provider, cluster.cluster),
                                            pulumi.ResourceOptions(depends_on=[cluster.cluster]))

    # Where the `task` output sends ordinary tasks: Auto Mode's general-purpose pool consolidates them away.
    disruption.TaskNodePool(f"{cluster_name}-tasks", cfg.task_pool, disruption.EKS_NODE_CLASS_REF,
                            opts=node_pool_opts())
    if cfg.gpu_pool.enabled:
        gpu.GpuNodePool(f"{cluster_name}-gpu", cfg.gpu_pool, disruption.EKS_NODE_CLASS_REF,
                        cfg.gpu_pool.gpus_per_node, opts=node_pool_opts())
    # Auto Mode nodes are in the cluster security group, which admits all traffic from itself,
    # the control plane's network interfaces included: Kueue's webhook port needs no rule (README).
    queue = queueing.cloud_queueing(cfg, stack, on_cluster(provider, cluster.cluster), after=[cluster.cluster])
    endpoints = []
    for deployment in cfg.deployments:
        identity = eks.EksDeploymentIdentity(deployment.name, eks.EksDeploymentIdentityArgs(
            deployment=deployment, cluster_name=cluster.name, cluster_arn=cluster.arn,
            node_group_role_arn=node_groups.role_arn if node_groups and deployment.ephemeral_node_pools else None,
        ), opts=in_region)
        access = DeploymentAccess(
            deployment.name, deployment,
            subject=rbac_subject("Group", identity.group),
            opts=on_cluster(provider, cluster.cluster),
            queue=queue,
        )
        task = deployment.task_identity
        if task is not None and task.aws_role_arn is not None:  # config requires it on eks
            EksTaskIdentity(f"{deployment.name}-task", EksTaskIdentityArgs(
                cluster_name=cluster.name, namespace=deployment.namespace_name,
                role_arn=task.aws_role_arn), opts=in_region)
        if has_task_pods(deployment):
            TaskPods(f"{deployment.name}-tasks", TaskPodsArgs(deployment, access.namespace_name),
                     opts=pulumi.ResourceOptions(parent=access))
        user = identity.role_arn.apply(lambda arn: kc.eks_user(region, cluster_name, arn))
        details: dict[str, Any] = {"awsAccessRoleArn": identity.role_arn, **task_details(deployment)}
        if deployment.ephemeral_node_pools:
            # What the DAG's CreateNodegroup must tag and name (its IAM requires them) and should taint.
            details.update(nodeGroupTags=eks.node_group_tags(deployment.name),
                           nodeGroupNamePrefix=eks.node_group_name_prefix(deployment.name),
                           nodeGroupTaint=eks.node_group_taint(deployment.name))
        endpoints.append(DeploymentEndpoint(deployment, access.namespace_name, user, details=details))

    outputs = stack_outputs(cfg, cluster_name, cluster.endpoint, cluster.ca_data, endpoints)
    if node_groups is not None:
        # What seed 004's EksCreateNodegroupOperator takes: nodegroup_role_arn, nodegroup_subnets,
        # and the AMI type (create_nodegroup_kwargs={"amiType": ...}).
        outputs["nodeRoleArn"] = node_groups.role_arn
        outputs["subnetIds"] = subnet_ids
        outputs["amiType"] = eks.NODE_GROUP_AMI_TYPE
    return outputs
