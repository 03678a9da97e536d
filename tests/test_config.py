import pytest

import config
from harness import stack_config

GSA = "kpo-analytics@my-project.iam.gserviceaccount.com"
ROLE = "arn:aws:iam::123456789012:role/astro-deployment"
AZURE = {"issuer": "https://oidc.astronomer.example/abc", "subject": "system:serviceaccount:astro-ns:airflow-worker"}
TENANT = "99999999-8888-7777-6666-555555555555"
GROUP = "11111111-2222-3333-4444-555555555555"

GKE_BASE = {"project": "my-project", "location": "us-central1"}

VALID = {
    "existing": {"cloud": "existing", "deployments": [{"name": "a"}]},
    "gke": {"cloud": "gke", "gke": GKE_BASE,
            "deployments": [{"name": "a", "identity": {"gcpServiceAccount": GSA}}]},
    "eks": {"cloud": "eks", "eks": {"region": "us-east-1"},
            "deployments": [{"name": "a", "identity": {"awsRoleArn": ROLE}}]},
    "aks": {"cloud": "aks", "aks": {"location": "westeurope", "tenantId": TENANT, "adminGroupObjectIds": [GROUP]},
            "deployments": [{"name": "a", "identity": {"azure": AZURE}}]},
}


def variant(cloud: str, **changes) -> dict:
    raw = {key: value for key, value in VALID[cloud].items()}
    raw.update(changes)
    return raw


def error_of(raw: dict) -> str:
    with pytest.raises(config.ConfigError) as caught:
        config.load(raw)
    return str(caught.value)


@pytest.mark.parametrize("cloud", sorted(VALID))
def test_a_minimal_stack_of_every_cloud_is_valid(cloud):
    assert config.load(VALID[cloud]).cloud == cloud


def test_the_dev_stack_file_is_valid_with_one_xcom_and_one_quota_deployment():
    cfg = config.load(stack_config("dev"))
    assert cfg.cloud == "existing"
    # analytics sets no quota and gets the default one, with no GPU.
    assert [(d.name, d.xcom, d.quota.pods, d.quota.gpu) for d in cfg.deployments] == [
        ("analytics", True, 50, 0), ("ml-training", False, 20, 2)]


def test_deployment_defaults_namespace_xcom_and_connection_names():
    (d,) = config.load(VALID["existing"] | {"deployments": [{"name": "ml-training"}]}).deployments
    assert (d.namespace, d.xcom, d.ephemeral_node_pools, d.pod_security) == ("kpo-ml-training", True, False, "baseline")
    assert (d.airflow_conn_id, d.env_var) == ("kpo_ml_training", "AIRFLOW_CONN_KPO_ML_TRAINING")


def test_a_deployment_may_carry_its_cluster_in_its_connection_id():
    (d,) = config.load(VALID["existing"] | {"deployments": [{"name": "analytics",
                                                              "connectionId": "kpo_onprem_analytics"}]}).deployments
    assert (d.airflow_conn_id, d.env_var) == ("kpo_onprem_analytics", "AIRFLOW_CONN_KPO_ONPREM_ANALYTICS")


def test_pools_default_per_cloud_and_gpu_pool_scales_from_zero():
    cfg = config.load(variant("aks", gpuPool={"enabled": True}))
    assert cfg.system_pool.machine_type == "Standard_D4s_v5"
    assert (cfg.gpu_pool.min_nodes, cfg.gpu_pool.machine_type) == (0, "Standard_NC4as_T4_v3")


def test_eks_gpu_pool_defaults_to_one_t4_per_node_and_has_no_system_pool_machine_type():
    cfg = config.load(variant("eks", gpuPool={"enabled": True}))
    assert (cfg.gpu_pool.min_nodes, cfg.gpu_pool.machine_type, cfg.gpu_pool.gpus_per_node) == (0, "g4dn.xlarge", 1)
    assert cfg.system_pool.machine_type is None


