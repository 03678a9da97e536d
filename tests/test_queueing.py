"""Queueing (issue 26) under Pulumi mocks: config, the Kueue objects per stack and Deployment, the
ResourceQuota that keeps only pod counts, the queued task shapes, and on `existing` the check
that Kueue is installed. The queueing itself runs on the real API server with Kueue and Airflow
in tests/e2e (the local cluster's Kueue)."""

from unittest import mock

import pulumi
import pytest
import yaml

import config
from components import queueing
from harness import RecordingMocks, assert_objects_replaced_with_cluster, run_program, stack_config
from test_aks_stack import AzureMocks
from test_eks_stack import EksMocks
from test_gke_stack import GkeMocks

KUEUE = {name: ["v1beta1", "v1beta2"] for name in queueing.KUEUE_CRDS}
CQ = "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue"
LQ = "kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue"
FLAVOR = "kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor"
# Importing the cloud SDKs announces their deprecated aliases; not this project's concern.
pytestmark = pytest.mark.filterwarnings(r"ignore:.* has been deprecated:DeprecationWarning")


def queued(**changes) -> dict:
    return stack_config("dev") | {"queueing": {"enabled": True}} | changes


def error_of(raw: dict) -> str:
    with pytest.raises(config.ConfigError) as caught:
        config.load(raw)
    return str(caught.value)


# ---- config ------------------------------------------------------------------------------

def test_queueing_is_off_unless_enabled_and_waits_an_hour_without_preempting():
    cfg = config.load(stack_config("dev"))
    assert (cfg.queueing.enabled, cfg.queueing.max_wait_seconds, cfg.queueing.reclaim) == (False, 3600, "wait")


@pytest.mark.parametrize("raw, message", [
    ({"deployments": [{"name": "a", "quota": {"borrowingLimit": {"gpu": 1}}}]},
     "remote-kpo:deployments[0].quota.borrowingLimit: only with queueing.enabled: true (Kueue's ClusterQueues "
     "borrow and lend; a ResourceQuota cannot)"),
    ({"deployments": [{"name": "a"}, {"name": "b", "quota": {"lendingLimit": {"cpu": "1"}}}]},
     "remote-kpo:deployments[1].quota.lendingLimit: only with queueing.enabled: true (Kueue's ClusterQueues "
     "borrow and lend; a ResourceQuota cannot)"),
    ({"queueing": {"enabled": True}, "deployments": [{"name": "a", "quota": {"gpu": 1, "lendingLimit": {"gpu": 2}}}]},
     "remote-kpo:deployments[0].quota.lendingLimit.gpu: 2 is above quota.gpu 1: a Deployment lends only its own quota"),
    ({"queueing": {"enabled": True}, "deployments": [{"name": "a", "quota": {"memory": "1Gi",
                                                                              "lendingLimit": {"memory": "1025Mi"}}}]},
     "remote-kpo:deployments[0].quota.lendingLimit.memory: 1025Mi is above quota.memory 1Gi: a Deployment lends "
     "only its own quota"),
    ({"queueing": {"enabled": True, "maxWaitSeconds": 60}, "deployments": [{"name": "a"}]},
     "remote-kpo:queueing.maxWaitSeconds: Input should be greater than or equal to 120"),
    ({"queueing": {"enabled": True, "reclaim": "kill"}, "deployments": [{"name": "a"}]},
     "remote-kpo:queueing.reclaim: must be one of 'wait' or 'preempt'"),
    ({"queueing": {"enabled": True, "cohort": "x"}, "deployments": [{"name": "a"}]},
     "remote-kpo:queueing.cohort: unknown key"),
    ({"queueing": {"enabled": True}, "deployments": [{"name": "a", "quota": {"borrowingLimit": {"gpu": -1}}}]},
     "remote-kpo:deployments[0].quota.borrowingLimit.gpu: Input should be greater than or equal to 0"),
])
def test_bad_queueing_config_names_its_key(raw, message):
    assert error_of({"cloud": "existing"} | raw) == message


