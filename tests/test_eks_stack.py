"""The eks stack under Pulumi mocks: network, Auto Mode cluster, GPU NodePool, node groups DAGs
create, identities, RBAC, outputs."""

import json
from unittest import mock

import pulumi
import pulumi_aws
import pytest

import config
from components import disruption, eks, gpu, versions
from components.permissions import CLOUD_ACTIONS
from harness import DEFAULT_JANITOR, RecordingMocks, assert_objects_replaced_with_cluster, run_program, stack_config

ACCOUNT = "123456789012"
AZ_LOOKUP = "aws:index/getAvailabilityZones:getAvailabilityZones"
CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"
CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
ADDON = "aws:eks/addon:Addon"
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
    """What AWS computes: ARNs, the endpoint and CA, and the region's availability zones."""

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
        return resource_id, outputs

    def call(self, args):
        self.calls.append(args)
        if args.token == AZ_LOOKUP:
            return {"names": self.zones, "zoneIds": [f"use1-az{i}" for i in range(len(self.zones))]}
        if args.token == CALLER_IDENTITY:
            # The account of the credentials running `pulumi up`, where the cluster is made.
            return {"accountId": ACCOUNT, "arn": f"arn:{self.partition}:iam::{ACCOUNT}:user/ci",
                    "userId": "AIDAEXAMPLE", "id": ACCOUNT}
        return {}


def run_eks(raw: dict, mocks: EksMocks | None = None):
    mocks = mocks or EksMocks()
    return run_program(raw, stack="eks", mocks=mocks), mocks


def one(run, typ: str, name: str):
    (match,) = [r for r in run.resources if r.typ == typ and r.name == name]
    return match


def attached_to(run, role: str) -> list[str]:
    """The managed policies attached to one role, sorted."""
    return sorted(a.inputs["policyArn"] for a in run.of_type(ATTACHMENT) if a.inputs["role"] == role)


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
    """Subnets of an existing VPC, no GPU pool, no ephemeral node pools, no CIDR limit,
    deletion protection off."""
    raw = {"cloud": "eks", "clusterName": "shared-kpo",
           "eks": {"region": "eu-west-1", "subnetIds": ["subnet-0aaa1111", "subnet-0bbb2222"],
                   "deletionProtection": False},
           "deployments": [{"name": "reports", "identity": {"awsRoleArn": ANALYTICS_ROLE}}]}
    return run_eks(raw)[0]


@pytest.fixture(scope="module")
def gov_two_zones():
    """GovCloud region with two zones, default VPC block, on-demand GPU pool of 4-GPU nodes."""
    raw = {"cloud": "eks", "clusterName": "gov-kpo", "eks": {"region": "us-gov-west-1"},
           "gpuPool": {"enabled": True, "maxNodes": 2, "machineType": "g6.12xlarge", "accelerator": {"count": 4}},
           "deployments": [{"name": "batch", "ephemeralNodePools": True,
                            "identity": {"awsRoleArn": "arn:aws-us-gov:iam::123456789012:role/astro-batch"}}]}
    mocks = EksMocks(zones=["us-gov-west-1a", "us-gov-west-1b"], region="us-gov-west-1", partition="aws-us-gov")
    return run_eks(raw, mocks)[0]


# --- the example stack file ---------------------------------------------------------------------

def test_the_example_stack_file_is_complete_and_valid():
    cfg = config.load(stack_config("eks"))
    assert (cfg.cloud, cfg.eks.region, cfg.eks.vpc_cidr) == ("eks", "us-east-1", "10.40.0.0/16")
    assert cfg.eks.public_access_cidrs and cfg.gpu_pool.enabled and cfg.gpu_pool.spot
    assert cfg.eks.deletion_protection and cfg.system_pool.model_fields_set == set()
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


def test_aws_resources_are_made_in_the_configured_region_with_a_cluster_tag(example):
    (provider,) = example.of_type("pulumi:providers:aws")
    assert provider.inputs["region"] == "us-east-1"
    assert json.loads(provider.inputs["defaultTags"]) == {"tags": {"remote-kpo/cluster": "kpo-gpu"}}
    aws_resources = [r for r in example.resources if r.typ.startswith("aws:")]
    assert aws_resources and {r.provider.rsplit("$", 1)[-1] for r in aws_resources} == {
        "pulumi:providers:aws::eks-region::eks-region-id"}