def test_eks_accelerator_count_is_the_gpus_per_node():
    cfg = config.load(variant("eks", gpuPool={"enabled": True, "machineType": "g5.12xlarge", "accelerator": {"count": 4}}))
    assert cfg.gpu_pool.gpus_per_node == 4


def test_eks_deletion_protection_is_on_unless_switched_off():
    assert config.load(VALID["eks"]).eks.deletion_protection is True
    off = config.load(variant("eks", eks={"region": "us-east-1", "deletionProtection": False}))
    assert off.eks.deletion_protection is False


def test_gke_gpu_pool_zones_in_the_clusters_region_are_kept():
    raw = variant("gke", gke={"project": "my-project", "location": "us-central1-a"},
                  gpuPool={"enabled": True, "accelerator": {"type": "nvidia-l4"}, "zones": ["us-central1-b", "us-central1-c"]})
    assert config.load(raw).gpu_pool.zones == ["us-central1-b", "us-central1-c"]


def test_eks_without_network_config_gets_a_new_vpc_block():
    assert config.load(VALID["eks"]).eks.vpc_cidr == "10.0.0.0/16"


def test_a_partial_quota_and_pod_defaults_keep_the_defaults_of_what_they_leave_unset():
    deployment = {"name": "a", "quota": {"gpu": 2, "pods": 10}, "podDefaults": {"limits": {"memory": "2Gi"}}}
    (d,) = config.load(variant("existing", deployments=[deployment])).deployments
    # Nothing unbounded: cpu and memory keep their default quota, every container its defaults and max.
    assert (d.quota.cpu, d.quota.memory, d.quota.gpu, d.quota.pods, d.quota.total_pods) == ("8", "32Gi", 2, 10, 40)
    assert d.pod_defaults.model_dump() == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                           "limits": {"cpu": "1", "memory": "2Gi"},
                                           "max": {"cpu": "4", "memory": "16Gi"}}


def test_quantities_compare_by_value_across_suffixes():
    assert config.quantity_value("1500m") > config.quantity_value("1")
    assert config.quantity_value("1Gi") > config.quantity_value("1G") > config.quantity_value("953Mi")
    assert config.quantity_value("0.5") == config.quantity_value("500m")


def test_cluster_name_defaults_to_the_stack():
    assert config.load(VALID["existing"]).resolved_cluster_name("prod") == "remote-kpo-prod"


def test_structured_config_arrives_as_json_text():
    cfg = config.load({"cloud": "existing", "deployments": '[{"name": "a", "xcom": false}]'})
    assert cfg.deployments[0].xcom is False


