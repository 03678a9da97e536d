"""The gke stack under Pulumi mocks: network, cluster, node pools, IAM, RBAC and outputs."""

import json
from unittest import mock

import pulumi
import pytest

import config
from components import gke
from harness import DEFAULT_JANITOR, RecordingMocks, assert_objects_replaced_with_cluster, run_program, stack_config

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
SA_MEMBER = "gcp:serviceaccount/iAMMember:IAMMember"
CUSTOM_ROLE = "gcp:projects/iAMCustomRole:IAMCustomRole"
BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"

PROJECT = "acme-data-platform"
NODE_SA = "kpo-gpu-prod-nodes@acme-data-platform.iam.gserviceaccount.com"
ANALYTICS_SA = "astro-analytics@acme-astro.iam.gserviceaccount.com"
TRAINING_SA = "astro-ml-training@acme-astro.iam.gserviceaccount.com"
ENDPOINT_IP = "203.0.113.50"
CA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"
# Importing pulumi_gcp.compute announces its deprecated aliases; not this project's concern.
pytestmark = pytest.mark.filterwarnings(r"ignore:gcp\.compute\.\w+ has been deprecated:DeprecationWarning")

GKE_EXEC_USER = {"exec": {
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "command": "gke-gcloud-auth-plugin",
    "args": [],
    "provideClusterInfo": True,
    "interactiveMode": "Never",
}}


class GkeMocks(RecordingMocks):
    """Adds what Google Cloud computes: cluster endpoint and CA, emails, resource names."""

    def new_resource(self, args):
        resource_id, outputs = super().new_resource(args)
        inputs = args.inputs
        if args.typ == CLUSTER:
            outputs["endpoint"] = ENDPOINT_IP
            outputs["masterAuth"] = {**inputs.get("masterAuth", {}), "clusterCaCertificate": CA}
        elif args.typ == "gcp:serviceaccount/account:Account":
            email = f"{inputs['accountId']}@{inputs['project']}.iam.gserviceaccount.com"
            outputs.update(email=email, name=f"projects/{inputs['project']}/serviceAccounts/{email}")
        elif args.typ == CUSTOM_ROLE:
            outputs["name"] = f"projects/{inputs['project']}/roles/{inputs['roleId']}"
        elif args.typ == "gcp:compute/network:Network":
            resource_id = f"projects/{inputs['project']}/global/networks/{inputs['name']}"
        elif args.typ == "gcp:compute/subnetwork:Subnetwork":
            resource_id = f"projects/{inputs['project']}/regions/{inputs['region']}/subnetworks/{inputs['name']}"
        return [resource_id, outputs]


def run_gke(raw: dict, stack: str = "gke"):
    return run_program(raw, stack=stack, mocks=GkeMocks())


@pytest.fixture(scope="module")
def example():
    return run_gke(stack_config("gke"))


# An existing network, a zonal cluster with public nodes, no GPU pool, no authorized networks,
# deletion protection off, no Deployment managing node pools.
PLAIN = {
    "cloud": "gke",
    "gke": {"project": "acme-sandbox", "location": "europe-west4-b", "network": "shared-vpc",
            "subnetwork": "gke-nodes", "privateNodes": False, "deletionProtection": False,
            "releaseChannel": "STABLE"},
    "deployments": [{"name": "etl", "identity": {"gcpServiceAccount": "etl@acme-astro.iam.gserviceaccount.com"}}],
}


@pytest.fixture(scope="module")
def plain():
    return run_gke(PLAIN, stack="sandbox")


def members_of(run, email: str) -> list:
    return [r for r in run.resources
            if r.typ in (PROJECT_MEMBER, SA_MEMBER) and r.inputs["member"] == f"serviceAccount:{email}"]


# ---- the example stack file ------------------------------------------------------------

def test_example_stack_file_validates_with_a_t4_pool_and_one_node_pool_managing_deployment():
    cfg = config.load(stack_config("gke"))
    assert (cfg.cloud, cfg.gke.project, cfg.gke.location) == ("gke", PROJECT, "us-central1")
    assert cfg.gpu_pool.enabled and cfg.gpu_pool.accelerator.type == "nvidia-tesla-t4"
    assert cfg.gke.master_authorized_networks == ["203.0.113.10/32", "203.0.113.11/32", "198.51.100.0/28"]
    assert [(d.name, d.ephemeral_node_pools) for d in cfg.deployments] == [
        ("analytics", False), ("ml-training", True)]


# ---- network ------------------------------------------------------------------------------

