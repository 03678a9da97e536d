"""Task pods (issue 16) on the real API server: the registries pull Secret reaches pods through
the ServiceAccount admission plugin, a Deployment runs pods as remote-kpo-task with no extra
RBAC and still cannot read the Secret or mint that account's tokens, and the default
ServiceAccount is given back when registries go."""

import base64
import json
from pathlib import Path

import pytest

from matrix import namespace_grants, table_grants
from realenv import ROOT, can_i
from task_pods_env import TASK_PODS_CONFIG, TASK_PODS_PASSWORDS

PULL_SECRET = "remote-kpo-registries"
TASK_SA = "remote-kpo-task"


@pytest.fixture(scope="module")
def task_kubeconfigs(task_pods_outputs, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("task-kubeconfigs")
    paths = {}
    for name, document in task_pods_outputs["kubeconfigs"].items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(document)
    return paths


def probe_pod(name: str, service_account: str | None = None) -> str:
    spec = {"restartPolicy": "Never", "containers": [{"name": "base", "image": "registry.e2e.example:5000/etl:1"}]}
    if service_account:
        spec["serviceAccountName"] = service_account
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def created_pod(kubectl, kubeconfig: Path, name: str, service_account: str | None = None) -> dict:
    kubectl("create", "-f", "-", kubeconfig=kubeconfig, stdin=probe_pod(name, service_account))
    pod = json.loads(kubectl("get", "pod", name, "-o", "json", kubeconfig=kubeconfig).stdout)
    kubectl("delete", "pod", name, "--wait=false", kubeconfig=kubeconfig)
    return pod


def test_the_outputs_name_the_task_service_account_and_pull_secret(task_pods_outputs):
    deployments = task_pods_outputs["deployments"]
    # The janitor's settings are beside them (test_dev_stack_real.py holds their values).
    assert {name: {k: v for k, v in d.items() if k != "janitor"} for name, d in deployments.items()} == {
        "tp-pull": {"namespace": "kpo-tp-pull", "connectionId": "kpo_tp_pull", "envVar": "AIRFLOW_CONN_KPO_TP_PULL",
                    "imagePullSecret": PULL_SECRET},
        "tp-task": {"namespace": "kpo-tp-task", "connectionId": "kpo_tp_task", "envVar": "AIRFLOW_CONN_KPO_TP_TASK",
                    "imagePullSecret": PULL_SECRET, "taskServiceAccount": TASK_SA},
    }
    assert all(d["janitor"]["enabled"] for d in deployments.values())


def test_a_pod_made_through_the_exported_kubeconfig_gets_the_pull_secret_from_its_service_account(
        kubectl, task_kubeconfigs):
    # The DAG names no image_pull_secrets: the ServiceAccount admission plugin copies them.
    pod = created_pod(kubectl, task_kubeconfigs["tp-pull"], "pull-probe")
    assert pod["spec"]["serviceAccountName"] == "default"
    assert pod["spec"]["imagePullSecrets"] == [{"name": PULL_SECRET}]


def test_a_deployment_runs_a_pod_as_remote_kpo_task_with_no_extra_rbac(kubectl, task_kubeconfigs):
    pod = created_pod(kubectl, task_kubeconfigs["tp-task"], "task-probe", service_account=TASK_SA)
    assert pod["spec"]["serviceAccountName"] == TASK_SA
    assert pod["spec"]["imagePullSecrets"] == [{"name": PULL_SECRET}]
    # Its rights are still exactly the permission table.
    assert namespace_grants(kubectl, task_kubeconfigs["tp-task"], "kpo-tp-task") == table_grants(True)


def test_the_deployment_cannot_read_the_pull_secret_or_mint_the_task_accounts_tokens(kubectl, task_kubeconfigs):
    kubeconfig = task_kubeconfigs["tp-task"]

    def allowed(verb: str, target: str, *subresource: str) -> str:
        # TYPE/NAME: asks about that one object (realenv.can_i reads a slash as a subresource).
        return kubectl("auth", "can-i", verb, target, *subresource, "--namespace", "kpo-tp-task",
                       kubeconfig=kubeconfig, check=False).stdout.strip()

    assert allowed("get", f"secrets/{PULL_SECRET}") == "no"
    assert allowed("get", f"serviceaccounts/{TASK_SA}") == "no"
    assert allowed("create", f"serviceaccounts/{TASK_SA}", "--subresource", "token") == "no"
    assert allowed("patch", "serviceaccounts/default") == "no"
    for verb, resource in (("list", "secrets"), ("watch", "secrets"), ("create", "serviceaccounts/token")):
        assert not can_i(kubectl, kubeconfig, verb, resource, "kpo-tp-task")
    # And trying does fail.
    for command in (("create", "token", TASK_SA), ("get", "secret", PULL_SECRET, "-o", "json"),
                    ("patch", "serviceaccount", "default", "-p", '{"imagePullSecrets": []}')):
        refused = kubectl(*command, "--namespace", "kpo-tp-task", kubeconfig=kubeconfig, check=False)
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), command


