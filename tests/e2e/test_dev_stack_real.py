"""The dev stack applied by the real Pulumi engine to a real kube-apiserver with RBAC on."""

import base64
import json
import shutil
from pathlib import Path

import pytest
import yaml

from components.task_pods import pull_secret_data
from config import Registry
from realenv import API_URL, ROOT, Pulumi, backend_dir, backend_url
from task_pods_env import TASK_PODS_CONFIG, TASK_PODS_PASSWORDS
from matrix import matrix_failures, namespace_grants, table_grants

DEPLOYMENTS = {"analytics": ("kpo-analytics", True), "ml-training": ("kpo-ml-training", False)}


def dev_config() -> dict:
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    return {key.split(":", 1)[1]: value for key, value in document["config"].items()}


@pytest.fixture(scope="module")
def kubeconfigs(dev_outputs, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("kubeconfigs")
    paths = {}
    for name, document in dev_outputs["kubeconfigs"].items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(document)
    return paths


def test_a_second_up_and_a_preview_find_nothing_to_change(pulumi_cli, dev_outputs):
    pulumi_cli.run("up", "--yes", "--expect-no-changes", "--stack", "dev")
    pulumi_cli.run("preview", "--expect-no-changes", "--stack", "dev")


def test_outputs_name_each_deployments_namespace_and_connection(dev_outputs):
    # The janitor's defaults: on, finished pods kept an hour, tasks up to a day; Pending past KPO's
    # two 120 s waits (900 s for GPU pods) plus 5 minutes.
    janitor = {"enabled": True, "finishedTtlSeconds": 3600, "maxTaskRuntimeSeconds": 86400,
               "pendingDeadlineSeconds": 540, "gpuPendingDeadlineSeconds": 2100}
    assert dev_outputs["deployments"] == {
        "analytics": {"namespace": "kpo-analytics", "connectionId": "kpo_analytics",
                      "envVar": "AIRFLOW_CONN_KPO_ANALYTICS", "janitor": janitor},
        "ml-training": {"namespace": "kpo-ml-training", "connectionId": "kpo_ml_training",
                        "envVar": "AIRFLOW_CONN_KPO_ML_TRAINING", "janitor": janitor},
    }
    assert dev_outputs["clusterEndpoint"] == API_URL


def test_secret_outputs_are_hidden_without_show_secrets(pulumi_cli, dev_outputs):
    shown = json.loads(pulumi_cli.run("stack", "output", "--json", "--stack", "dev").stdout)
    for name in ("kubeconfigs", "airflowConnections", "kubeconfig"):
        assert shown[name] == "[secret]"
    assert json.dumps(shown).count("[secret]") == 3


def test_no_credential_is_stored_in_clear_in_the_state_files(pulumi_cli, dev_outputs, task_pods_outputs):
    backend = backend_dir(pulumi_cli.env["PULUMI_BACKEND_URL"])
    state_bytes = b"".join(path.read_bytes() for path in backend.rglob("*") if path.is_file())
    # The search sees plaintext: a non-secret output is found as it is.
    assert dev_outputs["clusterCaCertificate"].encode() in state_bytes
    for name in dev_outputs["kubeconfigs"]:
        token = json.loads(dev_outputs["kubeconfigs"][name])["users"][0]["user"]["token"]
        # Raw, base64 (as in the token Secret's data) and inside the connection JSON.
        for needle in (token, base64.b64encode(token.encode()).decode(), dev_outputs["airflowConnections"][name]):
            assert needle.encode() not in state_bytes
    # Registry passwords (issue 16): raw, in the login's base64 `auth`, and the whole
    # .dockerconfigjson as the Secret's data holds it; nor in the outputs or the stack file.
    public_outputs = pulumi_cli.run("stack", "output", "--json", "--stack", "tasks").stdout
    stack_file = (pulumi_cli.cwd / "Pulumi.tasks.yaml").read_text()
    for i, password in enumerate(TASK_PODS_PASSWORDS):
        registry = TASK_PODS_CONFIG["deployments"][i]["registries"][0]
        login = Registry.model_validate(registry | {"password": password})
        for needle in (password, base64.b64encode(f"{registry['username']}:{password}".encode()).decode(),
                       pull_secret_data([login])[".dockerconfigjson"]):
            assert needle.encode() not in state_bytes
            assert needle not in public_outputs and needle not in json.dumps(task_pods_outputs["deployments"])
        assert password not in stack_file


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_exported_kubeconfig_can_do_exactly_the_permission_table(kubectl, kubeconfigs, name):
    namespace, xcom = DEPLOYMENTS[name]
    others = [ns for ns, _ in DEPLOYMENTS.values() if ns != namespace] + ["default", "kube-system"]
    assert matrix_failures(kubectl, kubeconfigs[name], namespace, others, xcom) == []


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_can_i_list_in_the_namespace_is_the_table_and_nothing_more(kubectl, kubeconfigs, name):
    namespace, xcom = DEPLOYMENTS[name]
    assert namespace_grants(kubectl, kubeconfigs[name], namespace) == table_grants(xcom)


def test_pod_round_trip_with_the_exported_kubeconfig(kubectl, kubeconfigs):
    kubeconfig = kubeconfigs["ml-training"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "kpo-probe", "labels": {"dag_id": "e2e", "task_id": "probe"}},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "base", "image": "busybox"}]}}
    kubectl("create", "-f", "-", kubeconfig=kubeconfig, stdin=json.dumps(pod))
    created = json.loads(kubectl("get", "pod", "kpo-probe", "-o", "json", kubeconfig=kubeconfig).stdout)
    # The namespace's LimitRange filled in the Deployment's podDefaults.
    assert created["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    listed = kubectl("get", "pods", "-l", "dag_id=e2e", "-o", "name", kubeconfig=kubeconfig).stdout
    assert listed.split() == ["pod/kpo-probe"]
    kubectl("label", "pod", "kpo-probe", "already_checked=True", kubeconfig=kubeconfig)
    labels = json.loads(kubectl("get", "pod", "kpo-probe", "-o", "json", kubeconfig=kubeconfig).stdout)["metadata"]["labels"]
    assert labels["already_checked"] == "True"
    kubectl("delete", "pod", "kpo-probe", "--wait=false", kubeconfig=kubeconfig)
    gone = kubectl("get", "pod", "kpo-probe", kubeconfig=kubeconfig, check=False)
    assert "NotFound" in gone.stderr


def test_a_pod_in_another_deployments_namespace_is_refused(kubectl, kubeconfigs):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "intruder", "namespace": "kpo-analytics"},
           "spec": {"containers": [{"name": "base", "image": "busybox"}]}}
    refused = kubectl("create", "-f", "-", kubeconfig=kubeconfigs["ml-training"], stdin=json.dumps(pod), check=False)
    assert refused.returncode != 0 and "Forbidden" in refused.stderr