# --- cluster --------------------------------------------------------------------------------------

def test_cluster_role_trusts_eks_with_session_tags_and_has_the_auto_mode_cluster_policies(example):
    role = one(example, ROLE, "kpo-gpu-cluster-role")
    assert policy_of(role, "assumeRolePolicy") == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]}
    attached = attached_to(example, "kpo-gpu-cluster-role")
    assert attached == [f"arn:aws:iam::aws:policy/{p}" for p in (
        "AmazonEKSBlockStoragePolicy", "AmazonEKSClusterPolicy", "AmazonEKSComputePolicy",
        "AmazonEKSLoadBalancingPolicy", "AmazonEKSNetworkingPolicy")]
    assert one(example, CLUSTER, "kpo-gpu-cluster").inputs["roleArn"] == "arn:aws:iam::123456789012:role/kpo-gpu-cluster-role"


def test_cluster_runs_eks_auto_mode_with_both_built_in_pools_and_its_node_role(example):
    cluster = one(example, CLUSTER, "kpo-gpu-cluster").inputs
    assert cluster["computeConfig"] == {"enabled": True, "nodePools": ["system", "general-purpose"],
                                        "nodeRoleArn": "arn:aws:iam::123456789012:role/kpo-gpu-node-role"}
    assert cluster["kubernetesNetworkConfig"] == {"elasticLoadBalancing": {"enabled": True}}
    assert cluster["storageConfig"] == {"blockStorage": {"enabled": True}}
    assert cluster["bootstrapSelfManagedAddons"] is False


def test_a_cluster_made_before_auto_mode_keeps_its_bootstrap_setting_and_turns_auto_mode_on_in_place(example):
    # bootstrapSelfManagedAddons forces a new cluster in the provider; ignoring its changes lets an
    # existing cluster (made with the default, true) stay, while a new one is still created with
    # false. Auto Mode itself is the three settings of one resource, which the provider sends
    # in one UpdateClusterConfig.
    assert example.options["kpo-gpu-cluster"].ignore_changes == ["bootstrapSelfManagedAddons"]
    cluster = one(example, CLUSTER, "kpo-gpu-cluster").inputs
    assert cluster["bootstrapSelfManagedAddons"] is False
    assert (cluster["computeConfig"]["enabled"], cluster["kubernetesNetworkConfig"]["elasticLoadBalancing"]["enabled"],
            cluster["storageConfig"]["blockStorage"]["enabled"]) == (True, True, True)


def test_cluster_uses_access_entries_with_the_creator_as_admin(example):
    cluster = one(example, CLUSTER, "kpo-gpu-cluster").inputs
    # No version: EKS's default at creation (the example pins none that can go stale).
    assert cluster["name"] == "kpo-gpu" and "version" not in cluster
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


def test_cluster_has_deletion_protection_unless_configured_off(example, existing_subnets):
    assert one(example, CLUSTER, "kpo-gpu-cluster").inputs["deletionProtection"] is True
    assert one(existing_subnets, CLUSTER, "shared-kpo-cluster").inputs["deletionProtection"] is False


def test_deletion_protection_also_protects_the_cluster_in_pulumi_so_destroy_stops_first(example, existing_subnets):
    assert [name for name, opts in example.options.items() if opts is not None and opts.protect] == [
        "kpo-gpu-cluster"]
    assert existing_subnets.options["shared-kpo-cluster"].protect is False


def test_a_configured_version_past_standard_support_is_warned_about():
    raw = stack_config("eks")
    raw["eks"] = raw["eks"] | {"version": "1.30"}
    with mock.patch.object(pulumi.log, "warn") as warn:
        run_eks(raw)
    assert [c.args[0] for c in warn.call_args_list if "eks.version" in c.args[0]] == [
        "remote-kpo:eks.version: Kubernetes 1.30 left EKS standard support on 2025-07-23 "
        f"({versions.EKS_CALENDAR}): set a newer version, or unset it for the cloud's default"]


# --- nodes: Auto Mode, the GPU NodePool, node groups DAGs create -----------------------------------