def test_the_pull_secret_holds_each_registry_login(kubectl, task_pods_outputs):
    for i, deployment in enumerate(TASK_PODS_CONFIG["deployments"]):
        namespace = f"kpo-{deployment['name']}"
        secret = json.loads(kubectl("get", "secret", PULL_SECRET, "-n", namespace, "-o", "json").stdout)
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        document = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
        registry = deployment["registries"][0]
        login = f"{registry['username']}:{TASK_PODS_PASSWORDS[i]}"
        assert document["auths"][registry["server"]]["auth"] == base64.b64encode(login.encode()).decode()


def test_a_second_up_and_a_preview_of_the_task_pods_stack_change_nothing(pulumi_cli, task_pods_outputs):
    # The default ServiceAccount's patch coexists with the ServiceAccount controller.
    pulumi_cli.run("up", "--yes", "--expect-no-changes", "--stack", "tasks")
    pulumi_cli.run("preview", "--expect-no-changes", "--stack", "tasks")


def test_dropping_registries_gives_default_back_and_destroy_leaves_nothing(pulumi_cli, kubectl):
    config = {"cloud": "existing", "clusterName": "tp-teardown",
              "deployments": [{"name": "tp-drop", "taskIdentity": {},
                               "registries": [{"server": "ghcr.io", "username": "u", "password": "p"}]}]}
    pulumi_cli.write_stack("tp-teardown", config)
    pulumi_cli.run("stack", "init", "tp-teardown")
    pulumi_cli.run("up", "--yes", "--stack", "tp-teardown")
    default = json.loads(kubectl("get", "serviceaccount", "default", "-n", "kpo-tp-drop", "-o", "json").stdout)
    assert default["imagePullSecrets"] == [{"name": PULL_SECRET}]

    pulumi_cli.run("config", "rm", "--path", "remote-kpo:deployments[0].registries", "--stack", "tp-teardown")
    pulumi_cli.run("up", "--yes", "--stack", "tp-teardown")
    default = json.loads(kubectl("get", "serviceaccount", "default", "-n", "kpo-tp-drop", "-o", "json").stdout)
    # The account stays (it is the controller's), without the field the program managed.
    assert "imagePullSecrets" not in default
    task = json.loads(kubectl("get", "serviceaccount", TASK_SA, "-n", "kpo-tp-drop", "-o", "json").stdout)
    assert "imagePullSecrets" not in task
    assert "NotFound" in kubectl("get", "secret", PULL_SECRET, "-n", "kpo-tp-drop", check=False).stderr

    pulumi_cli.run("destroy", "--yes", "--stack", "tp-teardown")
    assert "NotFound" in kubectl("get", "namespace", "kpo-tp-drop", check=False).stderr


def test_the_policy_pack_passes_the_task_pods_stack_in_a_real_preview(pulumi_cli, task_pods_outputs):
    result = pulumi_cli.run("preview", "--stack", "tasks", "--policy-pack", str(ROOT / "policy"))
    assert "✅ remote-kpo@v0.1.0" in result.stdout
    assert "[mandatory]" not in result.stdout


def test_up_refuses_to_take_over_pull_secrets_another_tool_set_on_default(pulumi_cli, kubectl):
    pulumi_cli.write_stack("tp-conflict", {"cloud": "existing", "clusterName": "tp-conflict",
                                           "deployments": [{"name": "tp-other"}]})
    pulumi_cli.run("stack", "init", "tp-conflict")
    pulumi_cli.run("up", "--yes", "--stack", "tp-conflict")
    # Someone set the field by hand (kubectl patch: an update by another field manager).
    kubectl("patch", "serviceaccount", "default", "-n", "kpo-tp-other", "-p",
            '{"imagePullSecrets": [{"name": "hand-made"}]}')
    for key, value in (("server", "ghcr.io"), ("username", "u"), ("password", "p")):
        pulumi_cli.run("config", "set", "--path", f"remote-kpo:deployments[0].registries[0].{key}", value,
                       "--stack", "tp-conflict")
    result = pulumi_cli.run("up", "--yes", "--stack", "tp-conflict", check=False)
    assert result.returncode != 0
    assert "conflict" in (result.stdout + result.stderr).lower()
    default = json.loads(kubectl("get", "serviceaccount", "default", "-n", "kpo-tp-other", "-o", "json").stdout)
    assert default["imagePullSecrets"] == [{"name": "hand-made"}]
    pulumi_cli.run("destroy", "--yes", "--stack", "tp-conflict")
