"""EKS: network, an EKS Auto Mode cluster, the role of node groups DAGs create, and
per-Deployment access roles (seed 004, today's practice).

Compute is EKS Auto Mode: AWS runs the node provisioner (Karpenter), the NVIDIA driver and
device plugin, and the cluster networking on the nodes it launches; the GPU pool is a NodePool
(components/gpu.py). Pure functions (policy documents, subnet plan) come first so tests can
call them directly; the ComponentResources below only wire them to pulumi_aws resources.
"""

import ipaddress
import json
import re
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Optional

import pulumi
import pulumi_aws as aws

from components import kubeconfig as kc
from components import names
from components.eks_tasks import pod_identity_trust_policy
from components.permissions import CLOUD_ACTIONS
from config import Deployment, present

POLICY_VERSION = "2012-10-17"
IAM_ROLE_NAME_MAX = 64

# The cluster role of an Auto Mode cluster: EKS user guide, "Amazon EKS Auto Mode cluster IAM
# role" (https://docs.aws.amazon.com/eks/latest/userguide/auto-cluster-iam-role.html). Its
# trust policy also allows sts:TagSession.
CLUSTER_POLICIES = ("AmazonEKSClusterPolicy", "AmazonEKSComputePolicy", "AmazonEKSBlockStoragePolicy",
                    "AmazonEKSLoadBalancingPolicy", "AmazonEKSNetworkingPolicy")
# The Auto Mode node role: exactly these two, "Amazon EKS Auto Mode node IAM role"
# (https://docs.aws.amazon.com/eks/latest/userguide/auto-create-node-role.html). EKS creates
# the node role's access entry itself when the cluster is created.
AUTO_NODE_POLICIES = ("AmazonEKSWorkerNodeMinimalPolicy", "AmazonEC2ContainerRegistryPullOnly")
# Auto Mode's built-in pools: `system` (cluster add-ons, tainted CriticalAddonsOnly) and
# `general-purpose`. Neither has size settings; both scale with what is pending.
AUTO_NODE_POOLS = ["system", "general-purpose"]

# Node groups DAGs create (ephemeralNodePools, seed 004) are managed node groups, not Auto Mode
# nodes: they get their own role, because an IAM principal can be in only one access entry and
# EKS adds an EC2_LINUX entry for a managed node group's role ("Create access entries"). Their
# policies: "Amazon EKS node IAM role" (kubelet, image pulls). Not the VPC CNI's: EKS makes the
# group's launch template with an IMDS hop limit of 2, so a task pod there can read the node
# role's credentials; AmazonEKS_CNI_Policy (network interfaces on any resource) goes to the
# VPC CNI's own service account through Pod Identity instead ("IAM roles for Amazon EKS
# add-ons").
NODE_GROUP_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")
VPC_CNI_POLICY = "AmazonEKS_CNI_Policy"
VPC_CNI_SERVICE_ACCOUNT = "aws-node"
# What such nodes need from the cluster that Auto Mode provides only to its own nodes (a cluster
# made with bootstrap_self_managed_addons=False has none): pod networking, Services, DNS, and
# the Pod Identity Agent (the VPC CNI's credentials and any taskIdentity). Each skips Auto Mode
# nodes from the versions EKS lists as the minimum beside Auto Mode ("Enable EKS Auto Mode on an
# existing cluster", Required add-on versions: VPC CNI v1.19.0, Pod Identity Agent v1.3.4);
# an add-on made without a version gets the current default, newer than those.
NODE_GROUP_ADDONS = ("eks-pod-identity-agent", "vpc-cni", "kube-proxy", "coredns")
# The AMI type a DAG's node group passes (the `amiType` output): Bottlerocket's NVIDIA variant
# carries the driver and the NVIDIA device plugin, so its GPUs are schedulable without a
# DaemonSet. Seed 004's AL2_x86_64_GPU is past end of support.
NODE_GROUP_AMI_TYPE = "BOTTLEROCKET_x86_64_NVIDIA"

# The tag that ties a DAG-made node group to its Deployment (deployment_access_policy).
NODE_GROUP_TAG = "remote-kpo/deployment"
NODEGROUP_SERVICE = "eks-nodegroup.amazonaws.com"