BAD_INPUT = [
    ("unknown cloud", {"cloud": "azure", "deployments": [{"name": "a"}]},
     "remote-kpo:cloud: must be one of 'gke', 'eks', 'aks' or 'existing'"),
    ("missing cloud", {"deployments": [{"name": "a"}]}, "remote-kpo:cloud: required"),
    ("missing deployments", {"cloud": "existing"}, "remote-kpo:deployments: required"),
    ("empty deployments", {"cloud": "existing", "deployments": []},
     "remote-kpo:deployments: needs at least 1 entry"),
    ("missing cloud section", {"cloud": "gke", "deployments": [{"name": "a", "identity": {"gcpServiceAccount": GSA}}]},
     "remote-kpo:gke: required when cloud is gke"),
    ("section of another cloud", variant("gke", eks={"region": "us-east-1"}),
     "remote-kpo:eks: set, but cloud is gke"),
    ("missing gke.project", variant("gke", gke={"location": "us-central1"}), "remote-kpo:gke.project: required"),
    ("missing identity", variant("eks", deployments=[{"name": "a"}]),
     "remote-kpo:deployments[0].identity.awsRoleArn: required when cloud is eks"),
    ("identity of the wrong cloud", variant("eks", deployments=[{"name": "a", "identity": {"gcpServiceAccount": GSA}}]),
     "remote-kpo:deployments[0].identity.gcpServiceAccount: identity of the wrong cloud: cloud eks takes awsRoleArn"),
    ("identity on existing", variant("existing", deployments=[{"name": "a", "identity": {"awsRoleArn": ROLE}}]),
     "remote-kpo:deployments[0].identity.awsRoleArn: not used on cloud existing (a ServiceAccount token is issued)"),
    ("duplicate name", variant("existing", deployments=[{"name": "a"}, {"name": "b"}, {"name": "a"}]),
     "remote-kpo:deployments[2].name: duplicate of deployments[0]"),
    ("duplicate namespace", variant("existing", deployments=[{"name": "a"}, {"name": "b", "namespace": "kpo-a"}]),
     "remote-kpo:deployments[1].namespace: kpo-a is already used by deployments[0]"),
    ("connection id of another deployment", variant("existing", deployments=[
        {"name": "a-b"}, {"name": "c", "connectionId": "kpo_a_b"}]),
     "remote-kpo:deployments[1].connectionId: kpo_a_b is already used by deployments[0]"),
    ("connection id the smoke DAG would not find", variant("existing", deployments=[
        {"name": "a", "connectionId": "gke_a"}]),
     "remote-kpo:deployments[0].connectionId: not kpo_ then a-z, 0-9 and '_' (at most 104)"),
    ("non-DNS name", variant("existing", deployments=[{"name": "Data_Team"}]),
     "remote-kpo:deployments[0].name: not a DNS label (a-z, 0-9, '-', at most 63)"),
    ("name too long for its namespace", variant("existing", deployments=[{"name": "a" * 62}]),
     f"remote-kpo:deployments[0].name: too long for the default namespace kpo-{'a' * 62}; set namespace"),
    ("system pool min > max", variant("gke", systemPool={"minNodes": 4, "maxNodes": 2}),
     "remote-kpo:systemPool.minNodes: 4 is above maxNodes 2"),
    ("gpu pool min > max", variant("eks", gpuPool={"enabled": True, "minNodes": 3, "maxNodes": 1}),
     "remote-kpo:gpuPool.minNodes: 3 is above maxNodes 1"),
    ("negative node count", variant("eks", gpuPool={"minNodes": -1}),
     "remote-kpo:gpuPool.minNodes: Input should be greater than or equal to 0"),
    ("client rate limit of zero", variant("existing", kubeClient={"qps": 0}),
     "remote-kpo:kubeClient.qps: Input should be greater than 0"),
    ("client burst of zero", variant("existing", kubeClient={"burst": 0}),
     "remote-kpo:kubeClient.burst: Input should be greater than or equal to 1"),
    ("client setting misspelled", variant("existing", kubeClient={"QPS": 100}),
     "remote-kpo:kubeClient.QPS: unknown key"),
    ("unbounded grace period", variant("eks", gpuPool={"enabled": True, "terminationGracePeriod": "Never"}),
     "remote-kpo:gpuPool.terminationGracePeriod: not a duration like 24h or 90m (h, m, s)"),
    ("grace period in days", variant("eks", gpuPool={"enabled": True, "terminationGracePeriod": "2d"}),
     "remote-kpo:gpuPool.terminationGracePeriod: not a duration like 24h or 90m (h, m, s)"),
    ("node lifetime past auto mode's", variant("eks", gpuPool={"enabled": True, "expireAfter": "504h1s"}),
     "remote-kpo:gpuPool.expireAfter: above 504h: EKS Auto Mode replaces a node after 21 days at most"),
    ("task node lifetime past auto mode's", variant("eks", taskPool={"expireAfter": "600h"}),
     "remote-kpo:taskPool.expireAfter: above 504h: EKS Auto Mode replaces a node after 21 days at most"),
    ("unbounded task grace period", variant("eks", taskPool={"terminationGracePeriod": "Never"}),
     "remote-kpo:taskPool.terminationGracePeriod: not a duration like 24h or 90m (h, m, s)"),
    ("task pool key misspelled", variant("eks", taskPool={"consolidateAfter": "1m"}),
     "remote-kpo:taskPool.consolidateAfter: unknown key"),
    ("task pool on gke", variant("gke", taskPool={"expireAfter": "72h"}),
     "remote-kpo:taskPool.expireAfter: only used on eks (the NodePool tasks run on there), not on gke"),
    ("task pool on aks", variant("aks", taskPool={"terminationGracePeriod": "1h"}),
     "remote-kpo:taskPool.terminationGracePeriod: only used on eks (the NodePool tasks run on there), not on aks"),
    ("task pool on existing", variant("existing", taskPool={"expireAfter": "72h"}),
     "remote-kpo:taskPool.expireAfter: only used on eks (the NodePool tasks run on there), not on existing"),
    ("gke window shorter than 4 hours", variant("gke", gke={**GKE_BASE, "maintenanceWindow": {
        "start": "2025-01-04T00:00:00Z", "end": "2025-01-04T03:59:59Z", "recurrence": "FREQ=DAILY"}}),
     "remote-kpo:gke.maintenanceWindow.end: at least 4 hours after start: GKE counts no shorter window"),
    ("gke window in local time", variant("gke", gke={**GKE_BASE, "maintenanceWindow": {
        "start": "2025-01-04T00:00:00+01:00", "end": "2025-01-05T00:00:00Z", "recurrence": "FREQ=DAILY"}}),
     "remote-kpo:gke.maintenanceWindow.start: not a UTC time like 2025-01-04T00:00:00Z"),
    ("gke window on a day no month has", variant("gke", gke={**GKE_BASE, "maintenanceWindow": {
        "start": "2025-02-30T00:00:00Z", "end": "2025-03-02T00:00:00Z", "recurrence": "FREQ=DAILY"}}),
     "remote-kpo:gke.maintenanceWindow.start: not a UTC time like 2025-01-04T00:00:00Z"),
    ("gke exclusion at hour 25", variant("gke", gke={**GKE_BASE, "maintenanceExclusions": [
        {"name": "x", "start": "2025-03-25T00:00:00Z", "end": "2025-03-26T25:00:00Z"}]}),
     "remote-kpo:gke.maintenanceExclusions[0].end: not a UTC time like 2025-01-04T00:00:00Z"),
    ("gke window without a rule", variant("gke", gke={**GKE_BASE, "maintenanceWindow": {
        "start": "2025-01-04T00:00:00Z", "end": "2025-01-05T00:00:00Z", "recurrence": "weekends"}}),
     "remote-kpo:gke.maintenanceWindow.recurrence: not an RFC 5545 RRULE like FREQ=WEEKLY;BYDAY=SA,SU"),
    ("gke exclusion ending first", variant("gke", gke={**GKE_BASE, "maintenanceExclusions": [
        {"name": "x", "start": "2025-03-25T00:00:00Z", "end": "2025-03-24T00:00:00Z"}]}),
     "remote-kpo:gke.maintenanceExclusions[0].end: must be after start"),
    ("gke exclusion twice", variant("gke", gke={**GKE_BASE, "maintenanceExclusions": [
        {"name": "x", "start": "2025-03-25T00:00:00Z", "end": "2025-03-26T00:00:00Z"},
        {"name": "x", "start": "2025-04-25T00:00:00Z", "end": "2025-04-26T00:00:00Z"}]}),
     "remote-kpo:gke.maintenanceExclusions[1].name: duplicate of maintenanceExclusions[0]"),
    ("gke exclusion scope", variant("gke", gke={**GKE_BASE, "maintenanceExclusions": [
        {"name": "x", "start": "2025-03-25T00:00:00Z", "end": "2025-03-26T00:00:00Z", "scope": "NO_NODE_UPGRADES"}]}),
     "remote-kpo:gke.maintenanceExclusions[0].scope: must be one of 'NO_UPGRADES', 'NO_MINOR_UPGRADES' or 'NO_MINOR_OR_NODE_UPGRADES'"),
    ("aks window shorter than 4 hours", variant("aks", aks={**VALID["aks"]["aks"], "maintenanceWindow": {"durationHours": 3}}),
     "remote-kpo:aks.maintenanceWindow.durationHours: Input should be greater than or equal to 4"),
    ("aks window start", variant("aks", aks={**VALID["aks"]["aks"], "maintenanceWindow": {"startTime": "24:00"}}),
     "remote-kpo:aks.maintenanceWindow.startTime: not a time like 00:00 (UTC)"),
    ("aks blocked dates backwards", variant("aks", aks={**VALID["aks"]["aks"], "maintenanceWindow": {
        "notAllowedDates": [{"start": "2026-01-04", "end": "2025-12-20"}]}}),
     "remote-kpo:aks.maintenanceWindow.notAllowedDates[0].end: must not be before start"),
    ("aks blocked date in month 13", variant("aks", aks={**VALID["aks"]["aks"], "maintenanceWindow": {
        "notAllowedDates": [{"start": "2025-12-20", "end": "2025-13-04"}]}}),
     "remote-kpo:aks.maintenanceWindow.notAllowedDates[0].end: not a date like 2025-12-24"),
    ("gke gpu pool without accelerator", variant("gke", gpuPool={"enabled": True}),
     "remote-kpo:gpuPool.accelerator.type: required for a GKE GPU pool"),
    ("malformed role ARN", variant("eks", deployments=[{"name": "a", "identity": {"awsRoleArn": "arn:aws:iam::12:user/x"}}]),
     "remote-kpo:deployments[0].identity.awsRoleArn: not an IAM role ARN"),
    ("malformed service account email", variant("gke", deployments=[{"name": "a", "identity": {"gcpServiceAccount": "me@gmail.com"}}]),
     "remote-kpo:deployments[0].identity.gcpServiceAccount: not a Google service account email (name@project.iam.gserviceaccount.com)"),
    ("azure issuer not https", variant("aks", deployments=[{"name": "a", "identity": {"azure": AZURE | {"issuer": "http://x"}}}]),
     "remote-kpo:deployments[0].identity.azure.issuer: not an https:// URL"),
    ("azure subject not a service account", variant("aks", deployments=[{"name": "a", "identity": {"azure": AZURE | {"subject": "astro"}}}]),
     "remote-kpo:deployments[0].identity.azure.subject: not a Kubernetes service account subject system:serviceaccount:<namespace>:<name>"),
    ("azure subject and subjects", variant("aks", deployments=[{"name": "a", "identity": {"azure": AZURE | {
        "subjects": ["system:serviceaccount:astro-ns:airflow-triggerer"]}}}]),
     "remote-kpo:deployments[0].identity.azure.subjects: set either subject or subjects, not both"),
    ("azure without a subject", variant("aks", deployments=[{"name": "a", "identity": {"azure": {"issuer": AZURE["issuer"]}}}]),
     "remote-kpo:deployments[0].identity.azure.subject: required (or subjects, a list)"),
    ("azure subjects duplicate", variant("aks", deployments=[{"name": "a", "identity": {"azure": {
        "issuer": AZURE["issuer"], "subjects": [AZURE["subject"], AZURE["subject"]]}}}]),
     "remote-kpo:deployments[0].identity.azure.subjects[1]: duplicate of subjects[0]"),
    ("azure subjects not service accounts", variant("aks", deployments=[{"name": "a", "identity": {"azure": {
        "issuer": AZURE["issuer"], "subjects": [AZURE["subject"], "astro"]}}}]),
     "remote-kpo:deployments[0].identity.azure.subjects[1]: not a Kubernetes service account subject "
     "system:serviceaccount:<namespace>:<name>"),
    ("azure subjects above the federated credential limit", variant("aks", deployments=[{"name": "a", "identity": {"azure": {
        "issuer": AZURE["issuer"], "subjects": [f"system:serviceaccount:ns:sa{i}" for i in range(21)]}}}]),
     "remote-kpo:deployments[0].identity.azure.subjects: at most 20 entries"),
    ("missing aks tenant id", variant("aks", aks={"location": "westeurope", "adminGroupObjectIds": [GROUP]}),
     "remote-kpo:aks.tenantId: required"),
    ("aks without admin groups", variant("aks", aks={"location": "westeurope", "tenantId": TENANT}),
     "remote-kpo:aks.adminGroupObjectIds: required"),
    ("eks vpcCidr and subnetIds", variant("eks", eks={"region": "us-east-1", "vpcCidr": "10.0.0.0/16",
                                                      "subnetIds": ["subnet-0123abcd", "subnet-4567abcd"]}),
     "remote-kpo:eks.subnetIds: set either vpcCidr or subnetIds, not both"),
    ("eks one subnet", variant("eks", eks={"region": "us-east-1", "subnetIds": ["subnet-0123abcd"]}),
     "remote-kpo:eks.subnetIds: EKS needs at least two subnets in different availability zones"),
    ("eks vpcCidr too small for six subnets", variant("eks", eks={"region": "us-east-1", "vpcCidr": "10.0.0.0/26"}),
     "remote-kpo:eks.vpcCidr: /26 does not fit: use a block from /16 to /24 (it is split into six subnets)"),
    ("aks system pool at zero", variant("aks", systemPool={"minNodes": 0}),
     "remote-kpo:systemPool.minNodes: an AKS system pool needs at least 1 node"),
    ("eks region format", variant("eks", eks={"region": "virginia"}),
     "remote-kpo:eks.region: not an AWS region like us-east-1"),
    ("bad CIDR", variant("gke", gke={"project": "my-project", "location": "us-central1",
                                     "masterAuthorizedNetworks": ["10.0.0.1/8"]}),
     "remote-kpo:gke.masterAuthorizedNetworks[0]: not a CIDR block like 203.0.113.0/24"),
    ("gcp location with three digits", variant("gke", gke={"project": "my-project", "location": "europe-west100"}),
     "remote-kpo:gke.location: not a Google Cloud region or zone like us-central1"),
    ("gke control plane range not a /28", variant("gke", gke={"project": "my-project", "location": "us-central1",
                                                             "controlPlaneCidr": "172.16.0.0/24"}),
     "remote-kpo:gke.controlPlaneCidr: /24: GKE takes a /28 for the control plane"),
    ("gke control plane range with public nodes", variant("gke", gke={
        "project": "my-project", "location": "us-central1", "privateNodes": False, "controlPlaneCidr": "172.16.0.0/28"}),
     "remote-kpo:gke.controlPlaneCidr: only with privateNodes: true"),
    ("unknown gke login", variant("gke", gke={"project": "my-project", "location": "us-central1", "login": "sa-key"}),
     "remote-kpo:gke.login: must be one of 'gcloud' or 'adc'"),
    ("unknown top-level key", variant("existing", clusterNmae="x"),
     "remote-kpo:clusterNmae: unknown key; did you mean `clusterName`?"),
    ("unknown nested key", variant("existing", deployments=[{"name": "a", "qouta": {"cpu": "1"}}]),
     "remote-kpo:deployments[0].qouta: unknown key; did you mean `quota`?"),
    ("unknown key like no other", variant("existing", deployments=[{"name": "a", "owner": "data-team"}]),
     "remote-kpo:deployments[0].owner: unknown key"),
    ("wrong type", variant("existing", deployments=[{"name": "a", "xcom": "sometimes"}]),
     "remote-kpo:deployments[0].xcom: must be true or false"),
    ("bad quantity", variant("existing", deployments=[{"name": "a", "quota": {"memory": "lots"}}]),
     "remote-kpo:deployments[0].quota.memory: not a Kubernetes quantity like 500m or 2Gi"),
    ("pod security level not enforceable", variant("existing", deployments=[{"name": "a", "podSecurity": "privileged"}]),
     "remote-kpo:deployments[0].podSecurity: must be one of 'baseline' or 'restricted'"),
    ("xcom sidecar image that is not an image", variant("existing", deployments=[
        {"name": "a", "xcomSidecarImage": "Registry.Example.com/Alpine Linux"}]),
     "remote-kpo:deployments[0].xcomSidecarImage: not an image reference like registry.example.com/mirror/alpine:3.24"),
    ("xcom sidecar image without xcom", variant("existing", deployments=[
        {"name": "a", "xcom": False, "xcomSidecarImage": "registry.example.com/mirror/alpine:3.24.2"}]),
     "remote-kpo:deployments[0].xcomSidecarImage: only with xcom: true (without pods/exec no task reads an XCom sidecar)"),
    # The API server would refuse such a LimitRange at `up`; a request above the default limit
    # would also make every container that sets only a request invalid.
    ("default request above the default limit", variant("existing", deployments=[
        {"name": "a"}, {"name": "b", "podDefaults": {"requests": {"cpu": "1500m"}}}]),
     "remote-kpo:deployments[1].podDefaults.requests.cpu: 1500m is above limits.cpu 1"),
    ("default limit above the max", variant("existing", deployments=[
        {"name": "a", "podDefaults": {"limits": {"memory": "20Gi"}}}]),
     "remote-kpo:deployments[0].podDefaults.limits.memory: 20Gi is above max.memory 16Gi"),
    ("fewer pods in all than running", variant("existing", deployments=[
        {"name": "a", "quota": {"pods": 10, "totalPods": 5}}]),
     "remote-kpo:deployments[0].quota.totalPods: 5 is below pods 10: totalPods counts running pods too"),
    ("janitor ttl shorter than a deferrable task's resume", variant("existing", deployments=[
        {"name": "a", "janitor": {"finishedTtl": "2m"}}]),
     "remote-kpo:deployments[0].janitor.finishedTtl: below 5m: a deferrable task reads its finished pod when it "
     "resumes on a worker"),
    ("janitor runtime shorter than a GPU task's startup wait", variant("existing", deployments=[
        {"name": "a", "janitor": {"maxTaskRuntime": "45m"}}]),
     "remote-kpo:deployments[0].janitor.maxTaskRuntime: below 1h: it counts from the pod's creation, the startup "
     "wait (up to 30m for a GPU task) included"),
    ("janitor duration in days", variant("existing", deployments=[{"name": "a", "janitor": {"maxTaskRuntime": "2d"}}]),
     "remote-kpo:deployments[0].janitor.maxTaskRuntime: not a duration like 24h or 90m (h, m, s)"),
    ("janitor misspelt", variant("existing", deployments=[{"name": "a", "janitor": {"enable": False}}]),
     "remote-kpo:deployments[0].janitor.enable: unknown key; did you mean `enabled`?"),
    ("negative gpu quota", variant("existing", deployments=[{"name": "a", "quota": {"gpu": -1}}]),
     "remote-kpo:deployments[0].quota.gpu: Input should be greater than or equal to 0"),
    ("gpu pool size on existing", variant("existing", gpuPool={"enabled": True, "maxNodes": 4}),
     "remote-kpo:gpuPool.maxNodes: not used on existing: the program makes no nodes there; `gpuPool: {enabled: "
     "true}` says the cluster's GPU nodes carry the label remote-kpo/gpu=true and the taint "
     "nvidia.com/gpu=present:NoSchedule"),
    ("system pool size on eks", variant("eks", systemPool={"minNodes": 2}),
     "remote-kpo:systemPool.minNodes: not used on eks: EKS Auto Mode runs cluster add-ons on its built-in system pool, which sizes itself"),
    ("system pool machine type on eks", variant("eks", systemPool={"machineType": "m6i.large", "maxNodes": 4}),
     "remote-kpo:systemPool.machineType: not used on eks: EKS Auto Mode runs cluster add-ons on its built-in system pool, which sizes itself"),
    ("accelerator type on eks", variant("eks", gpuPool={"enabled": True, "accelerator": {"type": "nvidia-tesla-t4"}}),
     "remote-kpo:gpuPool.accelerator.type: not used on eks: machineType sets the GPU (accelerator.count is the GPUs per node)"),
    ("accelerator on aks", variant("aks", gpuPool={"enabled": True, "accelerator": {"count": 2}}),
     "remote-kpo:gpuPool.accelerator: not used on aks: the VM size in machineType sets the GPU type and count"),
    ("gpu minimum on eks", variant("eks", gpuPool={"enabled": True, "minNodes": 1}),
     "remote-kpo:gpuPool.minNodes: must be 0 on eks: an EKS Auto Mode NodePool starts GPU nodes only for pending tasks"),
    ("eks version before auto mode", variant("eks", eks={"region": "us-east-1", "version": "1.28"}),
     "remote-kpo:eks.version: 1.28 is too old: the tenant admission policies need Kubernetes 1.30 or newer "
     "(ValidatingAdmissionPolicy)"),
    ("eks version without admission policies", variant("eks", eks={"region": "us-east-1", "version": "1.29"}),
     "remote-kpo:eks.version: 1.29 is too old: the tenant admission policies need Kubernetes 1.30 or newer "
     "(ValidatingAdmissionPolicy)"),
    ("gke gpu pool with a count but no type", variant("gke", gpuPool={"enabled": True, "accelerator": {"count": 2}}),
     "remote-kpo:gpuPool.accelerator.type: required for a GKE GPU pool"),
    ("gpu zones off gke", variant("aks", gpuPool={"enabled": True, "zones": ["westeurope-1"]}),
     "remote-kpo:gpuPool.zones[0]: not a Google Cloud zone like us-central1-a"),
    ("gpu zones on eks", variant("eks", gpuPool={"enabled": True, "zones": ["us-east1-b"]}),
     "remote-kpo:gpuPool.zones: only used on gke (where accelerators are offered per zone), not on eks"),
    ("gpu zone outside the region", variant("gke", gpuPool={"enabled": True, "accelerator": {"type": "nvidia-tesla-t4"},
                                                             "zones": ["us-central1-a", "us-east1-b"]}),
     "remote-kpo:gpuPool.zones[1]: us-east1-b is not in the cluster's region us-central1"),
    ("gpu zones empty", variant("gke", gpuPool={"enabled": True, "accelerator": {"type": "nvidia-tesla-t4"}, "zones": []}),
     "remote-kpo:gpuPool.zones: needs at least 1 entry"),
    ("gpu zone not a zone", variant("gke", gpuPool={"enabled": True, "accelerator": {"type": "nvidia-tesla-t4"},
                                                     "zones": ["us-central1"]}),
     "remote-kpo:gpuPool.zones[0]: not a Google Cloud zone like us-central1-a"),
]


