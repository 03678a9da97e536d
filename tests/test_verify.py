"""scripts/verify's pure parts: input parsing, the step-1 plugin check, pod shapes, review
attributes, rendering. The steps that ask the API server run for real in tests/e2e/test_verify_real.py."""

import io
import json
import subprocess
from argparse import Namespace

import pytest

from components import kubeconfig as kc
from components.gpu import gpu_task
from config import GpuPool
from consumer import inputs
from consumer.inputs import InputError, Target, target_from_connection, targets_from_outputs
from consumer.verify import (Report, StepResult, admission_fix, check_plugin, gpu_pod, kpo_pod, load_targets,
                             privileged_pod, render_json, render_table, resource_attributes)
from harness import ROOT


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