CLUSTER_LOG_TYPES = ["audit", "authenticator"]
# EKS writes control-plane logs here; creating the group first bounds their retention.
LOG_RETENTION_DAYS = 90

# Zones where EKS cannot place a control plane (EKS user guide, subnet requirements).
EKS_UNSUPPORTED_ZONE_IDS = ["use1-az3", "usw1-az2", "cac1-az3"]
MAX_ZONES = 3


# --- names and ARNs ---------------------------------------------------------------------------

def partition_of(region: str) -> str:
    """The ARN partition of a region (config.AwsRegion has already checked its shape)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    # us-iso-east-1 is aws-iso; us-isob-east-1 aws-iso-b, and so on for each ISO letter.
    iso = re.match(r"[a-z]{2}-iso([a-z]?)-", region)
    if iso:
        return f"aws-iso-{iso.group(1)}" if iso.group(1) else "aws-iso"
    return "aws"


def managed_policy_arn(partition: str, policy: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{policy}"


def nodegroup_arn_pattern(cluster_arn: str, name_prefix: str = "") -> str:
    """This cluster's node groups (whose names start with name_prefix):
    arn:...:nodegroup/<cluster>/<nodegroup>/<uuid>."""
    prefix, sep, cluster_name = cluster_arn.rpartition(":cluster/")
    if not sep:
        raise ValueError(f"not an EKS cluster ARN: {cluster_arn}")
    return f"{prefix}:nodegroup/{cluster_name}/{name_prefix}*/*"


def access_role_logical_name(name: str) -> str:
    """`<Deployment>-access-role`, cut so that the IAM role name Pulumi makes from it (plus a
    random suffix) fits IAM's 64 characters: a 63-character Deployment name would not."""
    return names.fit(f"{name}-access-role", IAM_ROLE_NAME_MAX - names.AUTONAME_SUFFIX)


def kubernetes_group(deployment_name: str) -> str:
    """The Kubernetes group a Deployment's access entry maps to; its RoleBinding names it."""
    return f"remote-kpo:{deployment_name}"


def creator_user(region: str, cluster_name: str) -> dict:
    """The program's own exec user: `aws eks get-token` as the identity running `pulumi up`,
    which created the cluster and so is its bootstrap admin (no --role-arn)."""
    args = ["--region", region, "eks", "get-token", "--cluster-name", cluster_name]
    return kc.exec_user("aws", args, provide_cluster_info=False)


# --- policy documents -------------------------------------------------------------------------

def _document(statements: list[dict]) -> dict:
    return {"Version": POLICY_VERSION, "Statement": statements}


def service_trust_policy(service: str, tag_session: bool = False) -> dict:
    """Lets one AWS service (eks.amazonaws.com, ec2.amazonaws.com) assume the role; with
    tag_session, also tag the session (the Auto Mode cluster role needs it)."""
    action = ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole"
    return _document([{"Effect": "Allow", "Principal": {"Service": service}, "Action": action}])


def deployment_trust_policy(aws_role_arn: str) -> dict:
    """Lets exactly the Deployment's own role assume its access role."""
    return _document([{"Effect": "Allow", "Principal": {"AWS": aws_role_arn}, "Action": "sts:AssumeRole"}])


def node_group_tags(deployment_name: str) -> dict[str, str]:
    """The tags a Deployment's DAG must put on the node groups it creates (its IAM allows
    nothing else) and that its describe and delete are limited to."""
    return {NODE_GROUP_TAG: deployment_name}


def node_group_name_prefix(deployment_name: str) -> str:
    """What the names of a Deployment's node groups start with: its describe is limited to them."""
    return f"{deployment_name}-"


def node_group_taint(deployment_name: str) -> dict[str, str]:
    """The taint a DAG puts on its node groups (EKS API spelling), so that only its own tasks,
    which tolerate it, land there; IAM cannot require it (CreateNodegroup has no taint key)."""
    return {"key": NODE_GROUP_TAG, "value": deployment_name, "effect": "NO_SCHEDULE"}