def test_bad_config_fails_up_with_the_named_key_and_creates_nothing(pulumi_cli, kubectl):
    pulumi_cli.write_stack("bad", dev_config() | {"deployments": [{"name": "dup"}, {"name": "dup"}]})
    pulumi_cli.run("stack", "init", "bad")
    result = pulumi_cli.run("up", "--yes", "--stack", "bad", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "remote-kpo:deployments[1].name: duplicate of deployments[0]" in output
    assert "Traceback" not in output
    resources = json.loads(pulumi_cli.run("stack", "export", "--stack", "bad").stdout)["deployment"].get("resources") or []
    assert [r["type"] for r in resources if r["type"] != "pulumi:pulumi:Stack"] == []
    assert "NotFound" in kubectl("get", "namespace", "kpo-dup", check=False).stderr


def test_destroy_leaves_no_namespace_role_or_service_account_behind(pulumi_cli, kubectl):
    pulumi_cli.write_stack("teardown", {"cloud": "existing", "clusterName": "teardown",
                                        "deployments": [{"name": "td-xcom"},
                                                        {"name": "td-quota", "xcom": False, "quota": {"pods": 3}}]})
    pulumi_cli.run("stack", "init", "teardown")
    pulumi_cli.run("up", "--yes", "--stack", "teardown")
    for namespace in ("kpo-td-xcom", "kpo-td-quota"):
        made = kubectl("get", "role/remote-kpo", "rolebinding/remote-kpo", "serviceaccount/remote-kpo",
                       "-n", namespace, "-o", "name").stdout.split()
        assert made == ["role.rbac.authorization.k8s.io/remote-kpo",
                        "rolebinding.rbac.authorization.k8s.io/remote-kpo", "serviceaccount/remote-kpo"]
    pulumi_cli.run("destroy", "--yes", "--stack", "teardown")
    for namespace in ("kpo-td-xcom", "kpo-td-quota"):
        assert "NotFound" in kubectl("get", "namespace", namespace, check=False).stderr
        leftovers = kubectl("get", "role,rolebinding,serviceaccount,secret", "-n", namespace, "-o", "name").stdout
        assert leftovers.strip() == ""


def test_the_policy_pack_passes_the_dev_stack_in_a_real_preview(pulumi_cli, dev_outputs):
    result = pulumi_cli.run("preview", "--stack", "dev", "--policy-pack", str(ROOT / "policy"))
    assert "✅ remote-kpo@v0.1.0" in result.stdout
    assert "[mandatory]" not in result.stdout


def test_the_policy_pack_stops_a_stack_that_breaks_its_rbac_rules(cluster_env, tmp_path):
    project = tmp_path / "violating"
    shutil.copytree(ROOT / "tests/e2e/violating_program", project)
    (project / ".venv").symlink_to(ROOT / ".venv")
    cli = Pulumi(project, {**cluster_env, "PULUMI_BACKEND_URL": backend_url(tmp_path)})
    cli.run("stack", "init", "violating")
    result = cli.run("preview", "--stack", "violating", "--policy-pack", str(ROOT / "policy"), check=False)
    assert result.returncode != 0
    for rule in ("no-rbac-wildcard", "no-cluster-scoped-rbac", "pods-exec-only-with-xcom"):
        assert f"[mandatory]  {rule}  (kubernetes:rbac.authorization.k8s.io/v1:ClusterRole: kpo-everything)" in result.stdout
