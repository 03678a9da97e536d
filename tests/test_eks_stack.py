"""The eks stack under Pulumi mocks: network, cluster, node groups, identities, RBAC, outputs."""

import json

import pulumi
import pytest

import config
from components import eks
from harness import RecordingMocks, run_program, stack_config

ACCOUNT = "123456789012"
AZ_LOOKUP = "aws:index/getAvailabilityZones:getAvailabilityZones"
CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
SUBNET = "aws:ec2/subnet:Subnet"
ACCESS_ENTRY = "aws:eks/accessEntry:AccessEntry"
BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
ANALYTICS_ROLE = "arn:aws:iam::123456789012:role/astro-analytics-workload"
ML_ROLE = "arn:aws:iam::123456789012:role/astro-ml-training-workload"
CLUSTER_ARN = "arn:aws:eks:us-east-1:123456789012:cluster/kpo-gpu"


class EksMocks(RecordingMocks):
    """What AWS computes: ARNs, the endpoint and CA, the node group's Auto Scaling group, and
    the region's availability zones."""

    def __init__(self, zones=("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"),
                 region="us-east-1", partition="aws"):
        super().__init__()
        self.zones, self.region, self.partition = list(zones), region, partition
        self.calls = []

    def new_resource(self, args):
        resource_id, outputs = super().new_resource(args)
        if args.typ == CLUSTER:
            outputs["arn"] = f"arn:{self.partition}:eks:{self.region}:{ACCOUNT}:cluster/{args.inputs['name']}"
            outputs["endpoint"] = "https://0123ABCD.gr7.us-east-1.eks.amazonaws.com"
            outputs["certificateAuthority"] = {"data": "Q0EtREFUQQ=="}
        elif args.typ == ROLE:
            # Stands in for the autonamed role name.
            outputs["name"] = args.name
            outputs["arn"] = f"arn:{self.partition}:iam::{ACCOUNT}:role/{args.name}"
        elif args.typ == "aws:kms/key:Key":
            outputs["arn"] = f"arn:{self.partition}:kms:{self.region}:{ACCOUNT}:key/{args.name}"
        elif args.typ == NODE_GROUP:
            outputs["resources"] = [{"autoscalingGroups": [{"name": f"eks-{args.name}-asg"}]}]
        return resource_id, outputs

    def call(self, args):
        self.calls.append(args)
        if args.token == AZ_LOOKUP:
            return {"names": self.zones, "zoneIds": [f"use1-az{i}" for i in range(len(self.zones))]}
        return {}


def run_eks(raw: dict, mocks: EksMocks | None = None):
    mocks = mocks or EksMocks()
    return run_program(raw, stack="eks", mocks=mocks), mocks


def one(run, typ: str, name: str):
    (match,) = [r for r in run.resources if r.typ == typ and r.name == name]
    return match


def policy_of(resource, key: str) -> dict:
    return json.loads(resource.inputs[key])


@pytest.fixture(scope="module")
def example_run():
    return run_eks(stack_config("eks"))


@pytest.fixture(scope="module")
def example(example_run):
    return example_run[0]


@pytest.fixture(scope="module")
def existing_subnets():
    """Subnets of an existing VPC, no GPU pool, no ephemeral node pools, no CIDR limit."""
    raw = {"cloud": "eks", "clusterName": "shared-kpo",
           "eks": {"region": "eu-west-1", "subnetIds": ["subnet-0aaa1111", "subnet-0bbb2222"]},
           "deployments": [{"name": "reports", "identity": {"awsRoleArn": ANALYTICS_ROLE}}]}
    return run_eks(raw)[0]