def nodegroup_service_linked_role_arn(cluster_arn: str) -> str:
    """AWSServiceRoleForAmazonEKSNodegroup in the cluster's account ("Using roles for Amazon
    EKS node groups": the role trusts eks-nodegroup.amazonaws.com)."""
    parts = cluster_arn.split(":")
    if len(parts) < 6 or not parts[5].startswith("cluster/"):
        raise ValueError(f"not an EKS cluster ARN: {cluster_arn}")
    partition, account = parts[1], parts[4]
    return (f"arn:{partition}:iam::{account}:role/aws-service-role/{NODEGROUP_SERVICE}/"
            "AWSServiceRoleForAmazonEKSNodegroup")


def deployment_access_policy(cluster_arn: str, deployment_name: str, node_role_arn: Optional[str] = None) -> dict:
    """What a Deployment's access role may do in AWS: read this cluster to mint a token and,
    given the node-group role (ephemeralNodePools), manage its own node groups of this cluster
    and pass that role to EKS. Pod rights are not here: they are namespace RBAC."""
    eks = CLOUD_ACTIONS["eks"]
    statements = [{"Sid": "Authenticate", "Effect": "Allow",
                   "Action": list(eks["authenticate"].actions), "Resource": cluster_arn}]
    if node_role_arn is not None:
        create, describe, delete = eks["ephemeralNodePools"].actions
        # Tags scope a tenant to its own groups (Service Authorization Reference, Amazon EKS:
        # CreateNodegroup is authorized on the cluster with aws:RequestTag, DeleteNodegroup on
        # the nodegroup resource with aws:ResourceTag). The DAG's eks:TagResource (tags on create)
        # may tag only a group that has no such tag yet, so it cannot retag another Deployment's.
        # Describe goes by name instead: the delete waiters poll a group until it is gone, and a
        # group that is gone has no tag to match.
        statements += [
            {"Sid": "CreateOwnNodeGroups", "Effect": "Allow", "Action": [create], "Resource": cluster_arn,
             "Condition": {"StringEquals": {f"aws:RequestTag/{NODE_GROUP_TAG}": deployment_name}}},
            {"Sid": "TagOwnNodeGroupsOnCreate", "Effect": "Allow",
             "Action": list(eks["tagOwnNodeGroups"].actions), "Resource": nodegroup_arn_pattern(cluster_arn),
             "Condition": {"StringEquals": {f"aws:RequestTag/{NODE_GROUP_TAG}": deployment_name},
                           "Null": {f"aws:ResourceTag/{NODE_GROUP_TAG}": "true"}}},
            {"Sid": "DescribeOwnNodeGroups", "Effect": "Allow", "Action": [describe],
             "Resource": nodegroup_arn_pattern(cluster_arn, node_group_name_prefix(deployment_name))},
            {"Sid": "DeleteOwnNodeGroups", "Effect": "Allow", "Action": [delete],
             "Resource": nodegroup_arn_pattern(cluster_arn),
             "Condition": {"StringEquals": {f"aws:ResourceTag/{NODE_GROUP_TAG}": deployment_name}}},
            {"Sid": "PassNodeRoleToEks", "Effect": "Allow",
             "Action": list(eks["passNodeRole"].actions), "Resource": node_role_arn,
             "Condition": {"StringEquals": {"iam:PassedToService": "eks.amazonaws.com"}}},
            {"Sid": "NodegroupServiceLinkedRole", "Effect": "Allow",
             "Action": list(eks["nodegroupServiceLinkedRole"].actions),
             "Resource": nodegroup_service_linked_role_arn(cluster_arn),
             "Condition": {"StringEquals": {"iam:AWSServiceName": NODEGROUP_SERVICE}}},
        ]
    return _document(statements)


# --- network plan -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ZoneSubnets:
    zone: str
    public_cidr: str
    private_cidr: str


def _ca_data(certificate_authority: aws.eks.outputs.ClusterCertificateAuthority) -> str:
    if not certificate_authority.data:
        raise RuntimeError("EKS returned the cluster without its certificate authority")
    return certificate_authority.data


def subnet_plan(vpc_cidr: str, zones: Sequence[str]) -> list[ZoneSubnets]:
    """Per zone, one large private subnet (nodes and pods take VPC addresses) and one small
    public one (NAT gateway, internet-facing load balancers).

    The block is cut in quarters: three private quarters, and the fourth in quarters again for
    the public subnets. A /16 gives /18 private and /20 public subnets.
    """
    quarters = list(ipaddress.ip_network(vpc_cidr).subnets(prefixlen_diff=2))
    public = list(quarters[3].subnets(prefixlen_diff=2))
    return [ZoneSubnets(zone, str(public[i]), str(quarters[i])) for i, zone in enumerate(zones[:MAX_ZONES])]


