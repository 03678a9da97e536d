"""EKS: network, cluster, node groups and per-Deployment access roles (seed 004, today's practice).

Pure functions (policy documents, subnet plan, taints, autoscaler tags) come first so tests can
call them directly; the ComponentResources below only wire them to pulumi_aws resources.
"""

import ipaddress
import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components import kubeconfig as kc
from components import names
from components.permissions import CLOUD_ACTIONS
from config import Deployment, GpuPool, NodePool

POLICY_VERSION = "2012-10-17"
IAM_ROLE_NAME_MAX = 64

# Seed 004's node role policies, and the one EKS documents for the cluster role.
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)

CLUSTER_LOG_TYPES = ["audit", "authenticator"]
# EKS writes control-plane logs here; creating the group first bounds their retention.
LOG_RETENTION_DAYS = 90

SYSTEM_AMI_TYPE = "AL2023_x86_64_STANDARD"
# Seed 004's AL2_x86_64_GPU is past end of support; AL2023 NVIDIA carries the driver and the
# container toolkit (the NVIDIA device plugin is installed separately).
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"
# CUDA images are several GB; the 20 GiB default fills after a few pulls.
GPU_DISK_GIB = 100

GPU_LABELS = {"remote-kpo/gpu": "true"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
# EKS spells taint effects in upper snake case; Kubernetes (and the autoscaler tags) in camel case.
KUBERNETES_EFFECT = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute",
                     "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
AUTOSCALER_TAG = "k8s.io/cluster-autoscaler"
NODE_TEMPLATE_TAG = f"{AUTOSCALER_TAG}/node-template"

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
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    if region.startswith("us-iso-"):
        return "aws-iso"
    return "aws"


def managed_policy_arn(partition: str, policy: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{policy}"


def nodegroup_arn_pattern(cluster_arn: str) -> str:
    """Every node group of this cluster: arn:...:nodegroup/<cluster>/<nodegroup>/<uuid>."""
    prefix, sep, cluster_name = cluster_arn.rpartition(":cluster/")
    if not sep:
        raise ValueError(f"not an EKS cluster ARN: {cluster_arn}")
    return f"{prefix}:nodegroup/{cluster_name}/*/*"


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


def service_trust_policy(service: str) -> dict:
    """Lets one AWS service (eks.amazonaws.com, ec2.amazonaws.com) assume the role."""
    return _document([{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}])


def deployment_trust_policy(aws_role_arn: str) -> dict:
    """Lets exactly the Deployment's own role assume its access role."""
    return _document([{"Effect": "Allow", "Principal": {"AWS": aws_role_arn}, "Action": "sts:AssumeRole"}])


def deployment_access_policy(cluster_arn: str, node_role_arn: Optional[str] = None) -> dict:
    """What a Deployment's access role may do in AWS: read this cluster to mint a token and,
    given the node role (ephemeralNodePools), manage this cluster's node groups and pass
    the node role to EKS. Pod rights are not here: they are namespace RBAC."""
    eks = CLOUD_ACTIONS["eks"]
    statements = [{"Sid": "Authenticate", "Effect": "Allow",
                   "Action": list(eks["authenticate"].actions), "Resource": cluster_arn}]
    if node_role_arn is not None:
        statements += [
            # CreateNodegroup is authorized on the cluster (the new group's ARN does not exist
            # yet); Describe/DeleteNodegroup on the group's ARN, limited to this cluster's groups.
            {"Sid": "EphemeralNodeGroups", "Effect": "Allow",
             "Action": list(eks["ephemeralNodePools"].actions),
             "Resource": [cluster_arn, nodegroup_arn_pattern(cluster_arn)]},
            {"Sid": "PassNodeRoleToEks", "Effect": "Allow",
             "Action": list(eks["passNodeRole"].actions), "Resource": node_role_arn,
             "Condition": {"StringEquals": {"iam:PassedToService": "eks.amazonaws.com"}}},
        ]
    return _document(statements)


# --- network plan -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ZoneSubnets:
    zone: str
    public_cidr: str
    private_cidr: str


def subnet_plan(vpc_cidr: str, zones: list[str]) -> list[ZoneSubnets]:
    """Per zone, one large private subnet (nodes and pods take VPC addresses) and one small
    public one (NAT gateway, internet-facing load balancers).

    The block is cut in quarters: three private quarters, and the fourth in quarters again for
    the public subnets. A /16 gives /18 private and /20 public subnets.
    """
    quarters = list(ipaddress.ip_network(vpc_cidr).subnets(prefixlen_diff=2))
    public = list(quarters[3].subnets(prefixlen_diff=2))
    return [ZoneSubnets(zone, str(public[i]), str(quarters[i])) for i, zone in enumerate(zones[:MAX_ZONES])]


# --- node group scheduling --------------------------------------------------------------------

def autoscaler_tags(cluster_name: str, labels: dict, taints: list[dict]) -> dict:
    """Cluster-autoscaler auto-discovery tags plus node-template tags, which let it build a
    node from an empty group's labels and taints and so scale it up from zero."""
    tags = {f"{AUTOSCALER_TAG}/enabled": "true", f"{AUTOSCALER_TAG}/{cluster_name}": "owned"}
    for key, value in labels.items():
        tags[f"{NODE_TEMPLATE_TAG}/label/{key}"] = value
    for taint in taints:
        tags[f"{NODE_TEMPLATE_TAG}/taint/{taint['key']}"] = f"{taint['value']}:{KUBERNETES_EFFECT[taint['effect']]}"
    return tags


def node_template_tags(tags: dict) -> dict:
    """The subset the autoscaler reads from the Auto Scaling group itself. EKS does not copy
    node group tags to its Auto Scaling group (it adds the auto-discovery tags itself)."""
    return {key: value for key, value in tags.items() if key.startswith(f"{NODE_TEMPLATE_TAG}/")}


def _tag_resource_suffix(key: str) -> str:
    return key.removeprefix(f"{NODE_TEMPLATE_TAG}/").replace("/", "-").replace(".", "-")


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
    """The control plane: its own role, access entries only (the creator as admin), private plus
    limited public endpoint, KMS envelope encryption of Secrets, audit and authenticator logs."""

    def __init__(self, name: str, args: EksClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:EksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(
            f"{name}-cluster-role",
            assume_role_policy=json.dumps(service_trust_policy("eks.amazonaws.com")),
            description=f"EKS control plane of {args.cluster_name}", opts=child)
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-cluster-{policy}", role=self.role.name,
                policy_arn=managed_policy_arn(args.partition, policy), opts=child)
            for policy in CLUSTER_POLICIES
        ]
        self.secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes Secrets in EKS cluster {args.cluster_name}",
            enable_key_rotation=True, opts=child)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs", name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=LOG_RETENTION_DAYS, opts=child)

        public_access = {"public_access_cidrs": args.public_access_cidrs} if args.public_access_cidrs else {}
        self.cluster = aws.eks.Cluster(
            f"{name}-cluster",
            name=args.cluster_name,
            role_arn=self.role.arn,
            version=args.version,
            access_config={
                # Access entries only (no aws-auth ConfigMap); the identity running `pulumi up`
                # becomes admin so the program can manage namespaces and RBAC.
                "authentication_mode": "API",
                "bootstrap_cluster_creator_admin_permissions": True,
            },
            vpc_config={
                "subnet_ids": args.subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": True,
                **public_access,
            },
            encryption_config={"resources": ["secrets"], "provider": {"key_arn": self.secrets_key.arn}},
            enabled_cluster_log_types=CLUSTER_LOG_TYPES,
            deletion_protection=args.deletion_protection,
            # EKS needs its role's policy while deleting the cluster's network interfaces.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*attachments, log_group]),
        )
        self.name = self.cluster.name
        self.arn = self.cluster.arn
        self.endpoint = self.cluster.endpoint
        self.ca_data = self.cluster.certificate_authority.apply(lambda ca: ca.data)
        self.register_outputs({"name": self.name, "arn": self.arn, "endpoint": self.endpoint})