def test_auto_mode_node_role_trusts_ec2_and_has_exactly_the_two_minimal_policies(example):
    role = one(example, ROLE, "kpo-gpu-node-role")
    assert policy_of(role, "assumeRolePolicy")["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    attached = attached_to(example, "kpo-gpu-node-role")
    assert attached == ["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
                        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodeMinimalPolicy"]
    assert not [r for r in example.of_type("aws:iam/rolePolicy:RolePolicy") if r.inputs["role"] == "kpo-gpu-node-role"]


def test_managed_policies_use_the_regions_partition(gov_two_zones):
    attached = {a.inputs["policyArn"] for a in gov_two_zones.of_type(ATTACHMENT)}
    assert attached and all(arn.startswith("arn:aws-us-gov:iam::aws:policy/") for arn in attached)
    assert "arn:aws-us-gov:iam::aws:policy/AmazonEKSWorkerNodeMinimalPolicy" in attached


def test_no_managed_node_group_or_autoscaler_is_made(example, gov_two_zones):
    for run in (example, gov_two_zones):
        assert not run.of_type(NODE_GROUP)
        assert not [r for r in run.resources if r.typ.startswith("aws:autoscaling/")]


def test_gpu_pool_is_a_nodepool_on_the_auto_mode_default_node_class(example):
    pool = one(example, NODE_POOL, "kpo-gpu-gpu-nodepool")
    # Named after the stack that made it, as every object is (tests/test_ownership.py).
    assert pool.inputs["metadata"] == {"name": "remote-kpo-gpu",
                                       "annotations": {"remote-kpo/stack": "organization/remote-kpo/eks"}}
    template = pool.inputs["spec"]["template"]
    assert template["metadata"] == {"labels": {"remote-kpo/gpu": "true"}}
    assert template["spec"]["nodeClassRef"] == {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "default"}
    assert template["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert template["spec"]["requirements"] == [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g5.xlarge"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
    ]


def test_gpu_nodepool_caps_gpus_at_max_nodes_and_removes_empty_nodes_soon(example):
    spec = one(example, NODE_POOL, "kpo-gpu-gpu-nodepool").inputs["spec"]
    assert spec["limits"] == {"nvidia.com/gpu": "4"}
    assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert spec["disruption"]["consolidateAfter"] == "1m"


def test_gpu_nodepool_drifts_one_node_at_a_time_and_bounds_a_stuck_task_by_default(example):
    spec = one(example, NODE_POOL, "kpo-gpu-gpu-nodepool").inputs["spec"]
    assert spec["disruption"]["budgets"] == [{"nodes": "1", "reasons": ["Drifted"]}]
    # EKS Auto Mode's general-purpose pool: a day's grace, nodes replaced after two weeks.
    assert spec["template"]["spec"]["terminationGracePeriod"] == "24h"
    assert spec["template"]["spec"]["expireAfter"] == "336h"


def test_every_stack_exports_the_public_task_shape_that_keeps_a_tasks_node_on_the_task_nodepool(
        example, existing_subnets):
    annotations = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false", "karpenter.sh/do-not-disrupt": "true"}
    for stack in (example, existing_subnets):
        assert stack.outputs["task"] == {
            "annotations": annotations, "nodeSelector": {"remote-kpo/tasks": "true"},
            "tolerations": [{"key": "remote-kpo/tasks", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]}
        assert stack.secret["task"] is False
    # A GPU task goes to the GPU pool: the annotations only.
    assert example.outputs["gpuTask"]["annotations"] == annotations
    assert example.outputs["gpuTask"]["nodeSelector"] == {"remote-kpo/gpu": "true"}


# --- the task NodePool: ordinary tasks off Auto Mode's consolidating general-purpose pool ---------

def test_the_task_nodepool_never_consolidates_a_node_with_a_task_and_drifts_one_node_at_a_time(existing_subnets):
    spec = one(existing_subnets, NODE_POOL, "shared-kpo-tasks-nodepool").inputs["spec"]
    assert spec["disruption"] == {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "5m",
                                  "budgets": [{"nodes": "1", "reasons": ["Drifted"]}]}
    # Auto Mode's defaults for a node: a day's grace for a task that blocks its drain, two weeks' life.
    assert spec["template"]["spec"]["terminationGracePeriod"] == "24h"
    assert spec["template"]["spec"]["expireAfter"] == "336h"
    assert "limits" not in spec


def test_the_task_nodepool_is_on_the_auto_mode_default_node_class_with_the_general_purpose_instances(existing_subnets):
    pool = one(existing_subnets, NODE_POOL, "shared-kpo-tasks-nodepool")
    assert pool.inputs["metadata"] == {"name": "remote-kpo-tasks",
                                       "annotations": {"remote-kpo/stack": "organization/remote-kpo/eks"}}
    template = pool.inputs["spec"]["template"]
    assert template["spec"]["nodeClassRef"] == {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "default"}
    # C, M and R, generation 5 or newer, on-demand, amd64: what the general-purpose pool offers.
    assert template["spec"]["requirements"] == [
        {"key": "eks.amazonaws.com/instance-category", "operator": "In", "values": ["c", "m", "r"]},
        {"key": "eks.amazonaws.com/instance-generation", "operator": "Gt", "values": ["4"]},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]


def test_the_task_output_selects_the_task_nodepools_label_and_tolerates_its_taint_only(existing_subnets):
    task = existing_subnets.outputs["task"]
    template = one(existing_subnets, NODE_POOL, "shared-kpo-tasks-nodepool").inputs["spec"]["template"]
    assert task["nodeSelector"].items() <= template["metadata"]["labels"].items()
    assert [{k: t[k] for k in ("key", "value", "effect")} for t in task["tolerations"]] == template["spec"]["taints"]
    # Only tasks tolerate it: nothing else keeps a task node from going empty.
    assert template["spec"]["taints"] == [{"key": "remote-kpo/tasks", "value": "true", "effect": "NoSchedule"}]


def test_the_task_pool_keys_set_the_task_nodepools_grace_period_and_node_lifetime():
    run, _ = run_eks(stack_config("eks") | {"taskPool": {"terminationGracePeriod": "2h", "expireAfter": "72h"}})
    spec = one(run, NODE_POOL, "kpo-gpu-tasks-nodepool").inputs["spec"]["template"]["spec"]
    assert (spec["terminationGracePeriod"], spec["expireAfter"]) == ("2h", "72h")
    gpu_spec = one(run, NODE_POOL, "kpo-gpu-gpu-nodepool").inputs["spec"]["template"]["spec"]
    assert (gpu_spec["terminationGracePeriod"], gpu_spec["expireAfter"]) == ("24h", "336h")


def test_the_task_nodepool_goes_through_the_eks_provider_after_the_cluster(example):
    pool = one(example, NODE_POOL, "kpo-gpu-tasks-nodepool")
    assert pool.provider.rsplit("$", 1)[-1] == "pulumi:providers:kubernetes::eks-cluster::eks-cluster-id"
    (cluster,) = example.options["kpo-gpu-tasks-nodepool"].depends_on
    assert isinstance(cluster, pulumi_aws.eks.Cluster)


def test_gpu_nodepool_is_on_demand_unless_spot_and_counts_gpus_per_node(gov_two_zones):
    spec = one(gov_two_zones, NODE_POOL, "gov-kpo-gpu-nodepool").inputs["spec"]
    assert {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]} in spec["template"]["spec"]["requirements"]
    assert spec["limits"] == {"nvidia.com/gpu": "8"}


def test_gpu_nodepool_goes_through_the_eks_provider_after_the_cluster(example):
    pool = one(example, NODE_POOL, "kpo-gpu-gpu-nodepool")
    assert pool.provider.rsplit("$", 1)[-1] == "pulumi:providers:kubernetes::eks-cluster::eks-cluster-id"
    # Auto Mode's NodePool CRD and default NodeClass exist once the cluster does.
    (cluster,) = example.options["kpo-gpu-gpu-nodepool"].depends_on
    assert isinstance(cluster, pulumi_aws.eks.Cluster)


def test_no_gpu_nodepool_unless_the_gpu_pool_is_enabled(existing_subnets):
    assert [pool.name for pool in existing_subnets.of_type(NODE_POOL)] == ["shared-kpo-tasks-nodepool"]


def test_node_groups_dags_create_get_their_own_role_without_the_cni_policy(example):
    role = one(example, ROLE, "kpo-gpu-node-group-role")
    assert policy_of(role, "assumeRolePolicy")["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    attached = attached_to(example, "kpo-gpu-node-group-role")
    # What a task pod could read through a hop-limit-2 instance metadata service: no network
    # interface rights.
    assert attached == ["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
                        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"]


def test_the_cni_policy_goes_to_the_vpc_cni_service_account_through_pod_identity(example):
    role = one(example, ROLE, "kpo-gpu-vpc-cni-role")
    assert policy_of(role, "assumeRolePolicy")["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
         "Action": ["sts:AssumeRole", "sts:TagSession"]}]
    attached = attached_to(example, "kpo-gpu-vpc-cni-role")
    assert attached == ["arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"]
    addons = {r.inputs["addonName"]: r.inputs for r in example.of_type(ADDON)}
    assert addons["vpc-cni"]["podIdentityAssociations"] == [
        {"roleArn": "arn:aws:iam::123456789012:role/kpo-gpu-vpc-cni-role", "serviceAccount": "aws-node"}]
    assert not [a for name, a in addons.items() if name != "vpc-cni" and "podIdentityAssociations" in a]
    # After the agent that serves the association, and the role's policy.
    depends = example.options["kpo-gpu-vpc-cni"].depends_on
    assert {getattr(d, "_name", None) for d in depends} >= {"kpo-gpu-eks-pod-identity-agent",
                                                            "kpo-gpu-vpc-cni-AmazonEKS_CNI_Policy"}


def test_node_groups_dags_create_get_networking_dns_and_the_pod_identity_agent(example):
    addons = {r.inputs["addonName"]: r.inputs for r in example.of_type(ADDON)}
    # The agent serves the VPC CNI's credentials and any taskIdentity on those nodes (Auto Mode
    # runs its own only on its own nodes).
    assert sorted(addons) == ["coredns", "eks-pod-identity-agent", "kube-proxy", "vpc-cni"]
    assert all(a["clusterName"] == "kpo-gpu" and a["resolveConflictsOnCreate"] == "OVERWRITE" for a in addons.values())
    assert not [a for a in addons.values() if "addonVersion" in a]


def test_without_ephemeral_node_pools_no_node_group_role_or_add_ons(existing_subnets):
    assert sorted(r.name for r in existing_subnets.of_type(ROLE)) == [
        "reports-access-role", "shared-kpo-cluster-role", "shared-kpo-node-role"]
    assert not existing_subnets.of_type(ADDON)


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


def test_ephemeral_node_pools_add_tag_scoped_node_group_actions_pass_role_and_the_service_linked_role(example):
    policy = policy_of(one(example, ROLE_POLICY, "ml-training-access-policy"), "policy")
    assert policy["Statement"] == [
        {"Sid": "Authenticate", "Effect": "Allow", "Action": ["eks:DescribeCluster"], "Resource": CLUSTER_ARN},
        # Create only with the request tag naming this Deployment; describe and delete only
        # groups that carry it: another tenant's node groups are out of reach.
        {"Sid": "CreateOwnNodeGroups", "Effect": "Allow", "Action": ["eks:CreateNodegroup"], "Resource": CLUSTER_ARN,
         "Condition": {"StringEquals": {"aws:RequestTag/remote-kpo/deployment": "ml-training"}}},
        # Tags on create are authorized as TagResource: only this Deployment's tag, only on a
        # group without one (no retagging another Deployment's group to take it over).
        {"Sid": "TagOwnNodeGroupsOnCreate", "Effect": "Allow", "Action": ["eks:TagResource"],
         "Resource": "arn:aws:eks:us-east-1:123456789012:nodegroup/kpo-gpu/*/*",
         "Condition": {"StringEquals": {"aws:RequestTag/remote-kpo/deployment": "ml-training"},
                       "Null": {"aws:ResourceTag/remote-kpo/deployment": "true"}}},
        # Describe by name (a deleted group, which the delete waiters poll for, has no tag left);
        # delete by tag.
        {"Sid": "DescribeOwnNodeGroups", "Effect": "Allow", "Action": ["eks:DescribeNodegroup"],
         "Resource": "arn:aws:eks:us-east-1:123456789012:nodegroup/kpo-gpu/ml-training-*/*"},
        {"Sid": "DeleteOwnNodeGroups", "Effect": "Allow", "Action": ["eks:DeleteNodegroup"],
         "Resource": "arn:aws:eks:us-east-1:123456789012:nodegroup/kpo-gpu/*/*",
         "Condition": {"StringEquals": {"aws:ResourceTag/remote-kpo/deployment": "ml-training"}}},
        {"Sid": "PassNodeRoleToEks", "Effect": "Allow", "Action": ["iam:PassRole"],
         "Resource": "arn:aws:iam::123456789012:role/kpo-gpu-node-group-role",
         "Condition": {"StringEquals": {"iam:PassedToService": "eks.amazonaws.com"}}},
        # The account's first managed node group: EKS makes this role as the caller.
        {"Sid": "NodegroupServiceLinkedRole", "Effect": "Allow", "Action": ["iam:CreateServiceLinkedRole"],
         "Resource": "arn:aws:iam::123456789012:role/aws-service-role/eks-nodegroup.amazonaws.com/"
                     "AWSServiceRoleForAmazonEKSNodegroup",
         "Condition": {"StringEquals": {"iam:AWSServiceName": "eks-nodegroup.amazonaws.com"}}},
    ]


def test_every_action_of_an_access_policy_is_a_row_of_the_permission_table(example):
    rows = {action for row in CLOUD_ACTIONS["eks"].values() for action in row.actions}
    for name in ("analytics-access-policy", "ml-training-access-policy"):
        for statement in policy_of(one(example, ROLE_POLICY, name), "policy")["Statement"]:
            assert set(statement["Action"]) <= rows, statement["Sid"]


def test_a_deployment_without_ephemeral_node_pools_cannot_create_a_node_group_or_a_service_linked_role(example):
    actions = [a for s in policy_of(one(example, ROLE_POLICY, "analytics-access-policy"), "policy")["Statement"]
               for a in s["Action"]]
    assert actions == ["eks:DescribeCluster"]


def test_the_service_linked_role_follows_the_clusters_partition_and_account(gov_two_zones):
    statements = policy_of(one(gov_two_zones, ROLE_POLICY, "batch-access-policy"), "policy")["Statement"]
    (linked,) = [s for s in statements if s["Sid"] == "NodegroupServiceLinkedRole"]
    assert linked["Resource"] == ("arn:aws-us-gov:iam::123456789012:role/aws-service-role/eks-nodegroup.amazonaws.com/"
                                  "AWSServiceRoleForAmazonEKSNodegroup")


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

def test_the_objects_on_the_cluster_are_replaced_exactly_when_the_cluster_is(example):
    assert_objects_replaced_with_cluster(example, "kpo-gpu", (CLUSTER, "kpo-gpu-cluster"))


def test_program_provider_uses_the_creators_identity(example):
    (provider,) = example.of_type("pulumi:providers:kubernetes")
    kubeconfig = json.loads(provider.inputs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"] == {
        "server": "https://0123ABCD.gr7.us-east-1.eks.amazonaws.com", "certificate-authority-data": "Q0EtREFUQQ=="}
    (user,) = kubeconfig["users"]
    assert user["user"]["exec"]["command"] == "aws"
    assert user["user"]["exec"]["args"] == ["--region", "us-east-1", "eks", "get-token", "--cluster-name", "kpo-gpu"]


def test_provider_client_rate_limit_defaults_to_large_stack_values_and_follows_kube_client(example):
    (provider,) = example.of_type("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeClientSettings"]) == {"qps": 200, "burst": 400}
    run, _ = run_eks(stack_config("eks") | {"kubeClient": {"qps": 25.5, "burst": 60}})
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeClientSettings"]) == {"qps": 25.5, "burst": 60}


def test_every_kubernetes_object_goes_through_the_eks_provider(example):
    objects = [r for r in example.resources if r.typ.startswith("kubernetes:")]
    # 2 x (Namespace, Role, RoleBinding, LimitRange, 4 ResourceQuotas, ValidatingAdmissionPolicy and
    # its binding) + the task and GPU NodePools
    assert len(objects) == 22
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
        "namespace": "kpo-analytics", "connectionId": "kpo_analytics", "envVar": "AIRFLOW_CONN_KPO_ANALYTICS",
        "janitor": DEFAULT_JANITOR, "awsAccessRoleArn": "arn:aws:iam::123456789012:role/analytics-access-role"}
    assert example.secret["deployments"] is False


def test_each_deployment_entry_names_its_access_role_for_the_astro_roles_assume_role_policy(example):
    assert {name: entry["awsAccessRoleArn"] for name, entry in example.outputs["deployments"].items()} == {
        "analytics": "arn:aws:iam::123456789012:role/analytics-access-role",
        "ml-training": "arn:aws:iam::123456789012:role/ml-training-access-role"}


def test_gpu_task_output_is_public_and_matches_the_nodepools_label_and_taint(example):
    task = example.outputs["gpuTask"]
    assert example.secret["gpuTask"] is False
    assert task == {
        "nodeSelector": {"remote-kpo/gpu": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "resourceName": "nvidia.com/gpu",
        "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false", "karpenter.sh/do-not-disrupt": "true"},
        "startupTimeoutSeconds": 900,
    }
    pool = one(example, NODE_POOL, "kpo-gpu-gpu-nodepool").inputs["spec"]["template"]
    assert task["nodeSelector"].items() <= pool["metadata"]["labels"].items()
    assert [t["key"] for t in pool["spec"]["taints"]] == [t["key"] for t in task["tolerations"]]


def test_no_gpu_task_output_without_a_gpu_pool(existing_subnets):
    assert "gpuTask" not in existing_subnets.outputs


def test_node_group_role_subnets_and_ami_type_are_exported_for_ephemeral_node_pools(example):
    assert example.outputs["nodeRoleArn"] == "arn:aws:iam::123456789012:role/kpo-gpu-node-group-role"
    assert example.outputs["subnetIds"] == ["kpo-gpu-private-0-id", "kpo-gpu-private-1-id", "kpo-gpu-private-2-id"]
    assert example.outputs["amiType"] == "BOTTLEROCKET_x86_64_NVIDIA"
    assert (example.secret["nodeRoleArn"], example.secret["subnetIds"], example.secret["amiType"]) == (False, False, False)
    assert (example.secret["kubeconfigs"], example.secret["airflowConnections"], example.secret["kubeconfig"]) == (
        True, True, True)


def test_a_deployment_with_ephemeral_node_pools_is_told_the_tag_its_iam_requires_and_the_taint_to_set(example):
    entry = example.outputs["deployments"]["ml-training"]
    assert entry["nodeGroupTags"] == {"remote-kpo/deployment": "ml-training"}
    assert entry["nodeGroupNamePrefix"] == "ml-training-"
    assert entry["nodeGroupTaint"] == {"key": "remote-kpo/deployment", "value": "ml-training", "effect": "NO_SCHEDULE"}
    # The tag is the one the access policy's conditions name.
    statements = policy_of(one(example, ROLE_POLICY, "ml-training-access-policy"), "policy")["Statement"]
    (create,) = [s for s in statements if s["Sid"] == "CreateOwnNodeGroups"]
    assert create["Condition"]["StringEquals"] == {f"aws:RequestTag/{k}": v for k, v in entry["nodeGroupTags"].items()}
    assert not {"nodeGroupTags", "nodeGroupNamePrefix", "nodeGroupTaint"} & example.outputs["deployments"]["analytics"].keys()


def test_without_ephemeral_node_pools_no_node_role_or_subnets_are_exported(existing_subnets):
    assert not {"nodeRoleArn", "subnetIds", "amiType"} & existing_subnets.outputs.keys()


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


@pytest.mark.parametrize("change, message", [
    ({"systemPool": {"machineType": "m6i.large"}},
     "remote-kpo:systemPool.machineType: not used on eks: EKS Auto Mode runs cluster add-ons on its built-in system pool, which sizes itself"),
    ({"gpuPool": {"enabled": True, "accelerator": {"type": "nvidia-a10g", "count": 1}}},
     "remote-kpo:gpuPool.accelerator.type: not used on eks: machineType sets the GPU (accelerator.count is the GPUs per node)"),
])
def test_pool_keys_auto_mode_has_no_use_for_stop_before_any_resource(change, message):
    mocks = EksMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_program(stack_config("eks") | change, stack="eks", mocks=mocks)
    assert str(caught.value) == message
    assert mocks.resources == []


def test_a_task_role_of_another_account_stops_before_any_cloud_resource_naming_the_key():
    raw = stack_config("eks")
    raw["deployments"] = [*raw["deployments"][:1], {
        **raw["deployments"][1], "taskIdentity": {"awsRoleArn": "arn:aws:iam::210987654321:role/kpo-ml-task"}}]
    mocks = EksMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_program(raw, stack="eks", mocks=mocks)
    assert str(caught.value) == (
        "remote-kpo:deployments[1].taskIdentity.awsRoleArn: a role of account 210987654321, but the cluster is in "
        "account 123456789012 (the credentials running pulumi up): EKS Pod Identity associates only roles of the "
        "cluster's account")
    # Only the region's provider, which the account lookup goes through.
    assert [r.typ for r in mocks.resources] == ["pulumi:providers:aws"]


def test_a_task_role_of_the_clusters_account_is_associated():
    raw = stack_config("eks")
    raw["deployments"] = [*raw["deployments"][:1], {
        **raw["deployments"][1], "taskIdentity": {"awsRoleArn": "arn:aws:iam::123456789012:role/kpo-ml-task"}}]
    run = run_eks(raw)[0]
    (association,) = run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert association.inputs["roleArn"] == "arn:aws:iam::123456789012:role/kpo-ml-task"


def test_no_account_lookup_without_a_task_role(example_run):
    _, mocks = example_run
    assert not [c for c in mocks.calls if c.token == CALLER_IDENTITY]


@pytest.mark.parametrize("arn", [
    "arn:aws-iso:iam::123456789012:role/astro", "arn:aws-iso-b:iam::123456789012:role/astro",
    "arn:aws-iso-e:iam::123456789012:role/astro", "arn:aws-cn:iam::123456789012:role/astro"])
def test_role_arns_of_every_partition_the_region_pattern_accepts_are_accepted(arn):
    raw = {"cloud": "eks", "eks": {"region": "us-isob-east-1"}, "deployments": [{"name": "a", "identity": {"awsRoleArn": arn}}]}
    assert config.load(raw).deployments[0].identity.aws_role_arn == arn


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
    ("us-iso-east-1", "aws-iso"), ("us-isob-east-1", "aws-iso-b"), ("eu-isoe-west-1", "aws-iso-e"),
    ("us-isof-south-1", "aws-iso-f")])
