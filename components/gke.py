"""GKE: the network, the cluster with its system and GPU node pools, the node service account,
and the IAM each Astro Deployment's Google service account gets (seeds 000 and 001).

Pod rights never come from IAM here: a Deployment's service account may only authenticate
(and, with ephemeralNodePools, manage node pools); what it may do in its namespace is RBAC
(components/access.py).
"""

import re
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp.container import (
    ClusterIpAllocationPolicyArgsDict,
    ClusterMaintenancePolicyArgsDict,
    ClusterMasterAuthorizedNetworksConfigArgsDict,
    ClusterPrivateClusterConfigArgsDict,
    NodePoolAutoscalingArgsDict,
    NodePoolNodeConfigArgsDict,
)
from pulumi_gcp.container.outputs import ClusterWorkloadIdentityConfig
from pulumi_gcp.projects import IAMMemberConditionArgsDict

from components import gpu
from components import kubeconfig as kc
from components import names
from components.permissions import CLOUD_ACTIONS
from config import GCP_REGION, Deployment, GkeConfig, GpuPool, NodePool, present

# A new VPC's subnetwork: nodes, and the secondary ranges that make the cluster VPC-native.
NODES_CIDR = "10.0.0.0/20"
PODS_RANGE = "pods"
PODS_CIDR = "10.4.0.0/14"
SERVICES_RANGE = "services"
SERVICES_CIDR = "10.8.0.0/20"

# Roles of the node service account. roles/container.defaultNodeServiceAccount is Google's
# least-privilege role for GKE nodes and the one GKE checks for (logs, metrics, the HPA
# performance profile); Google keeps it current as node agents change, which a hand-made list
# (logWriter, metricWriter, monitoring.viewer, resourceMetadata.writer) does not, and it has no
# read access to the project's monitoring data. It does not pull private images: the reader
# role adds exactly that.
NODE_SERVICE_ACCOUNT_ROLES = (
    "roles/container.defaultNodeServiceAccount",
    "roles/artifactregistry.reader",
)
# Access is governed by IAM, not scopes (Google's recommendation for custom node accounts).
NODE_OAUTH_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]

# IAM limits: service account ids 6-30 characters, custom role ids at most 64.
SERVICE_ACCOUNT_ID_MAX = 30
CUSTOM_ROLE_ID_MAX = 64
# GCP resource labels (not Kubernetes labels) on everything that takes them.
RESOURCE_LABELS = {"managed-by": "remote-kpo"}

# Custom roles a Deployment's service account is bound to, by purpose: (role id suffix,
# CLOUD_ACTIONS row).
AUTHENTICATE = ("auth", "authenticate")
NODE_POOLS = ("nodePools", "ephemeralNodePools")
NODE_POOL_OPERATIONS = ("nodePoolOps", "nodePoolOperations")
ACT_AS_NODES = ("actAsNodes", "actAsNodeServiceAccount")


# ---- pure functions -------------------------------------------------------------------

def region_of(location: str) -> str:
    """us-central1 for us-central1 or us-central1-a: networks are regional, clusters need not be."""
    match = re.fullmatch(rf"({GCP_REGION})(-[a-z])?", location)
    if not match:
        raise ValueError(f"not a Google Cloud region or zone: {location}")
    return match.group(1)


def workload_pool(project: str) -> str:
    return f"{project}.svc.id.goog"


def cluster_workload_pool(config: Optional[ClusterWorkloadIdentityConfig]) -> str:
    """The pool GKE reports for the created cluster. Members named from it wait for the cluster:
    a project's pool exists only once a Workload Identity cluster does, and IAM refuses a member
    of a missing pool ("Identity Pool does not exist",
    terraform-google-modules/terraform-google-kubernetes-engine#916)."""
    if config is None or not config.workload_pool:
        raise RuntimeError("GKE returned the cluster without its workload identity pool")
    return config.workload_pool


def service_account_member(email: str) -> str:
    return f"serviceAccount:{email}"


def node_service_account_id(cluster_name: str) -> str:
    """`<cluster>-nodes`, shortened with a hash to the 30 characters an account id allows."""
    return names.fit(cluster_name, SERVICE_ACCOUNT_ID_MAX, suffix="-nodes", digest_length=4)