# ---- pure functions ----------------------------------------------------------------------

def deployment(**quota):
    cfg = config.load({"cloud": "existing", "queueing": {"enabled": True},
                       "deployments": [{"name": "ml", "quota": quota}]})
    return cfg.deployments[0], cfg.queueing


def test_a_cluster_queue_holds_the_quota_borrows_nothing_and_lends_all_unless_told():
    d, q = deployment(cpu="4", memory="8Gi", gpu=2)
    spec = queueing.cluster_queue_spec(d, "prod", q)
    assert spec["cohortName"] == "remote-kpo-prod"
    assert spec["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kpo-ml"}}
    assert spec["resourceGroups"] == [
        {"coveredResources": ["cpu", "memory"], "flavors": [{"name": "remote-kpo-prod-default", "resources": [
            {"name": "cpu", "nominalQuota": "4", "borrowingLimit": "0"},
            {"name": "memory", "nominalQuota": "8Gi", "borrowingLimit": "0"}]}]},
        {"coveredResources": ["nvidia.com/gpu"], "flavors": [{"name": "remote-kpo-prod-gpu", "resources": [
            {"name": "nvidia.com/gpu", "nominalQuota": "2", "borrowingLimit": "0"}]}]},
    ]


def test_borrowing_and_lending_limits_apply_per_resource():
    d, q = deployment(gpu=2, borrowingLimit={"gpu": 3}, lendingLimit={"gpu": 1, "cpu": "2"})
    groups = queueing.cluster_queue_spec(d, "prod", q)["resourceGroups"]
    resources = {r["name"]: r for g in groups for f in g["flavors"] for r in f["resources"]}
    assert resources["nvidia.com/gpu"] == {"name": "nvidia.com/gpu", "nominalQuota": "2", "borrowingLimit": "3",
                                           "lendingLimit": "1"}
    assert resources["cpu"] == {"name": "cpu", "nominalQuota": "8", "borrowingLimit": "0", "lendingLimit": "2"}
    assert "lendingLimit" not in resources["memory"]


@pytest.mark.parametrize("reclaim, policy", [("wait", "Never"), ("preempt", "Any")])
def test_reclaim_decides_whether_borrowed_quota_is_taken_back_by_preemption(reclaim, policy):
    cfg = config.load({"cloud": "existing", "queueing": {"enabled": True, "reclaim": reclaim},
                       "deployments": [{"name": "ml"}]})
    preemption = queueing.cluster_queue_spec(cfg.deployments[0], "prod", cfg.queueing)["preemption"]
    # A Deployment's own tasks never preempt each other, and borrowing never preempts.
    assert preemption == {"reclaimWithinCohort": policy, "withinClusterQueue": "Never",
                          "borrowWithinCohort": {"policy": "Never"}}


def test_two_stacks_on_one_cluster_get_their_own_cohort_flavors_and_cluster_queues():
    assert queueing.cohort_name("dev") != queueing.cohort_name("prod")
    assert set(queueing.flavor_names("dev").values()).isdisjoint(queueing.flavor_names("prod").values())
    assert queueing.cluster_queue_name("dev", "kpo-a") != queueing.cluster_queue_name("prod", "kpo-a")
    long_name = queueing.cluster_queue_name("s" * 40, "n" * 63)
    assert len(long_name) == 63 and long_name != queueing.cluster_queue_name("s" * 40, "n" * 62 + "m")