def test_partition_follows_the_region(region, partition):
    assert eks.partition_of(region) == partition


def test_cluster_trust_policy_tags_sessions_and_node_trust_policy_does_not():
    assert eks.service_trust_policy("eks.amazonaws.com", tag_session=True)["Statement"][0]["Action"] == [
        "sts:AssumeRole", "sts:TagSession"]
    assert eks.service_trust_policy("ec2.amazonaws.com")["Statement"][0]["Action"] == "sts:AssumeRole"


def test_the_nodepool_manifest_is_the_one_gpu_py_builds_for_the_local_proof():
    cfg = config.load(stack_config("eks"))
    manifest = gpu.karpenter_node_pool(cfg.gpu_pool, disruption.EKS_NODE_CLASS_REF, cfg.gpu_pool.gpus_per_node)
    assert (manifest["apiVersion"], manifest["kind"]) == ("karpenter.sh/v1", "NodePool")
    assert manifest["spec"]["limits"] == {"nvidia.com/gpu": "4"}


def test_nodegroup_pattern_covers_only_this_clusters_node_groups():
    assert eks.nodegroup_arn_pattern("arn:aws-cn:eks:cn-north-1:123456789012:cluster/a-b") == (
        "arn:aws-cn:eks:cn-north-1:123456789012:nodegroup/a-b/*/*")
    assert eks.nodegroup_arn_pattern("arn:aws:eks:us-east-1:123456789012:cluster/a-b", "etl-") == (
        "arn:aws:eks:us-east-1:123456789012:nodegroup/a-b/etl-*/*")
    with pytest.raises(ValueError):
        eks.nodegroup_arn_pattern("arn:aws:iam::123456789012:role/x")
