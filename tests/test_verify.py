"""scripts/verify's pure parts: input parsing, the step-1 plugin check, pod shapes, review
attributes, rendering. The steps that ask the API server run for real in tests/e2e/test_verify_real.py."""

import io
import json
import subprocess
from argparse import Namespace

import pytest

from components import kubeconfig as kc
from components.disruption import task_shape
from components.gpu import gpu_task
from config import GpuPool
from consumer import inputs
from consumer.inputs import InputError, Target, target_from_connection, targets_from_outputs
from consumer.verify import (Report, StepResult, admission_fix, check_plugin, gpu_pod, kpo_pod, load_targets,
                             privileged_pod, task_pod, render_json, render_table, resource_attributes)
from harness import ROOT, json_api


def connection(user: dict, namespace: str = "kpo-analytics") -> dict:
    doc = kc.kubeconfig(cluster_name="c1", server="https://k.example", ca_data="Q0E=", namespace=namespace,
                        user_name="c1-analytics", user=user)
    return kc.airflow_connection(doc, namespace)


def outputs(cloud: str = "gke", user: dict | None = None, **extra) -> dict:
    user = user or kc.gke_user()
    return {"cloud": cloud, "dockerfile": kc.DOCKERFILE[cloud],
            "deployments": {"analytics": {"namespace": "kpo-analytics", "connectionId": "kpo_analytics",
                                          "envVar": "AIRFLOW_CONN_KPO_ANALYTICS"},
                            "ml-training": {"namespace": "kpo-ml-training", "connectionId": "kpo_ml_training",
                                            "envVar": "AIRFLOW_CONN_KPO_ML_TRAINING"}},
            "airflowConnections": {"analytics": kc.to_json(connection(user)),
                                   "ml-training": kc.to_json(connection(user, "kpo-ml-training"))},
            **extra}


def test_stack_outputs_give_one_target_per_deployment_with_the_dockerfile_output():
    targets = targets_from_outputs(outputs(), "prod")
    assert [(t.name, t.namespace) for t in targets] == [("analytics", "kpo-analytics"),
                                                          ("ml-training", "kpo-ml-training")]
    assert targets[0].dockerfile == kc.DOCKERFILE["gke"]
    assert targets[0].kube_config["users"][0]["user"] == kc.gke_user()
    assert targets[0].gpu_task is None


def test_stack_task_output_reaches_every_target():
    task = task_shape("eks")
    assert all(t.task == task for t in targets_from_outputs(outputs(task=task), "prod"))
    assert targets_from_outputs(outputs(), "prod")[0].task is None


def test_the_kpo_pod_is_shaped_by_the_task_output_when_the_stack_has_one():
    task = task_shape("eks")
    pod = task_pod("kpo-a", task)
    assert pod["metadata"]["annotations"] == task["annotations"]
    assert pod["spec"]["nodeSelector"] == {"remote-kpo/tasks": "true"}
    assert pod["spec"]["tolerations"] == task["tolerations"]
    # Without one (a connection given alone, an older stack): KPO's own shape, as before.
    assert task_pod("kpo-a", None) == kpo_pod("kpo-a")
    assert "nodeSelector" not in kpo_pod("kpo-a")["spec"]


def test_stack_gpu_task_output_reaches_every_target():
    task = gpu_task("gke", GpuPool(enabled=True))
    assert all(t.gpu_task == task for t in targets_from_outputs(outputs(gpuTask=task), "prod"))


def test_outputs_read_without_show_secrets_are_one_clear_line():
    with pytest.raises(InputError, match=r"^stack prod: `airflowConnections` is '\[secret\]', not the connections "
                                         r"\(read with --show-secrets\)$"):
        targets_from_outputs(outputs(airflowConnections="[secret]"), "prod")


def test_outputs_of_a_stack_that_is_not_remote_kpo_are_one_clear_line():
    with pytest.raises(InputError, match="^stack other: no `deployments` output"):
        targets_from_outputs({"url": "https://x"}, "other")