def test_the_gpu_flavor_names_the_gpu_pool_by_its_label_and_taints_per_cloud():
    aks_spot = config.load({"cloud": "aks", "aks": {"location": "westeurope", "tenantId": "9" * 8 + "-8888-7777-6666-" + "5" * 12,
                                                   "adminGroupObjectIds": ["1" * 8 + "-2222-3333-4444-" + "5" * 12]},
                            "gpuPool": {"enabled": True, "spot": True}, "queueing": {"enabled": True},
                            "deployments": [{"name": "a", "identity": {"azure": {
                                "issuer": "https://oidc.example", "subject": "system:serviceaccount:a:b"}}}]})
    assert queueing.gpu_flavor_spec(aks_spot) == {
        "nodeLabels": {"remote-kpo/gpu": "true"},
        "nodeTaints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                       {"key": "kubernetes.azure.com/scalesetpriority", "value": "spot", "effect": "NoSchedule"}]}


def test_the_gpu_flavor_names_no_nodes_without_a_pool_or_with_a_dags_own_pools():
    # Kueue would put remote-kpo/gpu=true on a task bound for a DAG's own node pool, which lacks it.
    base = {"cloud": "existing", "queueing": {"enabled": True}}
    without_pool = config.load(base | {"deployments": [{"name": "a"}]})
    own_pools = config.load(base | {"cloud": "gke", "gke": {"project": "my-project", "location": "us-central1"},
                                    "gpuPool": {"enabled": True, "accelerator": {"type": "nvidia-tesla-t4"}},
                                    "deployments": [{"name": "a", "ephemeralNodePools": True, "identity": {
                                        "gcpServiceAccount": "a@my-project.iam.gserviceaccount.com"}}]})
    assert queueing.gpu_flavor_spec(without_pool) == queueing.gpu_flavor_spec(own_pools) == {}


def test_kueue_manages_pods_only_and_only_in_the_deployment_namespaces():
    manager = queueing.manager_config()
    assert manager["integrations"] == {"frameworks": ["pod"]}
    assert manager["managedJobsNamespaceSelector"] == {"matchLabels": {"remote-kpo/queueing": "true"}}
    assert manager["webhook"] == {"port": 9443}


def test_a_task_asking_for_ephemeral_storage_is_not_held_in_line_for_a_resource_no_queue_covers(dev_queued):
    # Kueue refuses to admit a request no ClusterQueue covers, so what none covers is excluded.
    covered = {resource for queue in dev_queued.of_type(CQ)
               for group in queue.inputs["spec"]["resourceGroups"] for resource in group["coveredResources"]}
    assert "ephemeral-storage" not in covered
    assert queueing.manager_config()["resources"] == {"excludeResourcePrefixes": ["ephemeral-storage"]}


def test_kueue_on_a_cloud_runs_two_managers_kept_apart_from_drains_by_a_disruption_budget():
    # Its pod webhook fails closed: with one manager restarting, no task pod could be made.
    manager = queueing.chart_values()["controllerManager"]
    assert manager == {"replicas": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}


# ---- the dev stack (existing) under mocks ------------------------------------------------

@pytest.fixture
def dev_queued(admin_kubeconfig):
    return run_program(queued(gpuPool={"enabled": True}), kueue_crds=KUEUE)


def test_each_deployment_gets_a_cluster_queue_in_the_stacks_cohort_and_the_local_queue_default(dev_queued):
    queues = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in dev_queued.of_type(CQ)}
    assert set(queues) == {"remote-kpo-dev-kpo-analytics", "remote-kpo-dev-kpo-ml-training"}
    assert {spec["cohortName"] for spec in queues.values()} == {"remote-kpo-dev"}
    local = {r.inputs["metadata"]["namespace"]: (r.inputs["metadata"]["name"], r.inputs["spec"])
             for r in dev_queued.of_type(LQ)}
    assert local == {"kpo-analytics": ("default", {"clusterQueue": "remote-kpo-dev-kpo-analytics"}),
                     "kpo-ml-training": ("default", {"clusterQueue": "remote-kpo-dev-kpo-ml-training"})}
    flavors = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in dev_queued.of_type(FLAVOR)}
    assert flavors == {"remote-kpo-dev-default": {},
                       "remote-kpo-dev-gpu": {"nodeLabels": {"remote-kpo/gpu": "true"}, "nodeTaints": [
                           {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}}
    # ml-training's GPUs are its ClusterQueue's.
    gpu = queues["remote-kpo-dev-kpo-ml-training"]["resourceGroups"][1]["flavors"][0]["resources"][0]
    assert gpu["nominalQuota"] == "2"


def test_queued_the_resource_quota_keeps_only_the_pod_counts(dev_queued):
    quotas = {q.inputs["metadata"]["namespace"]: q.inputs["spec"]["hard"]
              for q in dev_queued.of_type("kubernetes:core/v1:ResourceQuota")
              if q.inputs["metadata"]["name"] == "remote-kpo-quota"}
    assert quotas == {"kpo-analytics": {"pods": "50", "count/pods": "200"},
                      "kpo-ml-training": {"pods": "20", "count/pods": "80"}}


def test_queued_namespaces_are_labelled_for_kueues_namespace_selector(dev_queued, admin_kubeconfig):
    labels = [r.inputs["metadata"]["labels"] for r in dev_queued.of_type("kubernetes:core/v1:Namespace")]
    assert [label.get("remote-kpo/queueing") for label in labels] == ["true", "true"]
    plain = run_program(stack_config("dev")).of_type("kubernetes:core/v1:Namespace")
    assert [r.inputs["metadata"]["labels"].get("remote-kpo/queueing") for r in plain] == [None, None]


def test_the_deployment_may_create_pods_only_once_its_local_queue_exists(dev_queued):
    # Before it, a pod would get no queue label and so escape the quota.
    after = {getattr(r, "_name", None) for r in dev_queued.options["analytics-rolebinding"].depends_on}
    assert "analytics-queue" in after
    local_after = {getattr(r, "_name", None) for r in dev_queued.options["analytics-queue-localqueue"].depends_on}
    assert {"analytics-queue-clusterqueue", "queueing-flavor-default", "queueing-flavor-gpu"} <= local_after


def test_queued_task_shapes_carry_the_queue_label_and_wait_in_line(dev_queued):
    task, gpu_task = dev_queued.outputs["task"], dev_queued.outputs["gpuTask"]
    assert task["labels"] == gpu_task["labels"] == {"kueue.x-k8s.io/queue-name": "default"}
    # An hour in line, then KPO's own 120 s, or 900 s for a GPU node from zero.
    assert (task["scheduleTimeoutSeconds"], gpu_task["scheduleTimeoutSeconds"]) == (3600 + 120, 3600 + 900)
    assert task["annotations"]["karpenter.sh/do-not-disrupt"] == "true"


def test_each_deployment_output_names_its_queues(dev_queued):
    entry = dev_queued.outputs["deployments"]["ml-training"]
    assert (entry["localQueue"], entry["clusterQueue"]) == ("default", "remote-kpo-dev-kpo-ml-training")


def test_without_queueing_nothing_of_kueue_is_made_or_said(admin_kubeconfig):
    run = run_program(stack_config("dev") | {"gpuPool": {"enabled": True}})
    assert not [r for r in run.resources if "kueue" in r.typ or "Queue" in r.typ]
    assert "labels" not in run.outputs["task"] and "scheduleTimeoutSeconds" not in run.outputs["gpuTask"]
    assert "localQueue" not in run.outputs["deployments"]["analytics"]


def test_existing_without_kueue_stops_before_any_resource_naming_queueing_enabled(admin_kubeconfig):
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as error:
        run_program(queued(), mocks=mocks, kueue_crds={"clusterqueues.kueue.x-k8s.io": ["v1beta2"]})
    assert str(error.value) == (
        "remote-kpo:queueing.enabled: Kueue is not installed on this cluster: no CustomResourceDefinition "
        "resourceflavors.kueue.x-k8s.io, localqueues.kueue.x-k8s.io, workloads.kueue.x-k8s.io serving "
        "kueue.x-k8s.io/v1beta2. Install Kueue v0.17.0 with the pod integration (README, Queueing), or set "
        "queueing.enabled: false")
    assert mocks.resources == []


def test_existing_with_a_kueue_too_old_for_v1beta2_is_refused(admin_kubeconfig):
    with pytest.raises(pulumi.RunError) as error:
        run_program(queued(), kueue_crds={name: ["v1beta1"] for name in queueing.KUEUE_CRDS})
    assert str(error.value).startswith("remote-kpo:queueing.enabled: Kueue is not installed on this cluster: "
                                       "no CustomResourceDefinition resourceflavors.kueue.x-k8s.io, clusterqueues")


def test_a_queued_deployments_role_reads_its_queue_and_nothing_cluster_wide(dev_queued):
    rules = {r.name: r.inputs["rules"] for r in dev_queued.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")}
    kueue_rules = [rule for rule in rules["ml-training-role"] if "kueue" in rule["apiGroups"][0]]
    assert kueue_rules == [
        {"apiGroups": ["kueue.x-k8s.io"], "resources": ["localqueues"], "verbs": ["get"]},
        {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["list"]},
        {"apiGroups": ["visibility.kueue.x-k8s.io"], "resources": ["localqueues/pendingworkloads"], "verbs": ["get"]}]
    assert not [r for r in dev_queued.resources if "ClusterRole" in r.typ]


# ---- the clouds: Kueue installed by the stack ---------------------------------------------

RELEASE = "kubernetes:helm.sh/v3:Release"
FIREWALL = "gcp:compute/firewall:Firewall"
PRIVATE_ENDPOINT = "10.0.0.2"


class PrivateGkeMocks(GkeMocks):
    """GKE also reports the control plane's internal endpoint of a private cluster."""

    def new_resource(self, args):
        resource_id, outputs = super().new_resource(args)
        if args.typ == "gcp:container/cluster:Cluster":
            outputs["privateClusterConfig"] = {**outputs.get("privateClusterConfig", {}),
                                               "privateEndpoint": PRIVATE_ENDPOINT}
        return [resource_id, outputs]


def cloud_run(cloud: str, **changes):
    raw = stack_config(cloud) | {"queueing": {"enabled": True}} | changes
    mocks = {"gke": PrivateGkeMocks, "eks": EksMocks, "aks": AzureMocks}[cloud]()
    return run_program(raw, stack=cloud, mocks=mocks)


@pytest.fixture(scope="module")
def clouds():
    return {cloud: cloud_run(cloud) for cloud in ("gke", "eks", "aks")}


@pytest.mark.parametrize("cloud", ["gke", "eks", "aks"])
def test_each_cloud_installs_the_pinned_kueue_chart_with_the_pod_integration_only(clouds, cloud):
    (release,) = clouds[cloud].of_type(RELEASE)
    inputs = release.inputs
    assert (inputs["chart"], inputs["version"], inputs["namespace"], inputs["name"]) == (
        "oci://registry.k8s.io/kueue/charts/kueue", "0.17.0", "kueue-system", "kueue")
    manager = yaml.safe_load(inputs["values"]["managerConfig"]["controllerManagerConfigYaml"])
    assert manager["integrations"] == {"frameworks": ["pod"]}
    assert manager["managedJobsNamespaceSelector"] == {"matchLabels": {"remote-kpo/queueing": "true"}}
    (namespace,) = [r for r in clouds[cloud].of_type("kubernetes:core/v1:Namespace")
                    if r.inputs["metadata"]["name"] == "kueue-system"]
    assert namespace.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("cloud", ["gke", "eks", "aks"])
def test_each_clouds_queues_wait_for_kueue_and_each_deployment_gets_its_own(clouds, cloud):
    run = clouds[cloud]
    flavor_after = {getattr(r, "_name", None) for r in run.options["queueing-flavor-default"].depends_on}
    assert "kueue" in flavor_after
    namespaces = {r.inputs["metadata"]["namespace"] for r in run.of_type(LQ)}
    assert namespaces == {d["namespace"] for d in run.outputs["deployments"].values()}
    assert {r.inputs["spec"]["cohortName"] for r in run.of_type(CQ)} == {f"remote-kpo-{cloud}"}


@pytest.mark.parametrize("cloud, cluster", [("gke", ("gcp:container/cluster:Cluster", "kpo-gpu-prod-cluster")),
                                            ("eks", ("aws:eks/cluster:Cluster", "kpo-gpu-cluster")),
                                            ("aks", ("azure-native:containerservice:ManagedCluster", "aks"))])
def test_kueue_and_the_queues_are_replaced_with_the_cluster(clouds, cloud, cluster):
    run = clouds[cloud]
    identifier = run.of_type("pulumi:providers:kubernetes")[0].inputs["clusterIdentifier"]
    assert_objects_replaced_with_cluster(run, identifier, cluster)
    assert {r.name for r in run.of_type(RELEASE)} == {"kueue-release"}


def test_a_private_gke_cluster_lets_its_control_plane_call_kueues_webhook_and_visibility_api_on_the_nodes(clouds):
    (firewall,) = clouds["gke"].of_type(FIREWALL)
    inputs = firewall.inputs
    # 9443: the webhook server; 8082: the visibility API server behind the chart's APIServices.
    assert (inputs["direction"], inputs["allows"]) == ("INGRESS", [{"protocol": "tcp", "ports": ["9443", "8082"]}])
    # Private Service Connect (no controlPlaneCidr): from the control plane's internal endpoint.
    assert inputs["sourceRanges"] == [f"{PRIVATE_ENDPOINT}/32"]
    assert inputs["targetServiceAccounts"] == ["kpo-gpu-prod-nodes@acme-data-platform.iam.gserviceaccount.com"]
    assert inputs["network"] == "projects/acme-data-platform/global/networks/kpo-gpu-prod"
    after = {getattr(r, "_name", None) for r in clouds["gke"].options["kueue-namespace"].depends_on}
    assert {"kpo-gpu-prod-kueue", "system"} <= after


def test_with_a_control_plane_range_the_rule_comes_from_that_range():
    gke_config = stack_config("gke")["gke"] | {"controlPlaneCidr": "172.16.0.32/28"}
    (firewall,) = cloud_run("gke", gke=gke_config).of_type(FIREWALL)
    assert firewall.inputs["sourceRanges"] == ["172.16.0.32/28"]


def test_public_gke_nodes_need_no_webhook_rule_and_without_queueing_there_is_none():
    public = cloud_run("gke", gke=stack_config("gke")["gke"] | {"privateNodes": False})
    assert public.of_type(FIREWALL) == [] and len(public.of_type(RELEASE)) == 1
    plain = run_program(stack_config("gke"), stack="gke", mocks=PrivateGkeMocks())
    assert plain.of_type(FIREWALL) == plain.of_type(RELEASE) == plain.of_type(CQ) == []


def test_a_shared_vpc_network_gets_no_rule_in_the_service_project_and_the_program_says_who_must_allow_it():
    shared = stack_config("gke")["gke"] | {"network": "projects/net-host/global/networks/shared",
                                            "subnetwork": "projects/net-host/regions/us-central1/subnetworks/gke"}
    with mock.patch.object(pulumi.log, "warn") as warn:
        run = cloud_run("gke", gke=shared)
    # A firewall rule lives in its network's project: one in the cluster's project is refused.
    assert run.of_type(FIREWALL) == [] and len(run.of_type(RELEASE)) == 1
    (message,) = [c.args[0] for c in warn.call_args_list if "queueing" in c.args[0]]
    assert "net-host" in message and "9443" in message and "8082" in message


def test_a_network_of_the_clusters_own_project_still_gets_the_rule():
    own = stack_config("gke")["gke"]
    named = own | {"network": f"https://www.googleapis.com/compute/v1/projects/{own['project']}/global/networks/mine",
                   "subnetwork": "mine"}
    (firewall,) = cloud_run("gke", gke=named).of_type(FIREWALL)
    assert firewall.inputs["project"] == own["project"]
    assert len(cloud_run("gke", gke=own | {"network": "mine", "subnetwork": "mine"}).of_type(FIREWALL)) == 1
