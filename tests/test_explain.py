"""dags/remote_kpo_explain.py: why a task's pod waits or ended, from the objects' shapes as the API
server returns them (`kubectl get -o json`; the messages are those the scheduler, Karpenter v1.15
and the kubelet write, as test_explain_real.py and test_gpu_real.py see them on the local cluster),
and scripts/verify's --explain input handling."""

import argparse
import json

import pytest

from components.access import resource_quota_hard
from config import Deployment
from consumer import verify
from consumer.inputs import InputError, Target
from dags.remote_kpo_explain import QUOTA_KEYS, Facts, causes, render, tolerates

NAMESPACE = "kpo-ml-training"
GPU_TASK = {"nodeSelector": {"remote-kpo/gpu": "true"}, "resourceName": "nvidia.com/gpu",
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "annotations": {"karpenter.sh/do-not-disrupt": "true"}, "startupTimeoutSeconds": 900}
KARPENTER_LIMIT = ("Failed to schedule pod, all available instance types exceed limits for nodepool "
                   "(NodePool=remote-kpo-gpu)")
NOT_READABLE = ("not readable with this connection: cluster-scoped, and a Deployment's Role is namespaced; the "
                "platform team can run `scripts/verify --explain` with the admin kubeconfig")


def pod(name="train-x7k2", phase="Pending", node=None, selector=True, tolerations=None, gpu=True,
        memory="1Gi", conditions=None, container_statuses=None) -> dict:
    limits = {"cpu": "1", "memory": memory, **({"nvidia.com/gpu": "1"} if gpu else {})}
    spec = {"restartPolicy": "Never", "containers": [{"name": "base", "image": "ghcr.io/acme/train:1.4",
                                                      "resources": {"limits": limits, "requests": limits}}],
            "tolerations": GPU_TASK["tolerations"] if tolerations is None else tolerations}
    if selector:
        spec["nodeSelector"] = dict(GPU_TASK["nodeSelector"])
    if node:
        spec["nodeName"] = node
    status = {"phase": phase, "qosClass": "Guaranteed",
              "conditions": conditions if conditions is not None else [
                  {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                   "message": "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match "
                              "Pod's node affinity/selector. no new claims to deallocate, preemption: 0/2 nodes are "
                              "available: 1 No preemption victims found for incoming pod, 1 Preemption is not "
                              "helpful for scheduling."}]}
    if container_statuses:
        status["containerStatuses"] = container_statuses
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE,
                                                            "labels": {"kubernetes_pod_operator": "True"}},
            "spec": spec, "status": status}


def event(reason: str, message: str, component: str, kind="Warning", count=1) -> dict:
    return {"metadata": {"name": f"train-x7k2.{reason}", "namespace": NAMESPACE,
                         "creationTimestamp": "2026-12-05T10:00:00Z"},
            "involvedObject": {"kind": "Pod", "name": "train-x7k2", "namespace": NAMESPACE},
            "reason": reason, "message": message, "type": kind, "count": count,
            "source": {"component": component}, "lastTimestamp": f"2026-12-05T10:00:0{count}Z"}


def quota(used_gpu="1", hard_gpu="2", used_count="3", hard_count="80") -> dict:
    hard = {"count/pods": hard_count, "pods": "20", "requests.cpu": "8", "requests.memory": "16Gi",
            "requests.nvidia.com/gpu": hard_gpu}
    used = {"count/pods": used_count, "pods": "1", "requests.cpu": "1", "requests.memory": "1Gi",
            "requests.nvidia.com/gpu": used_gpu}
    return {"metadata": {"name": "remote-kpo-quota", "namespace": NAMESPACE}, "spec": {"hard": hard},
            "status": {"hard": hard, "used": used}}


FORBIDDING = {"metadata": {"name": "remote-kpo-no-best-effort"},
              "spec": {"hard": {"pods": "0"}, "scopes": ["BestEffort"]}, "status": {"hard": {"pods": "0"}, "used": {"pods": "0"}}}