@pytest.mark.parametrize("text, message", [
    ("kubernetes://?extra__kubernetes__in_cluster=True", r"^AIRFLOW_CONN_KPO_X: not JSON \(Expecting value"),
    ("[1]", r"^AIRFLOW_CONN_KPO_X: not a JSON object$"),
    # `jq -c '.["analytics"]'` of the airflowConnections output: the connection JSON, quoted once more.
    (json.dumps('{"conn_type": "kubernetes", "extra": {}}'),
     r"^AIRFLOW_CONN_KPO_X: a quoted JSON string, not a JSON object \(take it out of `pulumi stack output --json` "
     r"with `jq -r`, not `jq -c`\)$"),
    ('{"conn_type": "postgres"}', r"^AIRFLOW_CONN_KPO_X: conn_type is 'postgres', not 'kubernetes'$"),
    ('{"conn_type": "kubernetes", "extra": {"namespace": "a"}}', r"^AIRFLOW_CONN_KPO_X: extra has no kube_config"),
    ('{"extra": {"kube_config": "{oops"}}', r"^AIRFLOW_CONN_KPO_X: extra.kube_config: not JSON"),
    ("  ", r"^AIRFLOW_CONN_KPO_X: empty"),
])
def test_a_connection_that_is_not_a_kubernetes_connection_json_is_one_clear_line(text, message):
    with pytest.raises(InputError, match=message):
        target_from_connection(text, "AIRFLOW_CONN_KPO_X")


def test_a_connection_with_extra_and_kube_config_as_strings_is_read_as_airflow_reads_it():
    conn = connection(kc.aks_user("c", "t"))
    conn["extra"]["kube_config"] = json.dumps(conn["extra"]["kube_config"])
    conn["extra"] = json.dumps(conn["extra"])
    target = target_from_connection(json.dumps(conn), "AIRFLOW_CONN_KPO_ANALYTICS")
    # Named as Airflow names it: the connection id of the variable.
    assert (target.name, target.namespace) == ("kpo_analytics", "kpo-analytics")
    # No stack outputs: the Dockerfile lines of the cloud whose plugin the kubeconfig runs.
    assert target.dockerfile == kc.DOCKERFILE["aks"]


def test_a_plugin_named_by_its_path_still_gets_its_clouds_dockerfile_lines():
    user = kc.eks_user("r", "c", "arn")
    user["exec"]["command"] = "/usr/local/bin/aws"
    target = target_from_connection(json.dumps(connection(user)), "stdin")
    assert target.dockerfile == kc.DOCKERFILE["eks"]
    result = check_plugin(target, which=lambda command: None)
    assert result.detail == "exec plugin '/usr/local/bin/aws' is not found"


def test_a_token_connection_needs_no_dockerfile_lines():
    assert target_from_connection(json.dumps(connection(kc.token_user("t"))), "stdin").dockerfile is None


def test_unknown_stack_is_the_pulumi_error_line():
    def pulumi(command, **_):
        return subprocess.CompletedProcess(command, 255, "", "error: no stack named 'nope' found\n")

    with pytest.raises(InputError, match=r"^pulumi stack output --stack nope: error: no stack named 'nope' found$"):
        inputs.run_pulumi_outputs("nope", run=pulumi)


def test_connection_env_names_the_variable_when_unset():
    args = Namespace(stack=None, connection_env="AIRFLOW_CONN_KPO_X", name="connection")
    with pytest.raises(InputError, match="^AIRFLOW_CONN_KPO_X: not set$"):
        load_targets(args, environ={})


def test_connection_from_stdin_is_reported_under_its_name():
    args = Namespace(stack=None, connection_env=None, name="astro-prod")
    [target] = load_targets(args, stdin=io.StringIO(json.dumps(connection(kc.token_user("t")))))
    assert target.name == "astro-prod"


@pytest.mark.parametrize("cloud, user", [("gke", kc.gke_user()), ("eks", kc.eks_user("r", "c", "arn")),
                                         ("aks", kc.aks_user("c", "t"))])
def test_step_1_fails_when_the_exec_plugin_is_not_on_path_with_the_dockerfile_lines(cloud, user):
    [target, _] = targets_from_outputs(outputs(cloud, user), "prod")
    result = check_plugin(target, which=lambda command: None)
    assert not result.ok
    assert result.detail == f"exec plugin {kc.EXEC_PLUGINS[cloud]!r} is not found on PATH"
    assert result.hint == kc.DOCKERFILE[cloud]