# --- components -------------------------------------------------------------------------------

class EksNetwork(pulumi.ComponentResource):
    """A VPC over two or three zones: public subnets behind an internet gateway, private subnets
    (nodes) behind one NAT gateway, tagged for the load balancers Kubernetes Services create."""

    def __init__(self, name: str, vpc_cidr: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:EksNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        zones = aws.get_availability_zones(
            state="available",
            # Regular zones only: no Local Zones or Wavelength zones.
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            exclude_zone_ids=EKS_UNSUPPORTED_ZONE_IDS,
            opts=pulumi.InvokeOptions(parent=self),
        ).names
        if len(zones or []) < 2:
            raise RuntimeError(f"EKS needs two availability zones; the region offers {zones or 'none'}")
        plan = subnet_plan(vpc_cidr, zones)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=vpc_cidr,
            # EKS private endpoint access and node registration need VPC DNS.
            enable_dns_support=True, enable_dns_hostnames=True,
            tags={"Name": name}, opts=child)
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags={"Name": name}, opts=child)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public", vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            tags={"Name": f"{name}-public"}, opts=child)

        public_subnets = []
        for i, zone in enumerate(plan):
            subnet = aws.ec2.Subnet(
                f"{name}-public-{i}", vpc_id=self.vpc.id, cidr_block=zone.public_cidr,
                availability_zone=zone.zone, map_public_ip_on_launch=False,
                tags={"Name": f"{name}-public-{zone.zone}", "kubernetes.io/role/elb": "1"}, opts=child)
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=subnet.id, route_table_id=public_routes.id, opts=child)
            public_subnets.append(subnet)

        # One NAT gateway (not one per zone): egress for private nodes at a third of the cost.
        nat_address = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags={"Name": f"{name}-nat"}, opts=child)
        nat = aws.ec2.NatGateway(
            f"{name}-nat", allocation_id=nat_address.id, subnet_id=public_subnets[0].id,
            tags={"Name": name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]))
        private_routes = aws.ec2.RouteTable(
            f"{name}-private", vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
            tags={"Name": f"{name}-private"}, opts=child)

        private_subnets = []
        for i, zone in enumerate(plan):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{i}", vpc_id=self.vpc.id, cidr_block=zone.private_cidr,
                availability_zone=zone.zone,
                tags={"Name": f"{name}-private-{zone.zone}", "kubernetes.io/role/internal-elb": "1"},
                opts=child)
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=private_routes.id, opts=child)
            private_subnets.append(subnet)

        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])
        self.register_outputs({"vpcId": self.vpc.id, "privateSubnetIds": self.private_subnet_ids,
                               "publicSubnetIds": self.public_subnet_ids})


@dataclass
class EksClusterArgs:
    cluster_name: str
    partition: str
    subnet_ids: pulumi.Input[list[str]]
    version: Optional[str]
    public_access_cidrs: list[str]
    deletion_protection: bool