@pytest.mark.parametrize("raw, expected", [(raw, expected) for _, raw, expected in BAD_INPUT],
                         ids=[case for case, _, _ in BAD_INPUT])
def test_bad_input_gives_one_message_naming_the_key(raw, expected):
    assert error_of(raw) == expected


def test_unknown_keys_come_first_each_with_the_nearest_key_on_one_line():
    raw = variant("existing", deployments=[{"name": "a", "xcom": "sometimes", "xcomm": False,
                                            "podDefaults": {"request": {"cpu": "1"}}}])
    lines = error_of(raw).splitlines()
    assert set(lines[:2]) == {"remote-kpo:deployments[0].xcomm: unknown key; did you mean `xcom`?",
                              "remote-kpo:deployments[0].podDefaults.request: unknown key; did you mean `requests`?"}
    assert lines[2:] == ["remote-kpo:deployments[0].xcom: must be true or false"]
@pytest.mark.parametrize("image", ["alpine", "alpine:3.24.2", "registry.example.com:5000/mirror/alpine:3.24.2",
                                   "ghcr.io/acme/base-images/alpine@sha256:" + "0" * 64,
                                   "123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/alpine:3.24"])
def test_a_deployment_names_its_own_xcom_sidecar_image(image):
    (d,) = config.load(variant("existing", deployments=[{"name": "a", "xcomSidecarImage": image}])).deployments
    assert d.xcom_sidecar_image == image