def test_step_1_passes_with_the_plugin_found_and_for_a_token():
    [target, _] = targets_from_outputs(outputs(), "prod")
    assert check_plugin(target, which=lambda command: f"/usr/bin/{command}") == StepResult(
        "plugin", True, "/usr/bin/gke-gcloud-auth-plugin")
    token = target_from_connection(json.dumps(connection(kc.token_user("t"))), "stdin")
    assert check_plugin(token, which=lambda command: None).ok


@pytest.mark.parametrize("verb, resource, expected", [
    ("create", "pods/exec", {"verb": "create", "resource": "pods", "subresource": "exec", "group": ""}),
    ("bind", "roles.rbac.authorization.k8s.io", {"verb": "bind", "resource": "roles",
                                                  "group": "rbac.authorization.k8s.io"}),
    ("create", "deployments.apps", {"verb": "create", "resource": "deployments", "group": "apps"}),
    ("create", "serviceaccounts/token", {"verb": "create", "resource": "serviceaccounts", "subresource": "token",
                                         "group": ""}),
    ("get", "localqueues.visibility.kueue.x-k8s.io/pendingworkloads",
     {"verb": "get", "resource": "localqueues", "subresource": "pendingworkloads", "group": "visibility.kueue.x-k8s.io"}),
])
def test_access_review_attributes_follow_rbac_spelling(verb, resource, expected):
    assert resource_attributes(verb, resource, "ns") == {**expected, "namespace": "ns"}


def test_gpu_pod_carries_the_gpu_task_output():
    task = gpu_task("aks", GpuPool(enabled=True, spot=True))
    pod = gpu_pod("kpo-a", task)
    assert pod["spec"]["nodeSelector"] == {"remote-kpo/gpu": "true"}
    assert pod["spec"]["tolerations"] == task["tolerations"] and len(task["tolerations"]) == 2
    assert pod["metadata"]["annotations"] == task["annotations"]
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    # The KPO shape stays the same otherwise.
    assert pod["metadata"]["labels"] == kpo_pod("kpo-a")["metadata"]["labels"]


def test_privileged_pod_differs_from_the_kpo_pod_only_by_privilege():
    pod, kpo = privileged_pod("ns"), kpo_pod("ns")
    assert pod["spec"]["containers"][0].pop("securityContext") == {"privileged": True}
    kpo["spec"]["containers"][0].pop("securityContext")
    assert pod["spec"] == kpo["spec"]


@pytest.mark.parametrize("message, fix", [
    ('pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged', "Pod Security level"),
    ('pods "x" is forbidden: failed quota: remote-kpo-quota: must specify requests.cpu', "podDefaults"),
    ('pods "x" is forbidden: exceeded quota: remote-kpo-quota', "raise the Deployment's quota"),
    ("pods \"x\" is forbidden: ValidatingAdmissionPolicy 'remote-kpo-dev-kpo-a' with binding 'remote-kpo-dev-kpo-a' "
     "denied request: remote-kpo: spec.nodeName is not allowed", "admission policy refuses this pod"),
])
def test_admission_refusals_get_the_matching_fix(message, fix):
    assert fix in admission_fix(message)


def failing_reports() -> list[Report]:
    good = Report("analytics", "kpo-analytics", "system:serviceaccount:kpo-analytics:remote-kpo",
                  [StepResult(step, True, "fine") for step in ("plugin", "identity", "permissions", "admission",
                                                               "pod security")])
    bad = Report("ml-training", "kpo-ml-training", None,
                 [StepResult("plugin", False, "exec plugin 'aws' is not found on PATH", "add the lines",
                             "USER root\nRUN x")])
    return [good, bad]


def test_table_shows_each_step_per_deployment_and_the_failure_with_its_fix():
    lines = render_table(failing_reports()).splitlines()
    assert lines[0].split() == ["DEPLOYMENT", "NAMESPACE", "1", "PLUGIN", "2", "IDENTITY", "3", "PERMISSIONS",
                                "4", "ADMISSION", "5", "POD", "SECURITY", "USER"]
    assert lines[1].split() == ["analytics", "kpo-analytics", "ok", "ok", "ok", "ok", "ok",
                                "system:serviceaccount:kpo-analytics:remote-kpo"]
    assert lines[2].split() == ["ml-training", "kpo-ml-training", "FAIL", "-", "-", "-", "-", "-"]
    assert lines[3:] == ["", "ml-training: step 1 (plugin) failed: exec plugin 'aws' is not found on PATH",
                         "  fix: add the lines", "    USER root", "    RUN x", "",
                         "verify: 1 of 2 Deployments pass every step"]