def node_pool(gpus_used="1", limit="1") -> dict:
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "remote-kpo-gpu"},
            "spec": {"limits": {"nvidia.com/gpu": limit},
                     "template": {"metadata": {"labels": {"remote-kpo/gpu": "true"}},
                                  "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present",
                                                       "effect": "NoSchedule"}],
                                           "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass",
                                                            "name": "default"}}}},
            "status": {"resources": {"cpu": "4", "memory": "16Gi", "nodes": "1", "nvidia.com/gpu": gpus_used}}}


def node_claim(launched="True", reason="Launched", message="") -> dict:
    conditions = [{"type": "Launched", "status": launched, "reason": reason, "message": message}]
    if launched == "True":
        conditions += [{"type": "Registered", "status": "True"}, {"type": "Initialized", "status": "True"}]
    return {"metadata": {"name": "remote-kpo-gpu-hx2lq", "labels": {"karpenter.sh/nodepool": "remote-kpo-gpu"}},
            "status": {"nodeName": "gpu-node-1" if launched == "True" else None, "conditions": conditions}}


def as_deployment(**kwargs) -> Facts:
    """What a Deployment's connection reads: no NodePools or NodeClaims."""
    facts = Facts(NAMESPACE, "train-x7k2", **{"gpu_task": GPU_TASK, "quotas": [quota(), FORBIDDING], **kwargs})
    facts.unreadable = {"nodepools": NOT_READABLE, "nodeclaims": NOT_READABLE}
    return facts


def as_admin(**kwargs) -> Facts:
    defaults = {"node_pools": [node_pool()], "node_claims": [node_claim()], "quotas": [quota(), FORBIDDING]}
    return Facts(NAMESPACE, "train-x7k2", **{**defaults, **kwargs})


def test_an_admin_sees_the_node_pool_at_its_limit_named_with_its_usage_and_told_to_raise_max_nodes():
    facts = as_admin(pod=pod(), events=[event("FailedScheduling", KARPENTER_LIMIT, "karpenter")])
    [cause] = causes(facts)
    assert cause.what == "NodePool remote-kpo-gpu is at its limit: nvidia.com/gpu 1 of 1"
    assert cause.next_step.startswith("raise the GPU pool's size (gpuPool.maxNodes")
    out = render(facts)
    assert "  remote-kpo-gpu: limit nvidia.com/gpu 1 of 1" in out
    assert "  remote-kpo-gpu-hx2lq: gpu-node-1, Launched True, Registered True, Initialized True" in out
    # Without a gpuTask, the GPU pool's shape comes from the NodePool itself.
    assert "GPU pool (from NodePool remote-kpo-gpu)" in out


def test_a_deployment_learns_the_limit_from_karpenters_event_and_why_it_cannot_read_the_node_pool():
    facts = as_deployment(pod=pod(), events=[event("FailedScheduling", KARPENTER_LIMIT, "karpenter")])
    [cause] = causes(facts)
    assert cause.what == f"a NodePool is at its limit (Karpenter: {KARPENTER_LIMIT})"
    out = render(facts)
    assert f"NodePools\n  {NOT_READABLE}" in out
    assert f"NodeClaims\n  {NOT_READABLE}" in out


def test_a_node_pool_with_room_left_is_not_called_full():
    facts = as_admin(pod=pod(), node_pools=[node_pool(gpus_used="1", limit="4")], events=[
        event("FailedScheduling", "0/2 nodes are available: 1 Insufficient nvidia.com/gpu", "default-scheduler")])
    assert not any("NodePool" in c.what for c in causes(facts))
    assert "  remote-kpo-gpu: limit nvidia.com/gpu 1 of 4" in render(facts)


def test_a_gpu_pod_without_the_toleration_is_told_to_pass_the_gpu_tasks_tolerations_once():
    karpenter = ("Failed to schedule pod, did not tolerate taint (taint=nvidia.com/gpu=present:NoSchedule)")
    facts = as_deployment(pod=pod(tolerations=[{"key": "kwok.x-k8s.io/node", "operator": "Exists",
                                                "effect": "NoSchedule"}]),
                          events=[event("FailedScheduling", karpenter, "karpenter")])
    [cause] = causes(facts)
    assert cause.what == "the pod does not tolerate the GPU nodes' taint nvidia.com/gpu:NoSchedule"
    assert cause.next_step == "pass the gpuTask's tolerations (README: GPU tasks)"
    assert "  tolerations: missing for nvidia.com/gpu:NoSchedule" in render(facts)