class EksCluster(pulumi.ComponentResource):
    """The control plane with EKS Auto Mode compute: its own role, the Auto Mode node role,
    access entries only (the creator as admin), private plus limited public endpoint, KMS
    envelope encryption of Secrets, audit and authenticator logs.

    Instance metadata: Auto Mode enforces IMDSv2 with a hop limit of 1 on its nodes, so a pod
    (one hop further) cannot read the node role's credentials; only a hostNetwork pod could,
    which Pod Security baseline refuses. The NodeClass has no setting to change it ("Learn about
    Amazon EKS Auto Mode Managed instances", Instance Metadata Service,
    https://docs.aws.amazon.com/eks/latest/userguide/automode-learn-instances.html).
    """

    def __init__(self, name: str, args: EksClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:EksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(
            f"{name}-cluster-role",
            assume_role_policy=json.dumps(service_trust_policy("eks.amazonaws.com", tag_session=True)),
            description=f"EKS control plane of {args.cluster_name}", opts=child)
        self.node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=json.dumps(service_trust_policy("ec2.amazonaws.com")),
            description=f"EKS Auto Mode nodes of {args.cluster_name}", opts=child)
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-{kind}-{policy}", role=role.name,
                policy_arn=managed_policy_arn(args.partition, policy), opts=child)
            for kind, role, policies in (("cluster", self.role, CLUSTER_POLICIES),
                                         ("node", self.node_role, AUTO_NODE_POLICIES))
            for policy in policies
        ]
        self.secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes Secrets in EKS cluster {args.cluster_name}",
            enable_key_rotation=True, opts=child)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs", name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=LOG_RETENTION_DAYS, opts=child)

        vpc_config: aws.eks.ClusterVpcConfigArgsDict = {
            "subnet_ids": args.subnet_ids,
            "endpoint_private_access": True,
            "endpoint_public_access": True,
        }
        if args.public_access_cidrs:
            vpc_config["public_access_cidrs"] = args.public_access_cidrs
        access_config: aws.eks.ClusterAccessConfigArgsDict = {
            # Access entries only (no aws-auth ConfigMap); the identity running `pulumi up`
            # becomes admin so the program can manage namespaces and RBAC.
            "authentication_mode": "API",
            "bootstrap_cluster_creator_admin_permissions": True,
        }
        # Auto Mode is the three capabilities together, and no self-managed add-ons (pulumi-aws
        # aws.eks.Cluster, "EKS Cluster with EKS Auto Mode"); Auto Mode nodes launch in the
        # cluster's subnets, from the built-in pools and the GPU NodePool.
        compute_config: aws.eks.ClusterComputeConfigArgsDict = {
            "enabled": True, "node_pools": AUTO_NODE_POOLS, "node_role_arn": self.node_role.arn}
        network_config: aws.eks.ClusterKubernetesNetworkConfigArgsDict = {
            "elastic_load_balancing": {"enabled": True}}
        storage_config: aws.eks.ClusterStorageConfigArgsDict = {"block_storage": {"enabled": True}}
        encryption_config: aws.eks.ClusterEncryptionConfigArgsDict = {
            "resources": ["secrets"], "provider": {"key_arn": self.secrets_key.arn}}
        self.cluster = aws.eks.Cluster(
            f"{name}-cluster",
            name=args.cluster_name,
            role_arn=self.role.arn,
            version=args.version,
            access_config=access_config,
            vpc_config=vpc_config,
            compute_config=compute_config,
            kubernetes_network_config=network_config,
            storage_config=storage_config,
            # No self-managed add-ons on a new cluster. The provider forces a new cluster when it
            # changes (terraform-provider-aws aws_eks_cluster: ForceNew), so a cluster made before
            # Auto Mode keeps its value (ignore_changes below, as terraform-aws-modules/eks does).
            bootstrap_self_managed_addons=False,
            encryption_config=encryption_config,
            enabled_cluster_log_types=CLUSTER_LOG_TYPES,
            deletion_protection=args.deletion_protection,
            # EKS needs its role's policies while creating nodes and deleting the cluster's
            # network interfaces and load balancers. protect: `pulumi destroy` fails at its
            # preview, before it deletes what depends on the cluster (README, eks).
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*attachments, log_group], protect=args.deletion_protection,
                # An existing cluster turns Auto Mode on in place: the provider sends
                # compute_config, kubernetes_network_config and storage_config in one
                # UpdateClusterConfig, as EKS requires (resourceClusterUpdate; "Enable EKS Auto
                # Mode on an existing cluster").
                ignore_changes=["bootstrapSelfManagedAddons"]),
        )
        self.name = self.cluster.name
        self.arn = self.cluster.arn
        self.endpoint = self.cluster.endpoint
        self.ca_data = self.cluster.certificate_authority.apply(_ca_data)
        self.register_outputs({"name": self.name, "arn": self.arn, "endpoint": self.endpoint,
                               "nodeRoleArn": self.node_role.arn})


@dataclass
class EksNodeGroupSupportArgs:
    cluster: aws.eks.Cluster
    cluster_name: str
    partition: str