@pytest.fixture(scope="module")
def gov_two_zones():
    """GovCloud region with two zones, default VPC block, on-demand GPU pool."""
    raw = {"cloud": "eks", "clusterName": "gov-kpo", "eks": {"region": "us-gov-west-1"},
           "gpuPool": {"enabled": True, "maxNodes": 2},
           "deployments": [{"name": "batch", "ephemeralNodePools": True,
                            "identity": {"awsRoleArn": "arn:aws-us-gov:iam::123456789012:role/astro-batch"}}]}
    mocks = EksMocks(zones=["us-gov-west-1a", "us-gov-west-1b"], region="us-gov-west-1", partition="aws-us-gov")
    return run_eks(raw, mocks)[0]


# --- the example stack file ---------------------------------------------------------------------

def test_the_example_stack_file_is_complete_and_valid():
    cfg = config.load(stack_config("eks"))
    assert (cfg.cloud, cfg.eks.region, cfg.eks.vpc_cidr) == ("eks", "us-east-1", "10.40.0.0/16")
    assert cfg.eks.public_access_cidrs and cfg.gpu_pool.enabled and cfg.gpu_pool.spot
    assert [(d.name, d.ephemeral_node_pools) for d in cfg.deployments] == [("analytics", False), ("ml-training", True)]


# --- network ------------------------------------------------------------------------------------

def test_vpc_spans_three_zones_with_a_public_and_a_private_subnet_each(example):
    subnets = {r.name: r.inputs for r in example.of_type(SUBNET)}
    assert {name: (s["availabilityZone"], s["cidrBlock"]) for name, s in subnets.items()} == {
        "kpo-gpu-private-0": ("us-east-1a", "10.40.0.0/18"),
        "kpo-gpu-private-1": ("us-east-1b", "10.40.64.0/18"),
        "kpo-gpu-private-2": ("us-east-1c", "10.40.128.0/18"),
        "kpo-gpu-public-0": ("us-east-1a", "10.40.192.0/20"),
        "kpo-gpu-public-1": ("us-east-1b", "10.40.208.0/20"),
        "kpo-gpu-public-2": ("us-east-1c", "10.40.224.0/20"),
    }
    (vpc,) = example.of_type("aws:ec2/vpc:Vpc")
    assert vpc.inputs["cidrBlock"] == "10.40.0.0/16"
    assert vpc.inputs["enableDnsHostnames"] is True and vpc.inputs["enableDnsSupport"] is True


def test_subnets_carry_the_load_balancer_role_tags_and_public_ones_assign_no_public_ips(example):
    for subnet in example.of_type(SUBNET):
        tags = subnet.inputs["tags"]
        if "public" in subnet.name:
            assert tags["kubernetes.io/role/elb"] == "1" and "kubernetes.io/role/internal-elb" not in tags
            assert subnet.inputs["mapPublicIpOnLaunch"] is False
        else:
            assert tags["kubernetes.io/role/internal-elb"] == "1" and "kubernetes.io/role/elb" not in tags


