"""Red team: a hostile DAG author with one Deployment's exported kubeconfig tries to hurt the other
tenants through the real API server (issue 20, items 1-6), and is refused with a message that says
what and why; a KPO-shaped pod and KPO's own label patch still go through the same kubeconfig.

Creates are server-side dry runs (every admission plugin runs, nothing is stored), except where a
pod must exist: the updates of item 5 and the finished pod that the quota keeps counting.
"""

import json
import time
import uuid
from pathlib import Path

import pytest

# kubeconfigs: the dev stack's exported kubeconfigs, as files.
from test_pod_security_real import dry_run_create, kpo_pod, kubeconfigs  # noqa: F401 - a fixture

NAMESPACES = {"analytics": "kpo-analytics", "ml-training": "kpo-ml-training"}
# The fake node's taint (scripts/local-cluster): a pod that tolerates it runs on kwok-node-0.
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
WAIT = 90


def eventually(check, what: str, limit: float = WAIT):
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit}s: {what}")
        time.sleep(1)


@pytest.fixture(scope="module")
def guarded(kubectl, kubeconfigs):
    """Both namespaces' guards in force: quota admission refuses every pod until the quota
    controller has filled a quota's status, and a new admission policy takes a moment to load."""
    for namespace in NAMESPACES.values():
        def quotas_ready(namespace=namespace):
            quotas = json.loads(kubectl("get", "resourcequota", "-n", namespace, "-o", "json").stdout)["items"]
            return len(quotas) == 4 and all(q.get("status", {}).get("hard") for q in quotas)
        eventually(quotas_ready, f"the quotas of {namespace} have a status")
    for name in NAMESPACES:
        eventually(lambda name=name: "remote-kpo: spec.nodeName" in dry_run_create(
            kubectl, task_pod("probe", nodeName="kwok-node-0"), kubeconfigs[name]).stderr,
            f"the admission policy of {name} refuses")
    return kubeconfigs


def task_pod(name: str, **spec_changes) -> dict:
    """KPO's pod shape, placed on the fake node as the e2e DAGs place theirs."""
    return kpo_pod(name, **({"tolerations": [KWOK_TOLERATION]} | spec_changes))


def refused(kubectl, kubeconfig: Path, pod: dict) -> str:
    result = dry_run_create(kubectl, pod, kubeconfig)
    assert result.returncode != 0, f"admitted: {result.stdout[:300]}"
    return result.stderr


def admitted(kubectl, kubeconfig: Path, pod: dict) -> dict:
    result = dry_run_create(kubectl, pod, kubeconfig)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_policy(stderr: str, namespace: str) -> bool:
    """The refusal came from this stack's admission policy for the namespace."""
    return f"ValidatingAdmissionPolicy 'remote-kpo-dev-{namespace}' with binding 'remote-kpo-dev-{namespace}' " \
           "denied request: remote-kpo: " in stderr


# ---- what still works ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(NAMESPACES))
def test_a_kpo_shaped_pod_with_its_xcom_sidecar_is_admitted_with_requests_and_limits(kubectl, guarded, name):
    pod = admitted(kubectl, guarded[name], task_pod("kpo-task"))
    for container in pod["spec"]["containers"]:
        assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert pod["status"]["qosClass"] == "Burstable"


def test_a_same_namespace_anti_affinity_term_is_still_allowed(kubectl, guarded):
    term = {"labelSelector": {"matchLabels": {"dag_id": "psa"}}, "topologyKey": "kubernetes.io/hostname"}
    admitted(kubectl, guarded["analytics"], task_pod("own-anti-affinity", affinity={
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}))


# ---- 1. preemption ---------------------------------------------------------------------------

@pytest.mark.parametrize("priority_class", ["system-node-critical", "system-cluster-critical"])
def test_a_task_cannot_use_a_system_priority_class_to_preempt_others(kubectl, guarded, priority_class):
    stderr = refused(kubectl, guarded["ml-training"], task_pod("preempt", priorityClassName=priority_class))
    assert by_policy(stderr, "kpo-ml-training"), stderr
    assert "priorityClassName system-node-critical and system-cluster-critical are reserved for the cluster's " \
           "own components: a task with one would preempt (evict) other Deployments' tasks" in stderr