def test_new_vpc_has_one_vpc_native_subnetwork_with_pod_and_service_ranges(example):
    (network,) = example.of_type("gcp:compute/network:Network")
    assert network.inputs["autoCreateSubnetworks"] is False
    (subnetwork,) = example.of_type("gcp:compute/subnetwork:Subnetwork")
    assert subnetwork.inputs["region"] == "us-central1"
    assert subnetwork.inputs["network"] == "projects/acme-data-platform/global/networks/kpo-gpu-prod"
    assert subnetwork.inputs["ipCidrRange"] == "10.0.0.0/20"
    assert subnetwork.inputs["secondaryIpRanges"] == [
        {"rangeName": "pods", "ipCidrRange": "10.4.0.0/14"},
        {"rangeName": "services", "ipCidrRange": "10.8.0.0/20"},
    ]
    assert subnetwork.inputs["privateIpGoogleAccess"] is True


def test_private_nodes_get_a_cloud_router_and_nat_for_the_subnetwork(example):
    (router,) = example.of_type("gcp:compute/router:Router")
    assert router.inputs["network"] == "projects/acme-data-platform/global/networks/kpo-gpu-prod"
    (nat,) = example.of_type("gcp:compute/routerNat:RouterNat")
    assert nat.inputs["router"] == router.inputs["name"]
    assert nat.inputs["region"] == "us-central1"
    assert nat.inputs["subnetworks"] == [{
        "name": "projects/acme-data-platform/regions/us-central1/subnetworks/kpo-gpu-prod-nodes",
        "sourceIpRangesToNats": ["ALL_IP_RANGES"]}]


def test_cluster_runs_in_the_new_subnetwork_on_its_secondary_ranges(example):
    (cluster,) = example.of_type(CLUSTER)
    assert cluster.inputs["network"] == "projects/acme-data-platform/global/networks/kpo-gpu-prod"
    assert cluster.inputs["subnetwork"] == "projects/acme-data-platform/regions/us-central1/subnetworks/kpo-gpu-prod-nodes"
    assert cluster.inputs["networkingMode"] == "VPC_NATIVE"
    assert cluster.inputs["ipAllocationPolicy"] == {
        "clusterSecondaryRangeName": "pods", "servicesSecondaryRangeName": "services"}


def test_a_given_network_is_used_as_is_and_nothing_network_is_created(plain):
    (cluster,) = plain.of_type(CLUSTER)
    assert (cluster.inputs["network"], cluster.inputs["subnetwork"]) == ("shared-vpc", "gke-nodes")
    assert "ipAllocationPolicy" not in cluster.inputs
    assert not [r for r in plain.resources if r.typ.startswith("gcp:compute/")]


def test_a_new_vpc_keeps_its_nat_with_public_nodes_so_nodes_left_private_still_pull_images():
    # Turning privateNodes off changes GKE's default for pools; nodes that stay private need NAT.
    raw = PLAIN | {"gke": {"project": "acme-sandbox", "location": "europe-west4", "privateNodes": False}}
    run = run_gke(raw, stack="sandbox")
    (subnetwork,) = run.of_type("gcp:compute/subnetwork:Subnetwork")
    (nat,) = run.of_type("gcp:compute/routerNat:RouterNat")
    assert [s["name"] for s in nat.inputs["subnetworks"]] == [
        f"projects/acme-sandbox/regions/europe-west4/subnetworks/{subnetwork.inputs['name']}"]


# ---- cluster ------------------------------------------------------------------------------

def test_cluster_is_regional_with_default_pool_removed_release_channel_and_workload_identity(example):
    (cluster,) = example.of_type(CLUSTER)
    assert cluster.inputs["name"] == "kpo-gpu-prod"
    assert cluster.inputs["project"] == PROJECT
    assert cluster.inputs["location"] == "us-central1"
    assert cluster.inputs["removeDefaultNodePool"] is True
    assert cluster.inputs["releaseChannel"] == {"channel": "REGULAR"}
    assert cluster.inputs["workloadIdentityConfig"] == {"workloadPool": "acme-data-platform.svc.id.goog"}


def test_nodes_are_private_and_the_public_endpoint_admits_only_authorized_networks(example):
    (cluster,) = example.of_type(CLUSTER)
    # No control-plane range: GKE's Private Service Connect mode, nothing to collide with.
    assert cluster.inputs["privateClusterConfig"] == {"enablePrivateNodes": True, "enablePrivateEndpoint": False}
    assert cluster.inputs["masterAuthorizedNetworksConfig"] == {
        "cidrBlocks": [
            {"cidrBlock": "203.0.113.10/32", "displayName": "authorized-0"},
            {"cidrBlock": "203.0.113.11/32", "displayName": "authorized-1"},
            {"cidrBlock": "198.51.100.0/28", "displayName": "authorized-2"},
        ],
        "gcpPublicCidrsAccessEnabled": False,
    }


def test_a_configured_control_plane_range_selects_the_vpc_peering_mode():
    raw = stack_config("gke") | {"gke": stack_config("gke")["gke"] | {"controlPlaneCidr": "10.200.0.16/28"}}
    (cluster,) = run_gke(raw).of_type(CLUSTER)
    assert cluster.inputs["privateClusterConfig"] == {
        "enablePrivateNodes": True, "enablePrivateEndpoint": False, "masterIpv4CidrBlock": "10.200.0.16/28"}