def test_one_nat_gateway_in_a_public_subnet_is_the_private_subnets_way_out(example):
    (nat,) = example.of_type("aws:ec2/natGateway:NatGateway")
    assert nat.inputs["subnetId"] == "kpo-gpu-public-0-id"
    assert nat.inputs["allocationId"] == "kpo-gpu-nat-id"
    private_routes = one(example, "aws:ec2/routeTable:RouteTable", "kpo-gpu-private")
    assert private_routes.inputs["routes"] == [{"cidrBlock": "0.0.0.0/0", "natGatewayId": "kpo-gpu-nat-id"}]
    public_routes = one(example, "aws:ec2/routeTable:RouteTable", "kpo-gpu-public")
    assert public_routes.inputs["routes"] == [{"cidrBlock": "0.0.0.0/0", "gatewayId": "kpo-gpu-igw-id"}]
    associations = {r.inputs["subnetId"]: r.inputs["routeTableId"]
                    for r in example.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")}
    assert associations == {
        **{f"kpo-gpu-private-{i}-id": "kpo-gpu-private-id" for i in range(3)},
        **{f"kpo-gpu-public-{i}-id": "kpo-gpu-public-id" for i in range(3)},
    }


def test_zone_lookup_skips_opt_in_zones_and_zones_eks_cannot_use_in_the_stack_region(example_run):
    _, mocks = example_run
    (lookup,) = [c for c in mocks.calls if c.token == AZ_LOOKUP]
    assert lookup.args["state"] == "available"
    assert lookup.args["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
    assert lookup.args["excludeZoneIds"] == ["use1-az3", "usw1-az2", "cac1-az3"]
    assert lookup.provider.endswith("pulumi:providers:aws::eks-region::eks-region-id")


def test_two_zones_and_the_default_block_when_no_network_is_configured(gov_two_zones):
    subnets = {r.name: (r.inputs["availabilityZone"], r.inputs["cidrBlock"]) for r in gov_two_zones.of_type(SUBNET)}
    assert subnets == {
        "gov-kpo-private-0": ("us-gov-west-1a", "10.0.0.0/18"),
        "gov-kpo-private-1": ("us-gov-west-1b", "10.0.64.0/18"),
        "gov-kpo-public-0": ("us-gov-west-1a", "10.0.192.0/20"),
        "gov-kpo-public-1": ("us-gov-west-1b", "10.0.208.0/20"),
    }


def test_given_subnets_are_used_as_they_are_and_no_network_is_made(existing_subnets):
    assert not [r for r in existing_subnets.resources if r.typ.startswith("aws:ec2/")]
    (cluster,) = existing_subnets.of_type(CLUSTER)
    assert cluster.inputs["vpcConfig"]["subnetIds"] == ["subnet-0aaa1111", "subnet-0bbb2222"]
    assert [g.inputs["subnetIds"] for g in existing_subnets.of_type(NODE_GROUP)] == [["subnet-0aaa1111", "subnet-0bbb2222"]]


def test_aws_resources_are_made_in_the_configured_region_with_a_cluster_tag(example):
    (provider,) = example.of_type("pulumi:providers:aws")
    assert provider.inputs["region"] == "us-east-1"
    assert json.loads(provider.inputs["defaultTags"]) == {"tags": {"remote-kpo/cluster": "kpo-gpu"}}
    aws_resources = [r for r in example.resources if r.typ.startswith("aws:")]
    assert aws_resources and {r.provider.rsplit("$", 1)[-1] for r in aws_resources} == {
        "pulumi:providers:aws::eks-region::eks-region-id"}


# --- cluster --------------------------------------------------------------------------------------

def test_cluster_role_trusts_eks_and_has_only_the_cluster_policy(example):
    role = one(example, ROLE, "kpo-gpu-cluster-role")
    assert policy_of(role, "assumeRolePolicy") == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    attached = [a.inputs["policyArn"] for a in example.of_type(ATTACHMENT) if a.inputs["role"] == "kpo-gpu-cluster-role"]
    assert attached == ["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"]
    assert one(example, CLUSTER, "kpo-gpu-cluster").inputs["roleArn"] == "arn:aws:iam::123456789012:role/kpo-gpu-cluster-role"


def test_cluster_uses_access_entries_with_the_creator_as_admin(example):
    cluster = one(example, CLUSTER, "kpo-gpu-cluster").inputs
    assert cluster["name"] == "kpo-gpu" and cluster["version"] == "1.34"
    assert cluster["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": True}


def test_endpoint_is_private_plus_public_limited_to_the_configured_cidrs(example):
    vpc_config = one(example, CLUSTER, "kpo-gpu-cluster").inputs["vpcConfig"]
    assert vpc_config == {
        "endpointPrivateAccess": True, "endpointPublicAccess": True,
        "publicAccessCidrs": ["203.0.113.0/24", "198.51.100.17/32"],
        "subnetIds": ["kpo-gpu-private-0-id", "kpo-gpu-private-1-id", "kpo-gpu-private-2-id"],
    }


def test_without_public_access_cidrs_eks_keeps_its_default(existing_subnets):
    vpc_config = existing_subnets.of_type(CLUSTER)[0].inputs["vpcConfig"]
    assert "publicAccessCidrs" not in vpc_config
    assert vpc_config["endpointPrivateAccess"] is True


def test_secrets_are_envelope_encrypted_with_a_rotating_kms_key(example):
    key = one(example, "aws:kms/key:Key", "kpo-gpu-secrets")
    assert key.inputs["enableKeyRotation"] is True
    assert one(example, CLUSTER, "kpo-gpu-cluster").inputs["encryptionConfig"] == {
        "resources": ["secrets"],
        "provider": {"keyArn": "arn:aws:kms:us-east-1:123456789012:key/kpo-gpu-secrets"}}


def test_control_plane_logs_audit_and_authenticator_into_a_group_with_retention(example):
    cluster = one(example, CLUSTER, "kpo-gpu-cluster")
    assert cluster.inputs["enabledClusterLogTypes"] == ["audit", "authenticator"]
    (log_group,) = example.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert log_group.inputs["name"] == "/aws/eks/kpo-gpu/cluster"
    assert log_group.inputs["retentionInDays"] == 90


def test_cluster_has_deletion_protection(example):
    assert one(example, CLUSTER, "kpo-gpu-cluster").inputs["deletionProtection"] is True


# --- node groups ----------------------------------------------------------------------------------

def test_node_role_trusts_ec2_and_has_the_three_seed_policies(example):
    role = one(example, ROLE, "kpo-gpu-node-role")
    assert policy_of(role, "assumeRolePolicy")["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    attached = sorted(a.inputs["policyArn"] for a in example.of_type(ATTACHMENT) if a.inputs["role"] == "kpo-gpu-node-role")
    assert attached == ["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
                        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
                        "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"]


def test_managed_policies_use_the_regions_partition(gov_two_zones):
    attached = sorted(a.inputs["policyArn"] for a in gov_two_zones.of_type(ATTACHMENT))
    assert attached == ["arn:aws-us-gov:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
                        "arn:aws-us-gov:iam::aws:policy/AmazonEKSClusterPolicy",
                        "arn:aws-us-gov:iam::aws:policy/AmazonEKSWorkerNodePolicy",
                        "arn:aws-us-gov:iam::aws:policy/AmazonEKS_CNI_Policy"]


def test_system_group_runs_al2023_standard_on_demand_in_private_subnets(example):
    system = one(example, NODE_GROUP, "kpo-gpu-system").inputs
    assert (system["amiType"], system["instanceTypes"], system["capacityType"]) == (
        "AL2023_x86_64_STANDARD", ["m6i.large"], "ON_DEMAND")
    assert system["scalingConfig"] == {"minSize": 2, "maxSize": 4, "desiredSize": 2}
    assert system["clusterName"] == "kpo-gpu"
    assert system["nodeRoleArn"] == "arn:aws:iam::123456789012:role/kpo-gpu-node-role"
    assert system["subnetIds"] == ["kpo-gpu-private-0-id", "kpo-gpu-private-1-id", "kpo-gpu-private-2-id"]
    assert "taints" not in system


def test_gpu_group_runs_al2023_nvidia_on_spot_from_zero_with_taint_and_label(example):
    gpu = one(example, NODE_GROUP, "kpo-gpu-gpu").inputs
    assert (gpu["amiType"], gpu["instanceTypes"], gpu["capacityType"]) == (
        "AL2023_x86_64_NVIDIA", ["g5.xlarge"], "SPOT")
    assert gpu["scalingConfig"] == {"minSize": 0, "maxSize": 4, "desiredSize": 0}
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert gpu["labels"] == {"remote-kpo/gpu": "true"}
    assert gpu["subnetIds"] == ["kpo-gpu-private-0-id", "kpo-gpu-private-1-id", "kpo-gpu-private-2-id"]


def test_gpu_group_is_on_demand_unless_spot_is_set(gov_two_zones):
    gpu = one(gov_two_zones, NODE_GROUP, "gov-kpo-gpu").inputs
    assert gpu["capacityType"] == "ON_DEMAND"
    assert gpu["scalingConfig"] == {"minSize": 0, "maxSize": 2, "desiredSize": 0}


def test_gpu_group_carries_the_cluster_autoscaler_tags(example):
    assert one(example, NODE_GROUP, "kpo-gpu-gpu").inputs["tags"] == {
        "k8s.io/cluster-autoscaler/enabled": "true",
        "k8s.io/cluster-autoscaler/kpo-gpu": "owned",
        "k8s.io/cluster-autoscaler/node-template/label/remote-kpo/gpu": "true",
        "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu": "present:NoSchedule",
    }


def test_node_template_tags_are_put_on_the_gpu_groups_auto_scaling_group(example):
    tags = {r.inputs["tag"]["key"]: (r.inputs["autoscalingGroupName"], r.inputs["tag"]["value"],
                                     r.inputs["tag"]["propagateAtLaunch"])
            for r in example.of_type("aws:autoscaling/tag:Tag")}
    assert tags == {
        "k8s.io/cluster-autoscaler/node-template/label/remote-kpo/gpu": ("eks-kpo-gpu-gpu-asg", "true", False),
        "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu": ("eks-kpo-gpu-gpu-asg", "present:NoSchedule", False),
    }


def test_no_gpu_group_unless_enabled(existing_subnets):
    assert [g.name for g in existing_subnets.of_type(NODE_GROUP)] == ["shared-kpo-system"]
    assert not existing_subnets.of_type("aws:autoscaling/tag:Tag")


# --- Deployment identities ------------------------------------------------------------------------

def test_access_role_trust_lets_exactly_the_deployments_role_assume_it(example):
    trusts = {r.name: policy_of(r, "assumeRolePolicy") for r in example.of_type(ROLE) if r.name.endswith("-access-role")}
    assert trusts == {
        "analytics-access-role": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ANALYTICS_ROLE}, "Action": "sts:AssumeRole"}]},
        "ml-training-access-role": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ML_ROLE}, "Action": "sts:AssumeRole"}]},
    }