def test_the_priority_quota_refuses_even_an_admin_in_a_deployment_namespace(kubectl, guarded):
    stderr = dry_run_create(kubectl, task_pod("admin-preempt", priorityClassName="system-node-critical"),
                            namespace="kpo-analytics").stderr
    assert "exceeded quota: remote-kpo-no-system-priority, requested: pods=1, used: pods=0, limited: pods=0" in stderr


# ---- 2. blocking every tenant ----------------------------------------------------------------

@pytest.mark.parametrize("scope", [{"namespaceSelector": {}}, {"namespaces": ["kpo-ml-training"]}])
@pytest.mark.parametrize("kind", ["podAntiAffinity", "podAffinity"])
def test_a_task_cannot_reach_other_namespaces_pods_through_affinity(kubectl, guarded, scope, kind):
    term = {"labelSelector": {"matchLabels": {"kubernetes_pod_operator": "True"}},
            "topologyKey": "kubernetes.io/hostname", **scope}
    pod = task_pod("block-all", affinity={kind: {"requiredDuringSchedulingIgnoredDuringExecution": [term]}})
    stderr = refused(kubectl, guarded["analytics"], pod)
    assert by_policy(stderr, "kpo-analytics"), stderr
    assert "pod (anti-)affinity may only refer to pods of this namespace" in stderr


def test_a_preferred_cross_namespace_term_is_refused_too_and_by_the_quota_for_an_admin(kubectl, guarded):
    term = {"weight": 100, "podAffinityTerm": {"labelSelector": {}, "topologyKey": "kubernetes.io/hostname",
                                               "namespaceSelector": {}}}
    pod = task_pod("prefer-all", affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [term]}})
    assert "pod (anti-)affinity may only refer to pods of this namespace" in refused(kubectl, guarded["analytics"], pod)
    stderr = dry_run_create(kubectl, pod, namespace="kpo-analytics").stderr
    assert "exceeded quota: remote-kpo-no-cross-namespace-affinity" in stderr


def test_a_task_cannot_skip_the_scheduler_with_node_name(kubectl, guarded):
    stderr = refused(kubectl, guarded["analytics"], task_pod("squat", nodeName="kwok-node-0"))
    assert by_policy(stderr, "kpo-analytics"), stderr
    assert "remote-kpo: spec.nodeName is not allowed; let the scheduler place the pod" in stderr


def test_an_admin_is_not_held_back_by_the_deployments_policy(kubectl, guarded):
    result = dry_run_create(kubectl, task_pod("admin-placed", nodeName="kwok-node-0"), namespace="kpo-analytics")
    assert result.returncode == 0, result.stderr


# ---- 3. unbounded use ------------------------------------------------------------------------

def test_a_container_cannot_ask_for_more_than_the_maximum(kubectl, guarded):
    pod = task_pod("huge")
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "64", "memory": "512Gi"}}
    stderr = refused(kubectl, guarded["analytics"], pod)
    assert "maximum cpu usage per Container is 4, but limit is 64" in stderr
    assert "maximum memory usage per Container is 16Gi, but limit is 512Gi" in stderr


def test_a_deployment_without_a_gpu_quota_gets_no_gpu(kubectl, guarded):
    pod = task_pod("gpu-grab")
    pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    stderr = refused(kubectl, guarded["analytics"], pod)
    assert "exceeded quota: remote-kpo-quota, requested: requests.nvidia.com/gpu=1" in stderr, stderr
    assert "limited: requests.nvidia.com/gpu=0" in stderr


def test_a_best_effort_pod_is_refused(kubectl, guarded):
    pod = task_pod("best-effort")
    zero = {"cpu": "0", "memory": "0"}
    for container in pod["spec"]["containers"]:
        container["resources"] = {"requests": zero, "limits": zero}
    stderr = refused(kubectl, guarded["ml-training"], pod)
    assert "exceeded quota: remote-kpo-no-best-effort, requested: pods=1, used: pods=0, limited: pods=0" in stderr