@dataclass
class EksNodeGroupsArgs:
    cluster_name: pulumi.Input[str]
    autoscaler_cluster_name: str  # the configured name, known before the cluster exists
    partition: str
    subnet_ids: pulumi.Input[list[str]]
    system_pool: NodePool
    gpu_pool: GpuPool


class EksNodeGroups(pulumi.ComponentResource):
    """The node role (seed 004's three policies), a system managed node group and, when enabled,
    a GPU managed node group that scales from zero."""

    def __init__(self, name: str, args: EksNodeGroupsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:EksNodeGroups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=json.dumps(service_trust_policy("ec2.amazonaws.com")),
            description=f"Nodes of EKS cluster {args.autoscaler_cluster_name}", opts=child)
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy}", role=self.node_role.name,
                policy_arn=managed_policy_arn(args.partition, policy), opts=child)
            for policy in NODE_POLICIES
        ]
        # Nodes cannot join before their role has its policies; the autoscaler, not Pulumi,
        # owns the desired size once the group exists.
        group_opts = pulumi.ResourceOptions(parent=self, depends_on=attachments,
                                            ignore_changes=["scalingConfig.desiredSize"])

        system = args.system_pool
        self.system = aws.eks.NodeGroup(
            f"{name}-system",
            cluster_name=args.cluster_name,
            node_role_arn=self.node_role.arn,
            subnet_ids=args.subnet_ids,
            ami_type=SYSTEM_AMI_TYPE,
            instance_types=[system.machine_type],
            capacity_type="ON_DEMAND",
            # CoreDNS needs a node even when minNodes is 0.
            scaling_config={"min_size": system.min_nodes, "max_size": system.max_nodes,
                            "desired_size": max(system.min_nodes, 1)},
            update_config={"max_unavailable": 1},
            opts=group_opts,
        )

        self.gpu: Optional[aws.eks.NodeGroup] = None
        if args.gpu_pool.enabled:
            self.gpu = self._gpu_group(name, args, group_opts)

        self.node_role_arn = self.node_role.arn
        self.register_outputs({"nodeRoleArn": self.node_role_arn})

    def _gpu_group(self, name: str, args: EksNodeGroupsArgs, group_opts: pulumi.ResourceOptions) -> aws.eks.NodeGroup:
        gpu = args.gpu_pool
        tags = autoscaler_tags(args.autoscaler_cluster_name, GPU_LABELS, [GPU_TAINT])
        group = aws.eks.NodeGroup(
            f"{name}-gpu",
            cluster_name=args.cluster_name,
            node_role_arn=self.node_role.arn,
            subnet_ids=args.subnet_ids,
            ami_type=GPU_AMI_TYPE,
            instance_types=[gpu.machine_type],
            capacity_type="SPOT" if gpu.spot else "ON_DEMAND",
            disk_size=GPU_DISK_GIB,
            scaling_config={"min_size": gpu.min_nodes, "max_size": gpu.max_nodes,
                            "desired_size": gpu.min_nodes},
            update_config={"max_unavailable": 1},
            labels=GPU_LABELS,
            taints=[GPU_TAINT],
            tags=tags,
            opts=group_opts,
        )
        asg_name = group.resources.apply(lambda resources: resources[0].autoscaling_groups[0].name)
        for key, value in node_template_tags(tags).items():
            aws.autoscaling.Tag(
                f"{name}-gpu-asg-{_tag_resource_suffix(key)}",
                autoscaling_group_name=asg_name,
                tag={"key": key, "value": value, "propagate_at_launch": False},
                opts=pulumi.ResourceOptions(parent=self))
        return group


@dataclass
class EksDeploymentIdentityArgs:
    deployment: Deployment
    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]


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
            assume_role_policy=json.dumps(deployment_trust_policy(deployment.identity.aws_role_arn)),
            description=f"remote-kpo: Astro Deployment {deployment.name} on EKS", opts=child)
        if deployment.ephemeral_node_pools:
            policy = pulumi.Output.all(args.cluster_arn, args.node_role_arn).apply(
                lambda arns: json.dumps(deployment_access_policy(arns[0], arns[1])))
        else:
            policy = pulumi.Output.from_input(args.cluster_arn).apply(
                lambda arn: json.dumps(deployment_access_policy(arn)))
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