def test_access_policy_without_ephemeral_pools_only_describes_this_cluster(example):
    policy = one(example, ROLE_POLICY, "analytics-access-policy")
    assert policy.inputs["role"] == "analytics-access-role"
    assert policy_of(policy, "policy") == {"Version": "2012-10-17", "Statement": [
        {"Sid": "Authenticate", "Effect": "Allow", "Action": ["eks:DescribeCluster"], "Resource": CLUSTER_ARN}]}


def test_ephemeral_node_pools_add_node_group_actions_on_this_cluster_and_pass_role_to_eks_only(example):
    policy = policy_of(one(example, ROLE_POLICY, "ml-training-access-policy"), "policy")
    assert policy["Statement"] == [
        {"Sid": "Authenticate", "Effect": "Allow", "Action": ["eks:DescribeCluster"], "Resource": CLUSTER_ARN},
        {"Sid": "EphemeralNodeGroups", "Effect": "Allow",
         "Action": ["eks:CreateNodegroup", "eks:DescribeNodegroup", "eks:DeleteNodegroup"],
         "Resource": [CLUSTER_ARN, "arn:aws:eks:us-east-1:123456789012:nodegroup/kpo-gpu/*/*"]},
        {"Sid": "PassNodeRoleToEks", "Effect": "Allow", "Action": ["iam:PassRole"],
         "Resource": "arn:aws:iam::123456789012:role/kpo-gpu-node-role",
         "Condition": {"StringEquals": {"iam:PassedToService": "eks.amazonaws.com"}}},
    ]