class EksNodeGroupSupport(pulumi.ComponentResource):
    """What the managed node groups DAGs create (ephemeralNodePools) need on an Auto Mode
    cluster: their own node role (NODE_GROUP_POLICIES), the EKS add-ons NODE_GROUP_ADDONS, and
    the VPC CNI's Pod Identity role."""

    def __init__(self, name: str, args: EksNodeGroupSupportArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:EksNodeGroupSupport", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(
            f"{name}-node-group-role",
            assume_role_policy=json.dumps(service_trust_policy("ec2.amazonaws.com")),
            description=f"Node groups that Astro DAGs create in EKS cluster {args.cluster_name}", opts=child)
        for policy in NODE_GROUP_POLICIES:
            aws.iam.RolePolicyAttachment(
                f"{name}-node-group-{policy}", role=self.role.name,
                policy_arn=managed_policy_arn(args.partition, policy), opts=child)
        cni_role = aws.iam.Role(
            f"{name}-vpc-cni-role",
            assume_role_policy=json.dumps(pod_identity_trust_policy()),
            description=f"VPC CNI (kube-system/{VPC_CNI_SERVICE_ACCOUNT}) on DAG-made node groups of {args.cluster_name}",
            opts=child)
        cni_policy = aws.iam.RolePolicyAttachment(
            f"{name}-vpc-cni-{VPC_CNI_POLICY}", role=cni_role.name,
            policy_arn=managed_policy_arn(args.partition, VPC_CNI_POLICY), opts=child)
        addons: dict[str, aws.eks.Addon] = {}
        for addon in NODE_GROUP_ADDONS:
            associations: Optional[list[aws.eks.AddonPodIdentityAssociationArgsDict]] = None
            depends: list[pulumi.Resource] = [args.cluster]
            if addon == "vpc-cni":
                # The add-on makes and keeps the association itself (pulumi-aws aws.eks.Addon
                # pod_identity_associations), once the agent that serves it is set up ("Use Pod
                # Identities to assign an IAM role to an Amazon EKS add-on").
                associations = [{"role_arn": cni_role.arn, "service_account": VPC_CNI_SERVICE_ACCOUNT}]
                depends += [cni_policy, addons["eks-pod-identity-agent"]]
            addons[addon] = aws.eks.Addon(
                f"{name}-{addon}", cluster_name=args.cluster.name, addon_name=addon,
                # The default version for the cluster's Kubernetes version, taken over from any
                # self-managed copy.
                resolve_conflicts_on_create="OVERWRITE", pod_identity_associations=associations,
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends))
        self.role_arn = self.role.arn
        self.register_outputs({"roleArn": self.role_arn})


@dataclass
class EksDeploymentIdentityArgs:
    deployment: Deployment
    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    # The role of DAG-made node groups; set exactly when the Deployment has ephemeralNodePools.
    node_group_role_arn: Optional[pulumi.Input[str]] = None


class EksDeploymentIdentity(pulumi.ComponentResource):
    """One Deployment's way in: an access role only its own role may assume, allowed to read
    this cluster (and, with ephemeralNodePools, to manage its node groups), mapped by a STANDARD
    access entry with no access policy to a Kubernetes group bound by namespace RBAC."""

    def __init__(self, name: str, args: EksDeploymentIdentityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:EksDeploymentIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        deployment = args.deployment

        self.role = aws.iam.Role(
            access_role_logical_name(name),
            assume_role_policy=json.dumps(deployment_trust_policy(
                present(present(deployment.identity, "identity").aws_role_arn, "identity.awsRoleArn"))),
            description=f"remote-kpo: Astro Deployment {deployment.name} on EKS", opts=child)
        if args.node_group_role_arn is not None:
            policy = pulumi.Output.all(args.cluster_arn, args.node_group_role_arn).apply(
                lambda arns: json.dumps(deployment_access_policy(arns[0], deployment.name, arns[1])))
        else:
            policy = pulumi.Output.from_input(args.cluster_arn).apply(
                lambda arn: json.dumps(deployment_access_policy(arn, deployment.name)))
        aws.iam.RolePolicy(f"{name}-access-policy", role=self.role.name, policy=policy, opts=child)

        self.group = kubernetes_group(deployment.name)
        aws.eks.AccessEntry(
            f"{name}-access-entry",
            cluster_name=args.cluster_name,
            principal_arn=self.role.arn,
            type="STANDARD",
            kubernetes_groups=[self.group],
            opts=child,
        )
        self.role_arn = self.role.arn
        self.register_outputs({"roleArn": self.role_arn, "group": self.group})