def test_without_a_gpu_task_karpenters_taint_event_still_names_the_missing_toleration():
    karpenter = "Failed to schedule pod, did not tolerate taint (taint=nvidia.com/gpu=present:NoSchedule)"
    facts = as_deployment(pod=pod(tolerations=[]), events=[event("FailedScheduling", karpenter, "karpenter")])
    facts.gpu_task = None
    [cause] = causes(facts)
    assert cause.what == f"Karpenter: {karpenter}"
    assert "add a toleration for that taint" in cause.next_step
    assert "shape unknown" in render(facts)


def test_a_gpu_pod_without_the_pools_selector_is_told_to_pass_the_node_selector():
    facts = as_admin(pod=pod(selector=False), node_pools=[node_pool(gpus_used="0")])
    [cause] = causes(facts)
    assert cause.what == "the pod does not select the GPU pool: no nodeSelector remote-kpo/gpu=true"
    assert cause.next_step == "pass the gpuTask's nodeSelector (README: GPU tasks)"


def test_a_launch_karpenter_could_not_make_is_named_with_its_reason():
    facts = as_admin(pod=pod(), node_pools=[node_pool(gpus_used="0", limit="4")],
                     node_claims=[node_claim("False", "InsufficientCapacityError", "all requested instance types "
                                             "were unavailable during launch")])
    [cause] = causes(facts)
    assert cause.what == ("Karpenter could not launch NodeClaim remote-kpo-gpu-hx2lq: InsufficientCapacityError: "
                          "all requested instance types were unavailable during launch")
    assert "GPU quota" in cause.next_step


def test_a_pod_the_quota_refused_is_explained_by_the_used_up_resource_and_its_config_key():
    facts = as_deployment(quotas=[quota(used_gpu="2", hard_gpu="2"), FORBIDDING])
    missing, full = causes(facts)
    assert missing.what.startswith("no pod train-x7k2 in kpo-ml-training: KPO deletes its pod when the task ends")
    assert full.what == ("quota used up: remote-kpo-quota requests.nvidia.com/gpu 2 of 2; a new pod asking for it "
                         "is refused at creation (`exceeded quota`)")
    assert full.next_step.endswith("or raise the Deployment's `quota.gpu` and `pulumi up`")
    out = render(facts)
    assert "  no such pod" in out
    assert "requests.nvidia.com/gpu 2/2 FULL" in out
    # The quotas that admit no pod of a kind are not quota use.
    assert "remote-kpo-no-best-effort" not in out


def test_finished_pods_filling_total_pods_are_told_apart_from_running_ones():
    facts = as_deployment(quotas=[quota(used_count="80", hard_count="80")])
    full = causes(facts)[-1]
    assert full.what.startswith("quota used up: remote-kpo-quota count/pods 80 of 80")
    assert "finished pods count here too" in full.next_step and "`quota.totalPods`" in full.next_step