def custom_role_id(cluster_name: str, suffix: str) -> str:
    """A project custom role id ([a-zA-Z0-9_.], at most 64) unique to this cluster."""
    return names.fit(f"remoteKpo_{cluster_name.replace('-', '_')}", CUSTOM_ROLE_ID_MAX,
                     suffix=f"_{suffix}", separator="_")


def cluster_only_condition(project: str, location: str, cluster_name: str) -> IAMMemberConditionArgsDict:
    """An IAM condition that holds for this cluster and what is below it (its node pools), and
    for nothing else. GKE honours resource.name in conditions, with zonal clusters named
    projects/<p>/zones/<zone>/clusters/<c> and regional ones .../locations/<region>/...
    (cloud.google.com/iam/docs/conditions-resource-attributes#resource-name); both are allowed.
    """
    names = [f"projects/{project}/{kind}/{location}/clusters/{cluster_name}" for kind in ("locations", "zones")]
    expression = " || ".join(f'resource.name == "{n}" || resource.name.startsWith("{n}/")' for n in names)
    return {"title": f"only cluster {cluster_name}"[:100],
            "description": "node pools of this remote-kpo cluster only",
            "expression": expression}


def provider_user(login: str) -> dict:
    """The exec user of this program's own Kubernetes provider (exported kubeconfigs keep the
    plugin's default, the Astro Deployment's gcloud identity). `adc`: the plugin's
    --use_application_default_credentials (kubernetes/cloud-provider-gcp,
    cmd/gke-gcloud-auth-plugin/cred.go) mints the token from application default credentials,
    with no gcloud login."""
    args = ["--use_application_default_credentials"] if login == "adc" else []
    return kc.exec_user("gke-gcloud-auth-plugin", args, provide_cluster_info=True)


def custom_role_permissions(purpose: str) -> list[str]:
    """Exactly the actions of one CLOUD_ACTIONS row: nothing is added here."""
    return list(CLOUD_ACTIONS["gke"][purpose].actions)


# What an empty masterAuthorizedNetworks sends: every address, said explicitly.
ANY_ADDRESS = "0.0.0.0/0"


def maintenance_policy(gke: GkeConfig) -> ClusterMaintenancePolicyArgsDict:
    """When GKE may upgrade the cluster: node upgrades drain nodes whatever a task's
    safe-to-evict says, so they wait for the window and skip the exclusions (README, Tasks that
    outlive their node's plans)."""
    window = gke.maintenance_window
    return {
        "recurring_window": {"start_time": window.start, "end_time": window.end, "recurrence": window.recurrence},
        "maintenance_exclusions": [
            {"exclusion_name": e.name, "start_time": e.start, "end_time": e.end,
             "exclusion_options": {"scope": e.scope}}
            for e in gke.maintenance_exclusions],
    }


def master_authorized_networks(cidrs: list[str]) -> ClusterMasterAuthorizedNetworksConfigArgsDict:
    """Only these CIDRs reach the public endpoint (not all of Google Cloud's addresses).

    Always a block: it is Optional+Computed with no `enabled` field, so an omitted block keeps
    whatever the cluster has (terraform-provider-google, resource_container_cluster.go,
    expandMasterAuthorizedNetworksConfig), and emptying the list would change nothing. Empty
    means any address (the program warns), sent as 0.0.0.0/0, so the cluster does what the
    config says."""
    blocks = cidrs or [ANY_ADDRESS]
    return {
        "cidr_blocks": [{"cidr_block": cidr, "display_name": f"authorized-{i}" if cidrs else "any-address"}
                        for i, cidr in enumerate(blocks)],
        "gcp_public_cidrs_access_enabled": False,
    }


def private_cluster_config(private_nodes: bool,
                           control_plane_cidr: Optional[str]) -> ClusterPrivateClusterConfigArgsDict:
    """Nodes without public IPs; the endpoint stays public so Astro can reach it.

    Without a control-plane range GKE uses Private Service Connect: no range to reserve or to
    collide on a shared network (GKE docs, how-to/alias-ips: with enable-private-nodes the
    master-ipv4-cidr and private-endpoint-subnetwork flags are optional, and the internal
    endpoint takes an address from the cluster's subnetwork); the provider dropped its
    requirement of one (terraform-provider-google#20191, fixed in 6.11).

    With private nodes off the block still says so: it is Optional+Computed, so an omitted block
    would keep a cluster's private nodes; an explicit false is a change the provider sends as
    DesiredDefaultEnablePrivateNodes (resource_container_cluster.go: the diff is suppressed only
    while old and new are both false, containerClusterPrivateClusterConfigSuppress).
    """
    config: ClusterPrivateClusterConfigArgsDict = {"enable_private_nodes": private_nodes, "enable_private_endpoint": False}
    if private_nodes and control_plane_cidr:
        config["master_ipv4_cidr_block"] = control_plane_cidr
    return config