@pytest.mark.parametrize("run_name", ["example", "existing_subnets", "gov_two_zones"])
def test_no_iam_document_has_a_wildcard_action_or_a_bare_wildcard_resource(run_name, request):
    run = request.getfixturevalue(run_name)
    documents = [policy_of(r, "policy") for r in run.of_type(ROLE_POLICY)]
    documents += [policy_of(r, "assumeRolePolicy") for r in run.of_type(ROLE)]
    assert documents
    for document in documents:
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not [a for a in actions if "*" in a]
            resources = statement.get("Resource", [])
            resources = resources if isinstance(resources, list) else [resources]
            assert "*" not in resources
            assert all(r.startswith("arn:") for r in resources)


def test_access_entries_are_standard_map_each_role_to_its_own_group_and_get_no_access_policy(example):
    entries = {r.name: r.inputs for r in example.of_type(ACCESS_ENTRY)}
    assert entries == {
        "analytics-access-entry": {"clusterName": "kpo-gpu", "type": "STANDARD",
                                   "principalArn": "arn:aws:iam::123456789012:role/analytics-access-role",
                                   "kubernetesGroups": ["remote-kpo:analytics"]},
        "ml-training-access-entry": {"clusterName": "kpo-gpu", "type": "STANDARD",
                                     "principalArn": "arn:aws:iam::123456789012:role/ml-training-access-role",
                                     "kubernetesGroups": ["remote-kpo:ml-training"]},
    }
    assert not example.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")