def test_finished_pods_still_count_against_the_quota(kubectl, guarded):
    """`pods` counts pods that have not finished; count/pods, every stored pod."""
    name = f"finished-{uuid.uuid4().hex[:6]}"
    pod = task_pod(name)
    pod["metadata"]["annotations"] = {"kwok.remote-kpo.local/sidecar-runtime": "0s"}
    kubectl("create", "-f", "-", kubeconfig=guarded["analytics"], stdin=json.dumps(pod))
    try:
        kubectl("wait", f"pod/{name}", "-n", "kpo-analytics", "--for=jsonpath={.status.phase}=Succeeded",
                f"--timeout={WAIT}s")

        def finished_counted():
            quota = json.loads(kubectl("get", "resourcequota", "remote-kpo-quota", "-n", "kpo-analytics",
                                       "-o", "json").stdout)
            used = quota["status"].get("used", {})
            return int(used.get("count/pods", 0)) > int(used.get("pods", 0))
        eventually(finished_counted, "the quota counts the finished pod in count/pods, not in pods")
        assert quota_hard(kubectl, "kpo-analytics")["count/pods"] == "200"
    finally:
        kubectl("delete", "pod", name, "-n", "kpo-analytics", "--wait=false")


def quota_hard(kubectl, namespace: str) -> dict:
    return json.loads(kubectl("get", "resourcequota", "remote-kpo-quota", "-n", namespace, "-o", "json").stdout)[
        "spec"]["hard"]


# ---- 4. squatting the GPU pool ---------------------------------------------------------------

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.mark.parametrize("placement", [
    {"nodeSelector": {"remote-kpo/gpu": "true"}, "tolerations": [KWOK_TOLERATION, GPU_TOLERATION]},
    {"tolerations": [GPU_TOLERATION]},
    {"tolerations": [{"operator": "Exists"}]},
    {"nodeSelector": {"remote-kpo/gpu": "true"}},
], ids=["select-and-tolerate", "tolerate", "tolerate-everything", "select"])
def test_a_pod_on_the_gpu_pool_must_request_a_gpu(kubectl, guarded, placement):
    stderr = refused(kubectl, guarded["ml-training"], task_pod("gpu-squat", **placement))
    assert by_policy(stderr, "kpo-ml-training"), stderr
    assert "a pod that selects or tolerates the GPU pool (node label remote-kpo/gpu, taint nvidia.com/gpu, or a " \
           "toleration of every taint) must request a GPU" in stderr


def test_the_gpu_task_shape_is_admitted_where_the_quota_has_gpus(kubectl, guarded):
    pod = task_pod("gpu-task", nodeSelector={"remote-kpo/gpu": "true"}, tolerations=[KWOK_TOLERATION, GPU_TOLERATION])
    pod["metadata"]["annotations"] = {"karpenter.sh/do-not-disrupt": "true",
                                      "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    admitted(kubectl, guarded["ml-training"], pod)
    # A GPU limit of zero holds the node all the same.
    pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "0"}}
    assert "must request a GPU" in refused(kubectl, guarded["ml-training"], pod)


# ---- 5. tampering ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def running_pod(kubectl, guarded):
    """A KPO task's pod, made through the Deployment's kubeconfig and kept running."""
    name = f"victim-{uuid.uuid4().hex[:6]}"
    pod = task_pod(name)
    pod["metadata"]["annotations"] = {"kwok.remote-kpo.local/runtime": "1h"}
    kubectl("create", "-f", "-", kubeconfig=guarded["analytics"], stdin=json.dumps(pod))
    yield name
    kubectl("delete", "pod", name, "-n", "kpo-analytics", "--wait=false")


def patch(kubectl, kubeconfig, name: str, body: dict, kind: str = "strategic"):
    return kubectl("patch", "pod", name, "-n", "kpo-analytics", "--type", kind, "-p", json.dumps(body),
                   kubeconfig=kubeconfig, check=False)


def test_kpos_already_checked_label_patch_goes_through(kubectl, guarded, running_pod):
    # The body of patch_already_checked (operators/pod.py).
    result = patch(kubectl, guarded["analytics"], running_pod, {"metadata": {"labels": {"already_checked": "True"}}})
    assert result.returncode == 0, result.stderr
    pod = json.loads(kubectl("get", "pod", running_pod, "-n", "kpo-analytics", "-o", "json").stdout)
    assert pod["metadata"]["labels"]["already_checked"] == "True"