def pool_autoscaling(pool: NodePool, location_policy: str) -> NodePoolAutoscalingArgsDict:
    """Totals across the pool's zones, so minNodes/maxNodes mean the same on a regional cluster."""
    return {"total_min_node_count": pool.min_nodes, "total_max_node_count": pool.max_nodes,
            "location_policy": location_policy}


# A regional cluster's node pools span three zones of its region unless node locations say
# otherwise (GKE docs, "Create a regional cluster": the default configuration replicates each
# node pool across three zones of the control plane's region).
REGIONAL_POOL_ZONES = 3


def pool_zone_count(location: str, node_locations: Optional[list[str]]) -> int:
    if node_locations:
        return len(node_locations)
    return 1 if region_of(location) != location else REGIONAL_POOL_ZONES


def initial_node_count(pool: NodePool, zones: int) -> int:
    """Per zone (GKE starts this many in each of the pool's zones): enough for minNodes, never
    more than maxNodes in all zones together. A pool that may scale to zero starts at zero, so
    no idle GPU node is paid for; where one node per zone would pass maxNodes, the pool starts
    empty and the autoscaler adds nodes within its totals."""
    return min(-(-pool.min_nodes // zones), pool.max_nodes // zones)


def node_config(pool: NodePool, service_account: pulumi.Input[str]) -> NodePoolNodeConfigArgsDict:
    """What every node runs as: the dedicated account, the GKE metadata server (Workload
    Identity; no node credentials for pods), shielded boot, no legacy metadata endpoints.
    (Typed as a node pool's; the cluster's default pool takes the same structure.)"""
    return {
        "machine_type": present(pool.machine_type, "machineType"),
        "image_type": "COS_CONTAINERD",
        "service_account": service_account,
        "oauth_scopes": NODE_OAUTH_SCOPES,
        "workload_metadata_config": {"mode": "GKE_METADATA"},
        "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
        "metadata": {"disable-legacy-endpoints": "true"},
        "resource_labels": RESOURCE_LABELS,
    }


def gpu_node_config(pool: GpuPool, service_account: pulumi.Input[str]) -> NodePoolNodeConfigArgsDict:
    """node_config plus accelerators with GKE-installed drivers, the GPU taint and label,
    optional spot."""
    accelerator = present(pool.accelerator, "gpuPool.accelerator")
    return {
        **node_config(pool, service_account),
        "guest_accelerators": [{
            "type": present(accelerator.type, "gpuPool.accelerator.type"),
            "count": accelerator.count,
            "gpu_driver_installation_config": {"gpu_driver_version": "DEFAULT"},
        }],
        # GPU nodes repel every pod that does not tolerate the taint; tasks select them by label.
        "taints": [{"key": taint["key"], "value": taint["value"], "effect": gpu.GKE_TAINT_EFFECT[taint["effect"]]}
                   for taint in gpu.node_taints("gke", pool.spot)],
        "labels": dict(gpu.GPU_LABELS),
        "spot": pool.spot,
    }


# ---- components -----------------------------------------------------------------------

class GkeNetwork(pulumi.ComponentResource):
    """A VPC with one VPC-native subnetwork, and Cloud Router + NAT so nodes without public IPs
    can still pull images."""

    def __init__(self, name: str, cluster_name: str, gke: GkeConfig,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:GkeNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = region_of(gke.location)

        self.network = gcp.compute.Network(
            f"{name}-vpc", project=gke.project, name=cluster_name,
            auto_create_subnetworks=False, routing_mode="REGIONAL", opts=child)
        self.subnetwork = gcp.compute.Subnetwork(
            f"{name}-subnet", project=gke.project, region=region, name=f"{cluster_name}-nodes",
            network=self.network.id, ip_cidr_range=NODES_CIDR,
            secondary_ip_ranges=[
                {"range_name": PODS_RANGE, "ip_cidr_range": PODS_CIDR},
                {"range_name": SERVICES_RANGE, "ip_cidr_range": SERVICES_CIDR},
            ],
            # Private nodes reach Google APIs (Artifact Registry, logging) without NAT.
            private_ip_google_access=True,
            opts=child)
        # Cloud NAT even for public nodes: turning privateNodes off changes the cluster's default
        # for node pools, and nodes that stay private must still pull images. Nodes with
        # external IPs do not use it.
        router = gcp.compute.Router(
            f"{name}-router", project=gke.project, region=region, name=f"{cluster_name}-router",
            network=self.network.id, opts=child)
        gcp.compute.RouterNat(
            f"{name}-nat", project=gke.project, region=region, name=f"{cluster_name}-nat",
            router=router.name, nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
            subnetworks=[{"name": self.subnetwork.id, "source_ip_ranges_to_nats": ["ALL_IP_RANGES"]}],
            log_config={"enable": True, "filter": "ERRORS_ONLY"},
            opts=child)

        self.register_outputs({"network": self.network.id, "subnetwork": self.subnetwork.id})


def webhook_source_ranges(control_plane_cidr: Optional[str], private_endpoint: Optional[str]) -> list[str]:
    """Where a private cluster's control plane calls its nodes from, as terraform-google-modules'
    GKE module takes it for its webhook rule (autogen/main/firewall.tf.tmpl, `master_webhooks`,
    source local.cluster_endpoint_for_nodes = var.master_ipv4_cidr_block in its private-cluster
    variants): the control plane's range in the VPC-peering mode; in the Private Service Connect
    mode (no range), the control plane's internal endpoint in the cluster's network."""
    if control_plane_cidr:
        return [control_plane_cidr]
    if not private_endpoint:
        raise ValueError("a private cluster without controlPlaneCidr has an internal endpoint")
    return [f"{private_endpoint}/32"]


def network_project(network: str, default_project: str) -> str:
    """The project a network given as `projects/<p>/global/networks/<n>` (or its full URL) is
    in; a bare name is in `default_project`. A firewall rule lives in its network's project
    (the GKE module makes its webhook rule in `local.network_project_id`)."""
    found = re.search(r"(?:^|/)projects/([^/]+)/global/networks/", network)
    return found.group(1) if found else default_project


class WebhookFirewall(pulumi.ComponentResource):
    """A private cluster's control plane may reach its nodes on 443 and 10250 only (the
    `gke-<cluster>-<id>-master` rule GKE makes); an admission webhook or aggregated API served on
    another port (Kueue's webhook, 9443, and visibility API, 8082) needs a rule of its own
    (kubernetes/kubernetes#79739, and the GKE module's `add_master_webhook_firewall_rules`).
    Allowed from the control plane only, to the nodes' service account only (every node of the
    cluster runs as it), on those ports only."""

    def __init__(self, name: str, cluster_name: str, gke: GkeConfig, network: pulumi.Input[str],
                 cluster: gcp.container.Cluster, node_service_account: pulumi.Input[str], ports: list[int],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:WebhookFirewall", name, None, opts)
        sources = cluster.private_cluster_config.apply(lambda config: webhook_source_ranges(
            gke.control_plane_cidr, config.private_endpoint if config else None))
        self.firewall = gcp.compute.Firewall(
            f"{name}-firewall", project=gke.project, name=names.fit(f"{cluster_name}-webhooks", 63),
            description="remote-kpo: the control plane calls webhooks and aggregated APIs on the nodes",
            network=network, direction="INGRESS", source_ranges=sources,
            target_service_accounts=[node_service_account],
            allows=[{"protocol": "tcp", "ports": [str(port) for port in ports]}],
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"name": self.firewall.name})


class NodeServiceAccount(pulumi.ComponentResource):
    """The dedicated node service account with only NODE_SERVICE_ACCOUNT_ROLES."""

    def __init__(self, name: str, cluster_name: str, project: str,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:NodeServiceAccount", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.account = gcp.serviceaccount.Account(
            f"{name}-account", project=project, account_id=node_service_account_id(cluster_name),
            display_name=f"GKE nodes of {cluster_name} (remote-kpo)", opts=child)
        member = self.account.email.apply(service_account_member)
        grants = [
            gcp.projects.IAMMember(
                f"{name}-{role.rsplit('.', 1)[-1]}", project=project, role=role, member=member, opts=child)
            for role in NODE_SERVICE_ACCOUNT_ROLES
        ]

        # The email, known only once the roles are granted: nodes built from it can log,
        # report metrics and pull images from their first boot.
        self.email = pulumi.Output.all(self.account.email, *[grant.id for grant in grants]).apply(
            lambda values: values[0])
        # projects/<p>/serviceAccounts/<email>: what service-account IAM bindings target.
        self.resource_name = self.account.name
        self.register_outputs({"email": self.email})


@dataclass
class GkeClusterArgs:
    cluster_name: str
    gke: GkeConfig
    network: pulumi.Input[str]
    subnetwork: Optional[pulumi.Input[str]]
    # Secondary range names of the subnetwork; None lets GKE create and manage them.
    pods_range: Optional[str]
    services_range: Optional[str]
    node_service_account: pulumi.Input[str]
    system_pool: NodePool
    gpu_pool: GpuPool


class GkeCluster(pulumi.ComponentResource):
    """The cluster (default pool removed), a system pool and, when enabled, a GPU pool."""

    def __init__(self, name: str, args: GkeClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:GkeCluster", name, None, opts)
        gke = args.gke
        ip_allocation: Optional[ClusterIpAllocationPolicyArgsDict] = None
        if args.pods_range:
            ip_allocation = {"cluster_secondary_range_name": args.pods_range,
                             "services_secondary_range_name": args.services_range}

        self.cluster = gcp.container.Cluster(
            f"{name}-cluster",
            project=gke.project,
            location=gke.location,
            name=args.cluster_name,
            network=args.network,
            subnetwork=args.subnetwork,
            networking_mode="VPC_NATIVE",
            ip_allocation_policy=ip_allocation,
            # Node pools are managed below; the one GKE insists on creating is removed at once.
            remove_default_node_pool=True,
            initial_node_count=1,
            # Even that short-lived pool runs as the node account, never the Compute Engine
            # default account (often an Editor).
            node_config=node_config(args.system_pool, args.node_service_account),
            release_channel={"channel": gke.release_channel},
            maintenance_policy=maintenance_policy(gke),
            workload_identity_config={"workload_pool": workload_pool(gke.project)},
            private_cluster_config=private_cluster_config(gke.private_nodes, gke.control_plane_cidr),
            master_authorized_networks_config=master_authorized_networks(gke.master_authorized_networks),
            # No client certificate (a local account RBAC cannot revoke) and no legacy ABAC.
            master_auth={"client_certificate_config": {"issue_client_certificate": False}},
            enable_legacy_abac=False,
            enable_shielded_nodes=True,
            deletion_protection=gke.deletion_protection,
            resource_labels=RESOURCE_LABELS,
            # node_config only shapes the removed default pool; changing it must not
            # replace the cluster. protect: `pulumi destroy` fails at its preview, before it
            # deletes anything that depends on the cluster (Pulumi's DeleteStep refuses a
            # protected resource before its dry-run branch, pkg/resource/deploy/step.go), where
            # GKE's own deletion protection would refuse only after everything on it is gone.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["nodeConfig"],
                                        protect=gke.deletion_protection))

        self.system_pool = self._pool(
            "system", args, args.system_pool, location_policy="BALANCED",
            node=node_config(args.system_pool, args.node_service_account))
        self.gpu_pool = None
        if args.gpu_pool.enabled:
            # ANY: GPUs (spot ones even more) are scarce; take them in whichever zone has them.
            self.gpu_pool = self._pool(
                "gpu", args, args.gpu_pool, location_policy="ANY",
                node=gpu_node_config(args.gpu_pool, args.node_service_account),
                # Only zones that offer the accelerator (else: the cluster's zones).
                node_locations=args.gpu_pool.zones)

        self.endpoint = self.cluster.endpoint.apply(lambda host: f"https://{host}")
        self.ca_certificate = self.cluster.master_auth.cluster_ca_certificate
        self.workload_pool = self.cluster.workload_identity_config.apply(cluster_workload_pool)
        self.register_outputs({"endpoint": self.endpoint, "caCertificate": self.ca_certificate,
                               "workloadPool": self.workload_pool})

    def _pool(self, kind: str, args: GkeClusterArgs, pool: NodePool, location_policy: str,
              node: NodePoolNodeConfigArgsDict, node_locations: Optional[list[str]] = None) -> gcp.container.NodePool:
        # No name: Pulumi names it `<kind>-<random>` (short enough for GKE's 40 characters),
        # so a replaced pool comes up before the old one goes.
        return gcp.container.NodePool(
            kind,
            project=args.gke.project,
            location=args.gke.location,
            cluster=self.cluster.name,
            initial_node_count=initial_node_count(pool, pool_zone_count(args.gke.location, node_locations)),
            node_locations=node_locations,
            autoscaling=pool_autoscaling(pool, location_policy),
            management={"auto_repair": True, "auto_upgrade": True},
            node_config=node,
            # The initial count only matters at creation (the autoscaler owns the size after);
            # changing it, e.g. minNodes across zero, would otherwise replace the pool.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["initialNodeCount"]))


@dataclass
class NodePoolRoles:
    """The custom roles of Deployments with ephemeralNodePools."""

    node_pools: gcp.projects.IAMCustomRole
    operations: gcp.projects.IAMCustomRole
    act_as_nodes: gcp.projects.IAMCustomRole


class DeploymentRoles(pulumi.ComponentResource):
    """The project custom roles Deployments are bound to, each exactly one CLOUD_ACTIONS row.

    One set per stack: every Deployment needs the same actions, and custom roles are a
    limited, slow-to-delete project resource.
    """

    def __init__(self, name: str, cluster_name: str, project: str, node_pools: bool,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:GkeDeploymentRoles", name, None, opts)
        self._cluster_name, self._project = cluster_name, project
        self.authenticate = self._role(AUTHENTICATE)
        self.node_pool_roles: Optional[NodePoolRoles] = None
        if node_pools:
            self.node_pool_roles = NodePoolRoles(
                self._role(NODE_POOLS), self._role(NODE_POOL_OPERATIONS), self._role(ACT_AS_NODES))
        self.register_outputs({"authenticate": self.authenticate.name})

    def _role(self, purpose: tuple[str, str]) -> gcp.projects.IAMCustomRole:
        suffix, row = purpose
        return gcp.projects.IAMCustomRole(
            f"{self._cluster_name}-{suffix}",
            project=self._project,
            role_id=custom_role_id(self._cluster_name, suffix),
            title=f"remote-kpo {self._cluster_name} {suffix}",
            description=CLOUD_ACTIONS["gke"][row].why,
            permissions=custom_role_permissions(row),
            stage="GA",
            opts=pulumi.ResourceOptions(parent=self))


class DeploymentIdentity(pulumi.ComponentResource):
    """One Deployment's IAM: authenticate to clusters in the project; with ephemeralNodePools,
    manage node pools of this cluster only (`cluster_condition`), read node-pool operations, and
    act as the node service account (on that account only, so it cannot run pools as any other
    account)."""

    def __init__(self, name: str, deployment: Deployment, project: str, roles: DeploymentRoles,
                 node_service_account: pulumi.Input[str], cluster_condition: IAMMemberConditionArgsDict,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:GkeDeploymentIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.email = present(present(deployment.identity, "identity").gcp_service_account,
                             "identity.gcpServiceAccount")
        member = service_account_member(self.email)

        gcp.projects.IAMMember(
            f"{name}-authenticate", project=project, role=roles.authenticate.name, member=member, opts=child)
        if deployment.ephemeral_node_pools:
            node_roles = roles.node_pool_roles
            if node_roles is None:
                raise ValueError(f"{deployment.name} manages node pools, but the roles were made without them")
            gcp.projects.IAMMember(
                f"{name}-node-pools", project=project, role=node_roles.node_pools.name, member=member,
                condition=cluster_condition, opts=child)
            gcp.projects.IAMMember(
                f"{name}-node-pool-operations", project=project, role=node_roles.operations.name,
                member=member, opts=child)
            gcp.serviceaccount.IAMMember(
                f"{name}-act-as-nodes", service_account_id=node_service_account,
                role=node_roles.act_as_nodes.name, member=member, opts=child)
        self.register_outputs({"member": member})