def test_json_output_says_which_deployment_failed_at_which_step():
    document = json.loads(render_json(failing_reports()))
    assert document["ok"] is False
    assert [(d["name"], d["ok"], len(d["steps"])) for d in document["deployments"]] == [
        ("analytics", True, 5), ("ml-training", False, 1)]
    assert document["deployments"][1]["steps"][0]["hint"] == "USER root\nRUN x"


@pytest.mark.parametrize("args, stdin, message", [
    (["--connection"], "not json", "verify: connection: not JSON (Expecting value at line 1 column 1)\n"),
    (["--connection-env", "AIRFLOW_CONN_NOPE"], "", "verify: AIRFLOW_CONN_NOPE: not set\n"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(args, stdin, message):
    result = subprocess.run([str(ROOT / "scripts/verify"), *args], input=stdin, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"})
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)


def test_an_unreachable_server_is_described_without_urllib3_object_reprs():
    import urllib3

    from consumer.verify import connection_reason

    with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:
        urllib3.PoolManager(retries=0).request("GET", "https://127.0.0.1:1/")
    assert connection_reason(raised.value) == ("HTTPSConnection(host='127.0.0.1', port=1): "
                                               "Failed to establish a new connection: [Errno 111] Connection refused")


@pytest.mark.parametrize("host, fix", [
    ("https://127.0.0.1:26443", "the API server is not running on this machine"),
    ("https://localhost:6443", "the API server is not running on this machine"),
    ("https://[::1]:6443", "the API server is not running on this machine"),
    # Refused far away: a firewall or authorized networks, as before.
    ("https://kpo.example.com:443", "Astro must reach the API server: check the cluster's authorized networks"),
])
def test_a_refused_connection_on_this_machine_means_the_api_server_is_not_running(host, fix):
    from consumer.verify import reach_fix

    assert reach_fix(host, "Failed to establish a new connection: [Errno 111] Connection refused").startswith(fix)


def test_a_timeout_on_a_local_address_still_points_at_the_network():
    from consumer.verify import reach_fix

    assert reach_fix("https://127.0.0.1:26443", "Read timed out. (read timeout=30)").startswith(
        "Astro must reach the API server")


def test_a_kubeconfig_in_the_environment_is_reported_with_what_it_breaks():
    from consumer.verify import kubeconfig_env_warning
    assert kubeconfig_env_warning({"PATH": "/bin"}) is None
    assert kubeconfig_env_warning({"KUBECONFIG": ""}) is None
    warning = kubeconfig_env_warning({"KUBECONFIG": "/home/astro/.kube/config"})
    assert "(/home/astro/.kube/config)" in warning
    # The trigger's own words, so a person can match the task log.
    assert ('"Options kube_config_path, kube_config, in_cluster, and config_dict are mutually exclusive"'
            in warning)
    assert "deferrable" in warning and "Unset KUBECONFIG" in warning


def test_verify_warns_on_stderr_when_kubeconfig_is_set_and_its_output_stays_the_report(tmp_path):
    import os
    # Nothing listens on port 1: step 2 fails at once, without the network.
    doc = kc.kubeconfig(cluster_name="c1", server="https://127.0.0.1:1", ca_data="Q0E=", namespace="kpo-a",
                        user_name="c1-a", user=kc.token_user("t"))
    conn = kc.to_json(kc.airflow_connection(doc, "kpo-a"))
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "admin.kubeconfig")}
    done = subprocess.run([str(ROOT / "scripts/verify"), "--connection", "--json"], input=conn, env=env,
                          capture_output=True, text=True, timeout=120)
    assert f"verify: warning: KUBECONFIG is set in this environment ({tmp_path / 'admin.kubeconfig'})" in done.stderr
    assert json.loads(done.stdout)["deployments"][0]["name"] == "connection"


class OldApiServer:
    """An API server from before Kubernetes 1.28 as far as identity goes: SelfSubjectReview v1 is
    not found, v1beta1 (1.27) is served or not, SelfSubjectAccessReview is. No Kubernetes of those
    versions runs here, so a stand-in answers, recording the paths asked."""

    def __init__(self, beta: bool):
        self.paths: list[str] = []

        def answer(path: str, headers: dict, request: dict) -> tuple[int, dict]:
            self.paths.append(path)
            if path.endswith("/v1beta1/selfsubjectreviews") and beta:
                return 201, {"kind": "SelfSubjectReview", "status": {"userInfo": {"username": "old:user"}}}
            if path.endswith("/selfsubjectaccessreviews"):
                return 201, {"kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": "get"}},
                             "status": {"allowed": True}}
            return 404, {"kind": "Status", "code": 404, "message": "the server could not find the requested resource"}

        self.server = json_api(answer)

    def target(self) -> Target:
        doc = kc.kubeconfig(cluster_name="old", server=f"http://127.0.0.1:{self.server.server_port}", ca_data="",
                            namespace="kpo-a", user_name="u", user=kc.token_user("t0ken"))
        del doc["clusters"][0]["cluster"]["certificate-authority-data"]
        return Target("a", "kpo-a", doc, None)