def test_an_image_that_never_pulls_is_named_with_the_image_and_the_registries_key():
    statuses = [{"name": "base", "image": "ghcr.io/acme/train:1.4", "ready": False, "restartCount": 0,
                 "started": False, "state": {"waiting": {"reason": "ImagePullBackOff",
                                                         "message": 'Back-off pulling image "ghcr.io/acme/train:1.4"'}}}]
    facts = as_deployment(pod=pod(node="kwok-node-0", gpu=False, selector=False, tolerations=[], conditions=[
        {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        container_statuses=statuses))
    [cause] = causes(facts)
    assert cause.what == ('container base cannot pull its image ghcr.io/acme/train:1.4: ImagePullBackOff: '
                          'Back-off pulling image "ghcr.io/acme/train:1.4"')
    assert "`registries`" in cause.next_step
    assert "  container base: waiting ImagePullBackOff" in render(facts)


def test_an_oom_killed_container_is_told_to_raise_its_memory_limit_within_the_deployments_max():
    statuses = [{"name": "base", "image": "busybox:1.36", "ready": False, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
    facts = as_deployment(pod=pod(phase="Failed", node="kwok-node-0", gpu=False, selector=False, memory="512Mi",
                                  conditions=[{"type": "PodScheduled", "status": "True"}],
                                  container_statuses=statuses))
    [cause] = causes(facts)
    assert cause.what == "container base was OOM-killed: it used more memory than its limit (512Mi)"
    assert "podDefaults.max.memory" in cause.next_step
    out = render(facts)
    assert "  container base: terminated OOMKilled exit 137" in out
    assert "  not a GPU pod: asks for no nvidia.com/gpu and selects no GPU node label" in out


def test_a_running_pod_has_nothing_holding_it_back():
    statuses = [{"name": "base", "image": "busybox:1.36", "ready": True, "restartCount": 0,
                 "state": {"running": {"startedAt": "2026-12-05T10:00:00Z"}}}]
    facts = as_admin(pod=pod(phase="Running", node="gpu-node-1", conditions=[
        {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}], container_statuses=statuses))
    assert causes(facts) == []
    out = render(facts)
    assert "phase Running on node gpu-node-1" in out and out.endswith("nothing holds this pod back")


def test_the_summary_fits_one_screen_with_the_latest_events():
    events = [event("FailedScheduling", f"attempt {i}", "default-scheduler", count=i % 9 + 1) for i in range(30)]
    out = render(as_admin(pod=pod(), events=events))
    assert len(out.splitlines()) <= 40
    assert sum(line.startswith("  Warning FailedScheduling") for line in out.splitlines()) == 8


@pytest.mark.parametrize("toleration, taint, expected", [
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
     {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, True),
    ({"operator": "Exists"}, {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, True),
    ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "absent", "effect": "NoSchedule"},
     {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, False),
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"},
     {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, False),
    ({"key": "kwok.x-k8s.io/node", "operator": "Exists"}, {"key": "nvidia.com/gpu", "effect": "NoSchedule"}, False),
])
def test_tolerations_follow_kubernetes_matching(toleration, taint, expected):
    assert tolerates(toleration, taint) is expected


def test_every_resource_of_a_deployments_quota_maps_to_its_config_key():
    assert set(QUOTA_KEYS) == set(resource_quota_hard(Deployment(name="analytics")))


# --- scripts/verify --explain ---------------------------------------------------------------------

def args(*argv: str) -> argparse.Namespace:
    return verify.parse_args(list(argv))


@pytest.mark.parametrize("reference", ["train-x7k2", "kpo-ml-training/", "/train", "a/b/c"])
def test_explain_refuses_a_reference_that_is_not_namespace_slash_pod_in_one_line(reference, capsys):
    assert verify.main(["--stack", "dev", "--explain", reference]) == 2
    assert capsys.readouterr().err.strip() == (f"verify: --explain {reference}: expected NAMESPACE/POD, "
                                               "e.g. kpo-analytics/train-x7k2")


def test_a_kubeconfig_without_explain_is_refused(capsys):
    assert verify.main(["--kubeconfig", "admin.kubeconfig"]) == 2
    assert "--kubeconfig goes with --explain" in capsys.readouterr().err


def test_explain_takes_the_deployment_whose_namespace_holds_the_pod():
    targets = [Target("analytics", "kpo-analytics", {}, None), Target("ml-training", NAMESPACE, {}, None)]
    assert verify.explain_target(targets, NAMESPACE).name == "ml-training"
    with pytest.raises(InputError, match="no Deployment of the stack runs in namespace kpo-x "
                                         r"\(its namespaces: kpo-analytics, kpo-ml-training\)"):
        verify.explain_target(targets, "kpo-x")


def test_a_connection_variable_brings_the_gpu_task_variable_astro_env_set_beside_it():
    environ = {"AIRFLOW_CONN_KPO_ML_TRAINING": "{}", "AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_ML_TRAINING":
               json.dumps(GPU_TASK)}
    assert verify.gpu_task_variable("AIRFLOW_CONN_KPO_ML_TRAINING", environ) == GPU_TASK
    assert verify.gpu_task_variable("AIRFLOW_CONN_KPO_ANALYTICS", environ) is None
    with pytest.raises(InputError, match="AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_ML_TRAINING: not JSON"):
        verify.gpu_task_variable("AIRFLOW_CONN_KPO_ML_TRAINING",
                                 {"AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_ML_TRAINING": "{"})