def test_rolebinding_names_the_group_of_the_deployments_access_entry(example):
    subjects = {r.inputs["metadata"]["namespace"]: r.inputs["subjects"] for r in example.of_type(BINDING)}
    assert subjects == {
        "kpo-analytics": [{"kind": "Group", "name": "remote-kpo:analytics", "apiGroup": "rbac.authorization.k8s.io"}],
        "kpo-ml-training": [{"kind": "Group", "name": "remote-kpo:ml-training", "apiGroup": "rbac.authorization.k8s.io"}],
    }
    assert not [r for r in example.resources if "ClusterRole" in r.typ]


# --- Kubernetes provider and outputs -------------------------------------------------------------

def test_program_provider_uses_the_creators_identity_and_a_cluster_identifier(example):
    (provider,) = example.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["clusterIdentifier"] == "kpo-gpu"
    kubeconfig = json.loads(provider.inputs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"] == {
        "server": "https://0123ABCD.gr7.us-east-1.eks.amazonaws.com", "certificate-authority-data": "Q0EtREFUQQ=="}
    (user,) = kubeconfig["users"]
    assert user["user"]["exec"]["command"] == "aws"
    assert user["user"]["exec"]["args"] == ["--region", "us-east-1", "eks", "get-token", "--cluster-name", "kpo-gpu"]


def test_every_kubernetes_object_goes_through_the_eks_provider(example):
    objects = [r for r in example.resources if r.typ.startswith("kubernetes:")]
    # 2 x (Namespace, Role, RoleBinding, ResourceQuota) + analytics' LimitRange
    assert len(objects) == 9
    assert {r.provider.rsplit("$", 1)[-1] for r in objects} == {
        "pulumi:providers:kubernetes::eks-cluster::eks-cluster-id"}


def test_exported_kubeconfig_runs_aws_eks_get_token_as_the_deployments_access_role(example):
    doc = json.loads(example.outputs["kubeconfigs"]["ml-training"])
    assert doc["users"] == [{"name": "kpo-gpu-ml-training", "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
        "args": ["--region", "us-east-1", "eks", "get-token", "--cluster-name", "kpo-gpu",
                 "--role-arn", "arn:aws:iam::123456789012:role/ml-training-access-role"],
        "provideClusterInfo": False, "interactiveMode": "Never"}}}]
    assert doc["contexts"][0]["context"]["namespace"] == "kpo-ml-training"
    assert doc["clusters"][0]["cluster"]["server"] == "https://0123ABCD.gr7.us-east-1.eks.amazonaws.com"
    connection = json.loads(example.outputs["airflowConnections"]["ml-training"])
    assert connection["extra"] == {"kube_config": doc, "namespace": "kpo-ml-training", "in_cluster": False}