@pytest.mark.parametrize("body, kind", [
    ([{"op": "replace", "path": "/spec/containers/0/image", "value": "evil:latest"}], "json"),
    # Pod validation allows adding tolerations, an image and a deadline to a running pod: only the
    # policy stands in the way.
    ([{"op": "add", "path": "/spec/tolerations/-", "value": GPU_TOLERATION}], "json"),
    ({"spec": {"activeDeadlineSeconds": 1}}, "merge"),
], ids=["image", "tolerations", "deadline"])
def test_a_task_cannot_change_a_running_pods_spec(kubectl, guarded, running_pod, body, kind):
    result = patch(kubectl, guarded["analytics"], running_pod, body, kind)
    assert result.returncode != 0
    assert by_policy(result.stderr, "kpo-analytics"), result.stderr
    assert "a pod cannot be changed once created (image, tolerations, annotations, ...): only the label " \
           "already_checked=True may be added" in result.stderr


def test_a_task_cannot_annotate_a_running_pod(kubectl, guarded, running_pod):
    result = patch(kubectl, guarded["analytics"], running_pod,
                   {"metadata": {"annotations": {"karpenter.sh/do-not-disrupt": "true"}}})
    assert result.returncode != 0
    assert "a pod cannot be changed once created" in result.stderr, result.stderr


@pytest.mark.parametrize("labels", [{"dag_id": "someone-else"}, {"already_checked": "False"}, {"dag_id": None}])
def test_a_task_cannot_relabel_a_running_pod(kubectl, guarded, running_pod, labels):
    result = patch(kubectl, guarded["analytics"], running_pod, {"metadata": {"labels": labels}})
    assert result.returncode != 0
    assert "a pod's labels cannot be changed once created: only the label already_checked=True may be added" \
           in result.stderr, result.stderr


def test_an_admin_may_still_annotate_a_running_pod(kubectl, guarded, running_pod):
    result = patch(kubectl, None, running_pod, {"metadata": {"annotations": {"ops/note": "checked"}}})
    assert result.returncode == 0, result.stderr


# ---- 6. Secrets and ServiceAccounts ----------------------------------------------------------

def _volume(secret: str) -> dict:
    pod = task_pod("mount")
    pod["spec"]["volumes"].append({"name": "stolen", "secret": {"secretName": secret}})
    return pod


def _projected(secret: str) -> dict:
    pod = task_pod("projected")
    pod["spec"]["volumes"].append({"name": "stolen", "projected": {"sources": [{"secret": {"name": secret}}]}})
    return pod


def _env(secret: str) -> dict:
    pod = task_pod("env")
    pod["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]
    return pod


def _env_from(secret: str) -> dict:
    pod = task_pod("env-from")
    pod["spec"]["containers"][1]["envFrom"] = [{"secretRef": {"name": secret}}]
    return pod


@pytest.mark.parametrize("secret", ["remote-kpo-token", "remote-kpo-registries"])
@pytest.mark.parametrize("build", [_volume, _projected, _env, _env_from], ids=["volume", "projected", "env", "envFrom"])
def test_a_pod_cannot_read_the_deployments_token_or_the_registry_login(kubectl, guarded, build, secret):
    stderr = refused(kubectl, guarded["analytics"], build(secret))
    assert by_policy(stderr, "kpo-analytics"), stderr
    assert "the Secrets remote-kpo-token and remote-kpo-registries (the Deployment's credentials and its " \
           "registry login) cannot be mounted or put in the environment" in stderr


def test_another_secret_of_the_namespace_may_still_be_mounted(kubectl, guarded):
    admitted(kubectl, guarded["analytics"], _volume("dag-settings"))


@pytest.fixture(scope="module")
def other_accounts(kubectl, guarded):
    """Accounts an admin made in the namespace (the ServiceAccount admission plugin refuses a pod
    of an account that does not exist before any policy sees it); `remote-kpo` is the Deployment's
    own."""
    made = ["remote-kpo-task", "builder"]
    for account in made:
        kubectl("create", "serviceaccount", account, "-n", "kpo-analytics")
    yield ["remote-kpo", *made]
    for account in made:
        kubectl("delete", "serviceaccount", account, "-n", "kpo-analytics", "--wait=false")


def test_a_pod_runs_only_as_default_here(kubectl, guarded, other_accounts):
    for account in other_accounts:
        stderr = refused(kubectl, guarded["analytics"], task_pod("as-other", serviceAccountName=account))
        assert by_policy(stderr, "kpo-analytics"), stderr
        assert "a task pod runs as the ServiceAccount default (service_account_name), not as another account of " \
               "the namespace such as the Deployment's own" in stderr
    admitted(kubectl, guarded["analytics"], task_pod("as-default", serviceAccountName="default"))