@pytest.mark.parametrize("beta, user, asked", [
    (True, "old:user", ["/apis/authentication.k8s.io/v1/selfsubjectreviews",
                        "/apis/authentication.k8s.io/v1beta1/selfsubjectreviews"]),
    (False, "authenticated (unnamed: SelfSubjectReview needs Kubernetes 1.27+)",
     ["/apis/authentication.k8s.io/v1/selfsubjectreviews", "/apis/authentication.k8s.io/v1beta1/selfsubjectreviews",
      "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]),
])
def test_a_cluster_without_selfsubjectreview_v1_still_passes_the_identity_step(beta, user, asked):
    from consumer.verify import check_identity

    server = OldApiServer(beta)
    try:
        step, api = check_identity(server.target())
    finally:
        server.server.shutdown()
    assert (step.ok, step.detail) == (True, user)
    assert server.paths == asked


def test_verify_runs_where_only_the_kubernetes_client_is_installed():
    # The Airflow venv is such a Python (Astro's image too): kubernetes, no pulumi.
    airflow_python = ROOT / ".venv-airflow/bin/python"
    assert subprocess.run([str(airflow_python), "-c", "import pulumi"], capture_output=True).returncode == 1
    result = subprocess.run([str(airflow_python), "-m", "consumer.verify", "--connection"], input="  ", cwd=ROOT,
                            capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (2, "verify: connection: empty (expected an Airflow connection JSON)\n")


# ---- the Deployment's queue (queueing) ---------------------------------------------------------

def workload(name: str, created: str, *, pod: str, priority: int = 0, admitted: bool = False,
             finished: bool = False, uid: str = "") -> dict:
    conditions = [{"type": kind, "status": "True"} for kind, on in (("Admitted", admitted), ("Finished", finished)) if on]
    return {"metadata": {"name": name, "creationTimestamp": created, "uid": uid,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod}]},
            "spec": {"priority": priority}, "status": {"conditions": conditions}}


def test_waiting_tasks_are_in_kueues_order_higher_priority_then_older_without_admitted_or_finished_ones():
    from consumer.verify import waiting_in_line

    workloads = [workload("w1", "2026-01-01T10:00:02Z", pod="late"),
                 workload("w2", "2026-01-01T10:00:00Z", pod="running", admitted=True),
                 workload("w3", "2026-01-01T10:00:01Z", pod="early"),
                 workload("w4", "2026-01-01T09:00:00Z", pod="done", admitted=True, finished=True),
                 workload("w5", "2026-01-01T10:00:03Z", pod="urgent", priority=10)]
    assert waiting_in_line(workloads) == ["urgent", "early", "late"]


def test_waiting_tasks_created_in_the_same_second_are_in_kueues_order_by_uid():
    from consumer.verify import waiting_in_line

    # Listed by name, as the API server lists them; Kueue takes the lower UID first.
    workloads = [workload("pod-a", "2026-01-01T10:00:00Z", pod="second", uid="f9"),
                 workload("pod-b", "2026-01-01T10:00:00Z", pod="first", uid="0c")]
    assert waiting_in_line(workloads) == ["first", "second"]


class KueueApiServer:
    """Answers the GETs verify makes of Kueue's API, as a cluster with or without the visibility API."""

    def __init__(self, local_queue_status: int = 200, visibility: bool = True):
        self.paths: list[str] = []
        base = "/apis/kueue.x-k8s.io/v1beta2/namespaces/kpo-a"

        def answer(path: str, headers: dict, request: dict) -> tuple[int, dict]:
            self.paths.append(path)
            if path == f"{base}/localqueues/default":
                if local_queue_status != 200:
                    return local_queue_status, {"kind": "Status", "code": local_queue_status}
                return 200, {"spec": {"clusterQueue": "remote-kpo-dev-kpo-a"},
                             "status": {"admittedWorkloads": 1, "pendingWorkloads": 2}}
            if path == "/apis/visibility.kueue.x-k8s.io/v1beta2/namespaces/kpo-a/localqueues/default/pendingworkloads":
                if not visibility:
                    return 404, {"kind": "Status", "code": 404}
                return 200, {"items": [
                    {"metadata": {"name": "w3", "ownerReferences": [{"kind": "Pod", "name": "second"}]},
                     "positionInLocalQueue": 1},
                    {"metadata": {"name": "w1", "ownerReferences": [{"kind": "Pod", "name": "first"}]},
                     "positionInLocalQueue": 0}]}
            if path == f"{base}/workloads":
                return 200, {"items": [workload("w1", "2026-01-01T10:00:00Z", pod="older"),
                                       workload("w2", "2026-01-01T10:00:05Z", pod="newer")]}
            return 404, {"kind": "Status", "code": 404}

        self.server = json_api(answer)

    def view(self):
        from consumer.verify import connect, queue_view

        doc = kc.kubeconfig(cluster_name="k", server=f"http://127.0.0.1:{self.server.server_port}", ca_data="",
                            namespace="kpo-a", user_name="u", user=kc.token_user("t0ken"))
        del doc["clusters"][0]["cluster"]["certificate-authority-data"]
        api, _ = connect(Target("a", "kpo-a", doc, None))
        try:
            return queue_view(api, "kpo-a")
        finally:
            self.server.shutdown()


def test_verify_shows_the_queue_and_each_waiting_tasks_place_from_kueues_visibility_api():
    from consumer.verify import QueueView, render_queue

    view = KueueApiServer().view()
    assert view == QueueView("default", "remote-kpo-dev-kpo-a", 1, 2, ["first", "second"], "Kueue's visibility API")
    assert render_queue("analytics", view) == [
        "analytics: queue default (ClusterQueue remote-kpo-dev-kpo-a): 1 admitted, 2 waiting",
        "  1. first", "  2. second", "  (order: Kueue's visibility API)"]


def test_without_the_visibility_api_the_places_come_from_the_workloads():
    view = KueueApiServer(visibility=False).view()
    assert (view.in_line, view.order) == (["older", "newer"], "priority, then age (the visibility API is not served)")


@pytest.mark.parametrize("status", [404, 403])
def test_a_namespace_without_a_readable_local_queue_shows_no_queue(status):
    server = KueueApiServer(local_queue_status=status)
    assert server.view() is None
    assert server.paths == ["/apis/kueue.x-k8s.io/v1beta2/namespaces/kpo-a/localqueues/default"]


def test_the_table_and_json_show_a_queue_only_for_a_queued_deployment():
    from consumer.verify import QueueView

    passed = [StepResult(step, True, "ok") for step in ("plugin", "identity", "permissions", "admission",
                                                         "pod security")]
    queued = Report("ml", "kpo-ml", "u", passed, QueueView("default", "cq", 0, 1, ["p"], "o"))
    plain = Report("analytics", "kpo-analytics", "u", passed)
    table = render_table([queued, plain])
    assert "ml: queue default (ClusterQueue cq): 0 admitted, 1 waiting" in table
    assert "analytics: queue" not in table
    data = json.loads(render_json([queued, plain]))
    assert [d["queue"] for d in data["deployments"]] == [
        {"local_queue": "default", "cluster_queue": "cq", "admitted": 0, "pending": 1, "in_line": ["p"], "order": "o"},
        None]