def test_outputs_describe_the_cluster_and_the_aws_cli_image_lines(example):
    assert (example.outputs["cloud"], example.outputs["clusterName"]) == ("eks", "kpo-gpu")
    assert example.outputs["clusterEndpoint"] == "https://0123ABCD.gr7.us-east-1.eks.amazonaws.com"
    assert example.outputs["clusterCaCertificate"] == "Q0EtREFUQQ=="
    assert "aws/install" in example.outputs["dockerfile"]
    assert example.outputs["deployments"]["analytics"] == {
        "namespace": "kpo-analytics", "connectionId": "kpo_analytics", "envVar": "AIRFLOW_CONN_KPO_ANALYTICS"}


def test_node_role_and_subnets_are_exported_for_ephemeral_node_pools(example):
    assert example.outputs["nodeRoleArn"] == "arn:aws:iam::123456789012:role/kpo-gpu-node-role"
    assert example.outputs["subnetIds"] == ["kpo-gpu-private-0-id", "kpo-gpu-private-1-id", "kpo-gpu-private-2-id"]
    assert example.secret["nodeRoleArn"] is False and example.secret["subnetIds"] is False
    assert (example.secret["kubeconfigs"], example.secret["airflowConnections"], example.secret["kubeconfig"]) == (
        True, True, True)


def test_without_ephemeral_node_pools_no_node_role_or_subnets_are_exported(existing_subnets):
    assert "nodeRoleArn" not in existing_subnets.outputs and "subnetIds" not in existing_subnets.outputs


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("vpc_cidr, prefix", [("10.0.0.0/26", 26), ("10.0.0.0/12", 12)])
def test_a_vpc_block_that_cannot_hold_the_subnets_stops_before_any_resource(vpc_cidr, prefix):
    raw = stack_config("eks")
    raw["eks"] = raw["eks"] | {"vpcCidr": vpc_cidr}
    mocks = EksMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_program(raw, stack="eks", mocks=mocks)
    assert str(caught.value) == (
        f"remote-kpo:eks.vpcCidr: /{prefix} does not fit: use a block from /16 to /24 (it is split into six subnets)")
    assert mocks.resources == []


# --- pure functions -------------------------------------------------------------------------------

def test_subnet_plan_uses_at_most_three_zones_and_keeps_the_smallest_block_valid():
    plan = eks.subnet_plan("192.168.0.0/24", ["a", "b", "c", "d"])
    assert [(z.zone, z.private_cidr, z.public_cidr) for z in plan] == [
        ("a", "192.168.0.0/26", "192.168.0.192/28"),
        ("b", "192.168.0.64/26", "192.168.0.208/28"),
        ("c", "192.168.0.128/26", "192.168.0.224/28"),
    ]


@pytest.mark.parametrize("region, partition", [
    ("eu-central-1", "aws"), ("cn-northwest-1", "aws-cn"), ("us-gov-east-1", "aws-us-gov"),
    ("us-iso-east-1", "aws-iso"), ("us-isob-east-1", "aws-iso-b")])
def test_partition_follows_the_region(region, partition):
    assert eks.partition_of(region) == partition


def test_nodegroup_pattern_covers_only_this_clusters_node_groups():
    assert eks.nodegroup_arn_pattern("arn:aws-cn:eks:cn-north-1:123456789012:cluster/a-b") == (
        "arn:aws-cn:eks:cn-north-1:123456789012:nodegroup/a-b/*/*")
    with pytest.raises(ValueError):
        eks.nodegroup_arn_pattern("arn:aws:iam::123456789012:role/x")