def test_cluster_has_shielded_nodes_deletion_protection_and_no_client_certificate(example):
    (cluster,) = example.of_type(CLUSTER)
    assert cluster.inputs["enableShieldedNodes"] is True
    assert cluster.inputs["deletionProtection"] is True
    assert cluster.inputs["enableLegacyAbac"] is False
    assert cluster.inputs["masterAuth"] == {"clientCertificateConfig": {"issueClientCertificate": False}}


def test_gke_upgrades_wait_for_a_weekend_window_by_default(example):
    (cluster,) = example.of_type(CLUSTER)
    # 2025-01-04 is a Saturday: all of every Saturday and Sunday, UTC.
    assert cluster.inputs["maintenancePolicy"] == {
        "recurringWindow": {"startTime": "2025-01-04T00:00:00Z", "endTime": "2025-01-05T00:00:00Z",
                            "recurrence": "FREQ=WEEKLY;BYDAY=SA,SU"},
        "maintenanceExclusions": []}


def test_a_configured_window_and_exclusion_reach_the_cluster():
    raw = stack_config("gke") | {"gke": stack_config("gke")["gke"] | {
        "maintenanceWindow": {"start": "2025-01-06T22:00:00Z", "end": "2025-01-07T04:00:00Z",
                              "recurrence": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH"},
        "maintenanceExclusions": [{"name": "quarter-end", "start": "2025-03-25T00:00:00Z",
                                   "end": "2025-04-02T00:00:00Z"}]}}
    (cluster,) = run_gke(raw).of_type(CLUSTER)
    assert cluster.inputs["maintenancePolicy"] == {
        "recurringWindow": {"startTime": "2025-01-06T22:00:00Z", "endTime": "2025-01-07T04:00:00Z",
                            "recurrence": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH"},
        "maintenanceExclusions": [{"exclusionName": "quarter-end", "startTime": "2025-03-25T00:00:00Z",
                                   "endTime": "2025-04-02T00:00:00Z",
                                   "exclusionOptions": {"scope": "NO_MINOR_OR_NODE_UPGRADES"}}]}


def test_zonal_public_cluster_without_protection_follows_its_config(plain):
    (cluster,) = plain.of_type(CLUSTER)
    assert cluster.inputs["location"] == "europe-west4-b"
    assert cluster.inputs["releaseChannel"] == {"channel": "STABLE"}
    assert cluster.inputs["deletionProtection"] is False
    assert cluster.inputs["workloadIdentityConfig"] == {"workloadPool": "acme-sandbox.svc.id.goog"}


def test_public_nodes_and_an_open_endpoint_are_sent_explicitly_so_turning_them_off_takes_effect(plain):
    # Both blocks are Optional+Computed: an omitted block would keep what the cluster has.
    (cluster,) = plain.of_type(CLUSTER)
    assert cluster.inputs["privateClusterConfig"] == {"enablePrivateNodes": False, "enablePrivateEndpoint": False}
    assert cluster.inputs["masterAuthorizedNetworksConfig"] == {
        "cidrBlocks": [{"cidrBlock": "0.0.0.0/0", "displayName": "any-address"}],
        "gcpPublicCidrsAccessEnabled": False,
    }


def test_deletion_protection_also_protects_the_cluster_in_pulumi_so_destroy_stops_first(example, plain):
    assert example.options["kpo-gpu-prod-cluster"].protect is True
    assert plain.options["remote-kpo-sandbox-cluster"].protect is False
    # Nothing else is protected: removing a Deployment must still delete its objects.
    assert [name for name, opts in example.options.items() if opts is not None and opts.protect] == [
        "kpo-gpu-prod-cluster"]


def test_even_the_removed_default_pool_runs_as_the_node_service_account(example):
    (cluster,) = example.of_type(CLUSTER)
    assert cluster.inputs["nodeConfig"]["serviceAccount"] == NODE_SA
    assert cluster.inputs["nodeConfig"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}


# ---- node pools ---------------------------------------------------------------------------

def pools(run) -> dict:
    return {r.name: r.inputs for r in run.of_type(NODE_POOL)}


def test_system_pool_autoscales_within_the_configured_bounds(example):
    system = pools(example)["system"]
    assert system["cluster"] == "kpo-gpu-prod"
    assert system["location"] == "us-central1"
    assert system["autoscaling"] == {"totalMinNodeCount": 1, "totalMaxNodeCount": 3, "locationPolicy": "BALANCED"}
    assert system["nodeConfig"]["machineType"] == "e2-standard-4"
    assert "taints" not in system["nodeConfig"] and "guestAccelerators" not in system["nodeConfig"]
    # Autonamed by Pulumi, so a replacement pool is created before the old one is deleted.
    assert "name" not in system


@pytest.mark.parametrize("pool", ["system", "gpu"])
def test_every_pool_runs_as_the_node_service_account_with_the_gke_metadata_server(example, pool):
    node = pools(example)[pool]["nodeConfig"]
    assert node["serviceAccount"] == NODE_SA
    assert node["oauthScopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    assert node["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
    assert node["shieldedInstanceConfig"] == {"enableSecureBoot": True, "enableIntegrityMonitoring": True}
    assert node["metadata"] == {"disable-legacy-endpoints": "true"}
    assert pools(example)[pool]["management"] == {"autoRepair": True, "autoUpgrade": True}


def test_gpu_pool_scales_from_zero_with_t4_drivers_taint_label_and_spot(example):
    gpu = pools(example)["gpu"]
    assert gpu["autoscaling"] == {"totalMinNodeCount": 0, "totalMaxNodeCount": 4, "locationPolicy": "ANY"}
    assert gpu["initialNodeCount"] == 0
    node = gpu["nodeConfig"]
    assert node["machineType"] == "n1-standard-8"
    assert node["guestAccelerators"] == [{
        "type": "nvidia-tesla-t4", "count": 1, "gpuDriverInstallationConfig": {"gpuDriverVersion": "DEFAULT"}}]
    assert node["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert node["labels"] == {"remote-kpo/gpu": "true"}
    assert node["spot"] is True


@pytest.mark.parametrize("location, zones, min_nodes, max_nodes, per_zone", [
    ("europe-west4-b", None, 1, 2, 1),        # zonal: one zone
    ("us-central1", None, 1, 2, 0),           # three zones would start 3 > maxNodes 2
    ("us-central1", None, 1, 3, 1),
    ("us-central1", None, 4, 9, 2),           # enough for minNodes: 6 within 9
    ("us-central1", None, 0, 4, 0),           # scale to zero starts at zero
    ("us-central1", ["us-central1-a", "us-central1-f"], 1, 2, 1),
    ("us-central1", ["us-central1-a", "us-central1-f"], 2, 3, 1),
])
def test_a_pool_starts_within_max_nodes_across_all_its_zones(location, zones, min_nodes, max_nodes, per_zone):
    pool = config.GpuPool.model_validate({"enabled": True, "minNodes": min_nodes, "maxNodes": max_nodes})
    count = gke.initial_node_count(pool, gke.pool_zone_count(location, zones))
    assert count == per_zone
    assert count * gke.pool_zone_count(location, zones) <= max_nodes


def test_a_regional_gpu_pool_whose_zones_would_pass_max_nodes_starts_empty():
    raw = stack_config("gke")
    raw["gpuPool"] = raw["gpuPool"] | {"minNodes": 1, "maxNodes": 2}
    assert pools(run_gke(raw))["gpu"]["initialNodeCount"] == 0


def test_gpu_pool_min_and_count_come_from_config():
    raw = PLAIN | {"gpuPool": {"enabled": True, "accelerator": {"type": "nvidia-l4", "count": 2},
                               "machineType": "g2-standard-24", "minNodes": 1, "maxNodes": 2}}
    gpu = pools(run_gke(raw, stack="sandbox"))["gpu"]
    assert gpu["autoscaling"]["totalMinNodeCount"] == 1 and gpu["autoscaling"]["totalMaxNodeCount"] == 2
    assert gpu["initialNodeCount"] == 1
    assert gpu["nodeConfig"]["guestAccelerators"][0]["type"] == "nvidia-l4"
    assert gpu["nodeConfig"]["guestAccelerators"][0]["count"] == 2
    assert gpu["nodeConfig"]["spot"] is False


def test_without_gpu_pool_only_the_system_pool_exists(plain):
    assert list(pools(plain)) == ["system"]


@pytest.mark.parametrize("pool", ["system", "gpu"])
def test_changing_a_pools_initial_count_never_replaces_it(example, pool):
    # minNodes across zero changes initialNodeCount, a create-only property of a GKE pool.
    assert example.options[pool].ignore_changes == ["initialNodeCount"]


def test_gpu_pool_runs_in_the_cluster_zones_unless_zones_are_given(example):
    assert "nodeLocations" not in pools(example)["gpu"]
    assert "nodeLocations" not in pools(example)["system"]


def test_gpu_pool_zones_pin_the_pool_to_zones_offering_the_accelerator():
    raw = stack_config("gke")
    raw["gpuPool"] = raw["gpuPool"] | {"zones": ["us-central1-a", "us-central1-f"]}
    run = run_gke(raw)
    assert pools(run)["gpu"]["nodeLocations"] == ["us-central1-a", "us-central1-f"]
    assert "nodeLocations" not in pools(run)["system"]


def test_gpu_zones_outside_the_clusters_region_stop_before_any_resource():
    raw = stack_config("gke")
    raw["gpuPool"] = raw["gpuPool"] | {"zones": ["europe-west4-a"]}
    mocks = GkeMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_program(raw, stack="gke", mocks=mocks)
    assert str(caught.value) == "remote-kpo:gpuPool.zones[0]: europe-west4-a is not in the cluster's region us-central1"
    assert mocks.resources == []


def test_gpu_task_output_selects_and_tolerates_the_gpu_pool(example, plain):
    task = example.outputs["gpuTask"]
    node = pools(example)["gpu"]["nodeConfig"]
    assert task["nodeSelector"] == node["labels"] == {"remote-kpo/gpu": "true"}
    assert task["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert [t["key"] for t in node["taints"]] == ["nvidia.com/gpu"]
    assert (task["resourceName"], task["startupTimeoutSeconds"]) == ("nvidia.com/gpu", 900)
    assert "gpuTask" not in plain.outputs


# ---- IAM ----------------------------------------------------------------------------------

def test_node_service_account_is_dedicated_and_has_only_the_node_roles(example):
    (account,) = example.of_type("gcp:serviceaccount/account:Account")
    assert (account.inputs["accountId"], account.inputs["project"]) == ("kpo-gpu-prod-nodes", PROJECT)
    granted = sorted((m.inputs["project"], m.inputs["role"]) for m in members_of(example, NODE_SA))
    assert granted == [(PROJECT, "roles/artifactregistry.reader"),
                       (PROJECT, "roles/container.defaultNodeServiceAccount")]


def test_custom_roles_hold_exactly_the_permission_table_actions(example):
    roles = {r.inputs["roleId"]: r.inputs["permissions"] for r in example.of_type(CUSTOM_ROLE)}
    assert roles == {
        "remoteKpo_kpo_gpu_prod_auth": ["container.clusters.get"],
        "remoteKpo_kpo_gpu_prod_nodePools": ["container.clusters.get", "container.clusters.update"],
        "remoteKpo_kpo_gpu_prod_nodePoolOps": ["container.operations.get"],
        "remoteKpo_kpo_gpu_prod_actAsNodes": ["iam.serviceAccounts.actAs"],
    }


def test_a_deployment_may_only_authenticate_in_the_project(example):
    (binding,) = members_of(example, ANALYTICS_SA)
    assert binding.typ == PROJECT_MEMBER
    assert binding.inputs == {"project": PROJECT, "role": "projects/acme-data-platform/roles/remoteKpo_kpo_gpu_prod_auth",
                              "member": f"serviceAccount:{ANALYTICS_SA}"}


def test_a_node_pool_managing_deployment_acts_as_the_node_account_only_on_that_account(example):
    bindings = {(b.typ, b.inputs["role"]): b.inputs for b in members_of(example, TRAINING_SA)}
    assert set(bindings) == {
        (PROJECT_MEMBER, "projects/acme-data-platform/roles/remoteKpo_kpo_gpu_prod_auth"),
        (PROJECT_MEMBER, "projects/acme-data-platform/roles/remoteKpo_kpo_gpu_prod_nodePools"),
        (PROJECT_MEMBER, "projects/acme-data-platform/roles/remoteKpo_kpo_gpu_prod_nodePoolOps"),
        (SA_MEMBER, "projects/acme-data-platform/roles/remoteKpo_kpo_gpu_prod_actAsNodes"),
    }
    act_as = bindings[(SA_MEMBER, "projects/acme-data-platform/roles/remoteKpo_kpo_gpu_prod_actAsNodes")]
    assert act_as["serviceAccountId"] == f"projects/acme-data-platform/serviceAccounts/{NODE_SA}"


def test_node_pool_rights_hold_only_on_this_cluster_by_an_iam_condition(example):
    bindings = {b.inputs["role"].rsplit("_", 1)[1]: b.inputs for b in members_of(example, TRAINING_SA)}
    regional = "projects/acme-data-platform/locations/us-central1/clusters/kpo-gpu-prod"
    zonal = "projects/acme-data-platform/zones/us-central1/clusters/kpo-gpu-prod"
    assert bindings["nodePools"]["condition"]["expression"] == (
        f'resource.name == "{regional}" || resource.name.startsWith("{regional}/") || '
        f'resource.name == "{zonal}" || resource.name.startsWith("{zonal}/")')
    # Authenticating and reading operations (not named below the cluster) are unconditioned.
    assert "condition" not in bindings["auth"] and "condition" not in bindings["nodePoolOps"]


@pytest.mark.parametrize("resource_name, allowed", [
    ("projects/p/locations/europe-west4-b/clusters/kpo", True),
    ("projects/p/zones/europe-west4-b/clusters/kpo", True),
    ("projects/p/locations/europe-west4-b/clusters/kpo/nodePools/gpu-run-42", True),
    ("projects/p/locations/europe-west4-b/clusters/kpo-2", False),
    ("projects/p/locations/europe-west4-b/clusters/kpo-2/nodePools/gpu", False),
    ("projects/p/locations/europe-west4/clusters/kpo", False),
    ("projects/other/locations/europe-west4-b/clusters/kpo", False),
])
def test_the_cluster_condition_admits_this_cluster_and_its_node_pools_only(resource_name, allowed):
    expression = gke.cluster_only_condition("p", "europe-west4-b", "kpo")["expression"]
    assert evaluate_name_condition(expression, resource_name) is allowed


def evaluate_name_condition(expression: str, resource_name: str) -> bool:
    """The condition's CEL, which uses only ==, startsWith and ||, evaluated in Python."""
    terms = expression.split(" || ")
    for term in terms:
        if term.startswith("resource.name == "):
            if resource_name == json.loads(term.removeprefix("resource.name == ")):
                return True
        elif term.startswith("resource.name.startsWith("):
            if resource_name.startswith(json.loads(term.removeprefix("resource.name.startsWith(")[:-1])):
                return True
        else:
            raise AssertionError(f"unexpected term {term}")
    return False


def test_no_iam_binding_outside_the_node_roles_and_the_stacks_custom_roles(example):
    custom = {f"projects/{PROJECT}/roles/{r.inputs['roleId']}" for r in example.of_type(CUSTOM_ROLE)}
    node_roles = {"roles/artifactregistry.reader", "roles/container.defaultNodeServiceAccount"}
    for binding in example.of_type(PROJECT_MEMBER) + example.of_type(SA_MEMBER):
        if binding.inputs["member"] == f"serviceAccount:{NODE_SA}":
            assert binding.inputs["role"] in node_roles
        else:
            assert binding.inputs["role"] in custom, binding.name
    assert len(example.of_type(PROJECT_MEMBER) + example.of_type(SA_MEMBER)) == 7


def test_no_iam_role_grants_pod_rights(example):
    permissions = [p for r in example.of_type(CUSTOM_ROLE) for p in r.inputs["permissions"]]
    assert permissions and not [p for p in permissions if p.startswith("container.pods")]


def test_node_pool_roles_exist_only_when_a_deployment_manages_node_pools(plain):
    assert [r.inputs["roleId"] for r in plain.of_type(CUSTOM_ROLE)] == ["remoteKpo_remote_kpo_sandbox_auth"]
    assert plain.of_type(SA_MEMBER) == []


# ---- Kubernetes ---------------------------------------------------------------------------

def test_rolebinding_names_the_service_account_email_as_a_user(example):
    subjects = {b.inputs["metadata"]["namespace"]: b.inputs["subjects"] for b in example.of_type(BINDING)}
    assert subjects == {
        "kpo-analytics": [{"kind": "User", "name": ANALYTICS_SA, "apiGroup": "rbac.authorization.k8s.io"}],
        "kpo-ml-training": [{"kind": "User", "name": TRAINING_SA, "apiGroup": "rbac.authorization.k8s.io"}],
    }


def test_namespace_roles_carry_pods_exec_only_for_xcom(example):
    rules = {r.inputs["metadata"]["namespace"]: [rule["resources"] for rule in r.inputs["rules"]]
             for r in example.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")}
    assert rules == {"kpo-analytics": [["pods"], ["pods/log"], ["events"], ["resourcequotas"], ["pods/exec"]],
                     "kpo-ml-training": [["pods"], ["pods/log"], ["events"], ["resourcequotas"]]}
    assert not [r for r in example.resources if "ClusterRole" in r.typ]


def test_the_objects_on_the_cluster_are_replaced_exactly_when_the_cluster_is(example):
    assert_objects_replaced_with_cluster(example, "kpo-gpu-prod", (CLUSTER, "kpo-gpu-prod-cluster"))


def test_provider_reaches_the_new_cluster_through_the_exec_plugin(example):
    (provider,) = example.of_type("pulumi:providers:kubernetes")
    doc = json.loads(provider.inputs["kubeconfig"])
    assert doc["clusters"] == [{"name": "kpo-gpu-prod", "cluster": {
        "server": f"https://{ENDPOINT_IP}", "certificate-authority-data": CA}}]
    assert doc["users"][0]["user"] == GKE_EXEC_USER


def test_gke_login_adc_makes_the_programs_plugin_use_application_default_credentials_only():
    run = run_gke(PLAIN | {"gke": PLAIN["gke"] | {"login": "adc"}}, stack="sandbox")
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    user = json.loads(provider.inputs["kubeconfig"])["users"][0]["user"]
    assert user == {"exec": {**GKE_EXEC_USER["exec"], "args": ["--use_application_default_credentials"]}}
    # Exported kubeconfigs run as the Astro Deployment's own identity, as before.
    assert json.loads(run.outputs["kubeconfig"])["users"][0]["user"] == GKE_EXEC_USER


def test_provider_client_rate_limit_defaults_to_large_stack_values_and_follows_kube_client(example):
    (provider,) = example.of_type("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeClientSettings"]) == {"qps": 200, "burst": 400}
    run = run_gke(stack_config("gke") | {"kubeClient": {"qps": 25.5, "burst": 60}})
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeClientSettings"]) == {"qps": 25.5, "burst": 60}


def test_every_kubernetes_object_goes_through_the_gke_provider(example):
    objects = [r for r in example.resources if r.typ.startswith("kubernetes:")]
    # 2 x (Namespace, Role, RoleBinding, LimitRange, 4 ResourceQuotas, ValidatingAdmissionPolicy and
    # its binding)
    assert len(objects) == 20
    assert {r.provider.rsplit("$", 1)[-1] for r in objects} == {
        "pulumi:providers:kubernetes::gke-cluster::gke-cluster-id"}


# ---- outputs ------------------------------------------------------------------------------

def test_outputs_describe_the_cluster_and_each_deployment(example):
    assert example.outputs["cloud"] == "gke"
    assert example.outputs["clusterName"] == "kpo-gpu-prod"
    assert example.outputs["clusterEndpoint"] == f"https://{ENDPOINT_IP}"
    assert example.outputs["clusterCaCertificate"] == CA
    assert example.outputs["deployments"] == {
        "analytics": {"namespace": "kpo-analytics", "connectionId": "kpo_analytics",
                      "envVar": "AIRFLOW_CONN_KPO_ANALYTICS", "janitor": DEFAULT_JANITOR},
        "ml-training": {"namespace": "kpo-ml-training", "connectionId": "kpo_ml_training",
                        "envVar": "AIRFLOW_CONN_KPO_ML_TRAINING", "janitor": DEFAULT_JANITOR},
    }
    assert example.secret == {
        "cloud": False, "clusterName": False, "clusterEndpoint": False, "clusterCaCertificate": False,
        "deployments": False, "dockerfile": False, "gpuTask": False, "task": False,
        "nodeServiceAccount": False, "project": False, "location": False,
        "kubeconfigs": True, "airflowConnections": True, "kubeconfig": True,
    }


def test_a_node_pool_managing_deployment_gets_what_a_dags_create_needs(example, plain):
    # The one account it may actAs (else GKE picks the Compute Engine default account).
    (account,) = example.of_type("gcp:serviceaccount/account:Account")
    assert example.outputs["nodeServiceAccount"] == NODE_SA == (
        f"{account.inputs['accountId']}@{account.inputs['project']}.iam.gserviceaccount.com")
    (cluster,) = example.of_type(CLUSTER)
    assert (example.outputs["project"], example.outputs["location"], example.outputs["clusterName"]) == (
        cluster.inputs["project"], cluster.inputs["location"], cluster.inputs["name"])
    assert not {"nodeServiceAccount", "project", "location"} & set(plain.outputs)


@pytest.mark.parametrize("name, namespace", [("analytics", "kpo-analytics"), ("ml-training", "kpo-ml-training")])
def test_exported_kubeconfig_has_the_seed_001_exec_shape(example, name, namespace):
    doc = json.loads(example.outputs["kubeconfigs"][name])
    assert doc["users"] == [{"name": f"kpo-gpu-prod-{name}", "user": GKE_EXEC_USER}]
    assert doc["clusters"] == [{"name": "kpo-gpu-prod", "cluster": {
        "server": f"https://{ENDPOINT_IP}", "certificate-authority-data": CA}}]
    assert doc["contexts"] == [{"name": "kpo-gpu-prod", "context": {
        "cluster": "kpo-gpu-prod", "user": f"kpo-gpu-prod-{name}", "namespace": namespace}}]
    assert doc["current-context"] == "kpo-gpu-prod"
    connection = json.loads(example.outputs["airflowConnections"][name])
    assert connection == {"conn_type": "kubernetes",
                          "extra": {"kube_config": doc, "namespace": namespace, "in_cluster": False}}


def test_first_kubeconfig_and_dockerfile_for_the_auth_plugin(example):
    assert example.outputs["kubeconfig"] == example.outputs["kubeconfigs"]["analytics"]
    dockerfile = example.outputs["dockerfile"]
    assert "apt-get install -y google-cloud-cli google-cloud-cli-gke-gcloud-auth-plugin" in dockerfile
    assert dockerfile.startswith("USER root\n") and dockerfile.endswith("USER astro\n")


# ---- warnings -----------------------------------------------------------------------------

def warnings_of(raw: dict, stack: str) -> list[str]:
    with mock.patch.object(pulumi.log, "warn") as warn:
        run_gke(raw, stack=stack)
    return [call.args[0] for call in warn.call_args_list]


def test_an_endpoint_open_to_any_address_is_warned_about_and_an_authorized_one_is_not():
    assert warnings_of(PLAIN, "sandbox") == [
        "remote-kpo:gke.masterAuthorizedNetworks is empty: the cluster's public endpoint accepts "
        "connections from any address (requests still need Google credentials)"]
    assert not [w for w in warnings_of(stack_config("gke"), "gke") if "masterAuthorizedNetworks" in w]


def test_a_node_pool_managing_deployment_is_warned_that_it_may_change_the_whole_cluster():
    assert warnings_of(stack_config("gke"), "gke") == [
        "remote-kpo:deployments[1].ephemeralNodePools: on GKE this grants ml-training "
        "container.clusters.update on the whole cluster: besides creating and deleting its own node pools "
        "it may change any setting (authorized networks, legacy ABAC, release channel) and resize or delete "
        "the system and GPU pools and other Deployments' pools (README, Security)"]


# ---- bad input and names ----------------------------------------------------------------

def test_bad_gke_config_stops_before_any_resource_is_registered():
    mocks = GkeMocks()
    raw = stack_config("gke") | {"gpuPool": {"enabled": True, "minNodes": 3, "maxNodes": 1,
                                             "accelerator": {"type": "nvidia-tesla-t4"}}}
    with pytest.raises(pulumi.RunError) as caught:
        run_program(raw, stack="gke", mocks=mocks)
    assert str(caught.value) == "remote-kpo:gpuPool.minNodes: 3 is above maxNodes 1"
    assert mocks.resources == []


@pytest.mark.parametrize("location, region", [
    ("us-central1", "us-central1"), ("europe-west4-b", "europe-west4"), ("europe-west10", "europe-west10"),
    ("europe-west12-c", "europe-west12"), ("us-east5", "us-east5"), ("me-central2-a", "me-central2"),
    ("northamerica-northeast2", "northamerica-northeast2"), ("europe-west10-a", "europe-west10"),
])
def test_config_accepts_current_region_and_zone_shapes_and_region_of_agrees(location, region):
    assert config.load({"cloud": "gke", "gke": {"project": "acme-data", "location": location},
                        "deployments": [{"name": "a", "identity": {"gcpServiceAccount": ANALYTICS_SA}}]}).gke.location == location
    assert gke.region_of(location) == region


def test_generated_ids_fit_google_limits_for_the_longest_cluster_name():
    longest = "a" * 40
    assert gke.node_service_account_id("kpo-gpu-prod") == "kpo-gpu-prod-nodes"
    account_id = gke.node_service_account_id(longest)
    assert 6 <= len(account_id) <= 30 and account_id.endswith("-nodes")
    assert gke.node_service_account_id(longest) != gke.node_service_account_id("a" * 39 + "b")
    assert len(gke.custom_role_id(longest, "actAsNodes")) <= 64


# ---- task identity ------------------------------------------------------------------------

class OtherPoolMocks(GkeMocks):
    """A cluster whose reported workload pool is not the one the program asked for."""

    def new_resource(self, args):
        resource_id, outputs = super().new_resource(args)
        if args.typ == CLUSTER:
            outputs["workloadIdentityConfig"] = {"workloadPool": "reported-pool.svc.id.goog"}
        return [resource_id, outputs]


def test_the_task_identity_member_comes_from_the_created_clusters_workload_pool():
    # A plain string would let IAM see the member before the pool exists (a project's first
    # Workload Identity cluster): "Identity Pool does not exist".
    raw = PLAIN | {"deployments": [PLAIN["deployments"][0] | {
        "taskIdentity": {"gcpServiceAccount": "etl-tasks@acme-data.iam.gserviceaccount.com"}}]}
    run = run_program(raw, stack="sandbox", mocks=OtherPoolMocks())
    (binding,) = [r for r in run.of_type(SA_MEMBER) if r.inputs["role"] == "roles/iam.workloadIdentityUser"]
    assert binding.inputs["member"] == "serviceAccount:reported-pool.svc.id.goog[kpo-etl/remote-kpo-task]"


def test_task_pod_objects_below_a_deployment_are_replaced_with_the_cluster_too():
    raw = PLAIN | {"deployments": [PLAIN["deployments"][0] | {
        "taskIdentity": {"gcpServiceAccount": "etl-tasks@acme-data.iam.gserviceaccount.com"}}]}
    run = run_gke(raw, stack="sandbox")
    (task_account,) = [r for r in run.of_type("kubernetes:core/v1:ServiceAccount")
                       if r.inputs["metadata"]["name"] == "remote-kpo-task"]
    opts = run.registered_options[task_account.name]
    assert [(r._type, r._name) for r in opts.replace_with] == [(CLUSTER, "remote-kpo-sandbox-cluster")]
    assert opts.delete_before_replace is True
    # Cloud resources beside them are not.
    for binding in run.of_type(SA_MEMBER):
        assert not run.registered_options[binding.name].replace_with
