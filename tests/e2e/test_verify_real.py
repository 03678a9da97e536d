"""scripts/verify against the real API server, on the connections the real `pulumi up` exported.

The dev stack passes. A stack of its own (`verify`, Deployment `vfy-broken`, podSecurity restricted,
so verify's own pods must meet the restricted standard) is broken out of band,
so the session's dev stack stays whole for the other modules: its RoleBinding deleted, then its
Pod Security label removed; each time verify fails at the step that names what broke, and the fix
it prints (`pulumi up --refresh`) makes it pass again. Connections whose exec plugin is missing or
fails stop at steps 1 and 2.
"""

import base64
import json
import stat
import subprocess
from dataclasses import replace

import pytest

from components import kubeconfig as kc
from components.disruption import task_shape
from components.gpu import gpu_task
from config import GpuPool
from consumer.inputs import target_from_connection
from consumer.verify import verify
from realenv import API_URL, ROOT

VERIFY = str(ROOT / "scripts/verify")
BROKEN = "vfy-broken"


def run_verify(pulumi_cli, *args: str, env: dict | None = None, stdin: str | None = None):
    return subprocess.run([VERIFY, *args], cwd=pulumi_cli.cwd, env=env or pulumi_cli.env, input=stdin,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def verify_stack(pulumi_cli, dev_outputs):
    """A stack of this module's own, with one Deployment this module breaks and mends."""
    pulumi_cli.write_stack("verify", {"cloud": "existing", "clusterName": "remote-kpo-local",
                                      "deployments": [{"name": BROKEN, "xcom": False,
                                                       "podDefaults": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                                                       "quota": {"cpu": "2", "memory": "1Gi", "gpu": 0},
                                                       "podSecurity": "restricted"}]})
    pulumi_cli.run("stack", "init", "verify")
    pulumi_cli.run("up", "--yes", "--stack", "verify")
    yield "verify"
    pulumi_cli.run("destroy", "--yes", "--stack", "verify")


def gke_connection(local_cluster_dir, plugin: str = "gke-gcloud-auth-plugin") -> str:
    """A gke-shaped connection (an exec user running `plugin`) to the local API server."""
    ca_data = base64.b64encode((local_cluster_dir / "pki/ca.crt").read_bytes()).decode()
    user = kc.gke_user()
    user["exec"]["command"] = plugin
    document = kc.kubeconfig(cluster_name="remote-kpo-local", server=API_URL, ca_data=ca_data,
                             namespace="kpo-analytics", user_name="gke-analytics", user=user)
    return kc.to_json(kc.airflow_connection(document, "kpo-analytics"))


def test_every_deployment_of_the_dev_stack_passes_every_step(pulumi_cli, dev_outputs):
    result = run_verify(pulumi_cli, "--stack", "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:3]]
    assert rows == [["analytics", "kpo-analytics", "ok", "ok", "ok", "ok", "ok",
                     "system:serviceaccount:kpo-analytics:remote-kpo"],
                    ["ml-training", "kpo-ml-training", "ok", "ok", "ok", "ok", "ok",
                     "system:serviceaccount:kpo-ml-training:remote-kpo"]]
    assert result.stdout.splitlines()[-1] == "verify: 2 of 2 Deployments pass every step"


def test_json_output_tells_xcom_from_the_authorizer_and_the_pod_security_refusal(pulumi_cli, dev_outputs):
    result = run_verify(pulumi_cli, "--stack", "dev", "--json")
    document = json.loads(result.stdout)
    assert document["ok"] is True
    steps = {d["name"]: {s["step"]: s["detail"] for s in d["steps"]} for d in document["deployments"]}
    assert steps["analytics"]["permissions"] == "11 allowed, 52 denied, xcom on"
    assert steps["ml-training"]["permissions"] == "9 allowed, 54 denied, xcom off"
    assert steps["ml-training"]["admission"] == "KPO pod admitted (dry run)"
    assert steps["ml-training"]["pod security"] == "privileged pod refused"


def test_a_restricted_namespace_admits_verifys_pods_and_refuses_the_privileged_one(pulumi_cli, verify_stack, kubectl):
    namespace = f"kpo-{BROKEN}"
    labels = json.loads(kubectl("get", "namespace", namespace, "-o", "json").stdout)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    result = run_verify(pulumi_cli, "--stack", verify_stack, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    [deployment] = json.loads(result.stdout)["deployments"]
    steps = {s["step"]: s["detail"] for s in deployment["steps"]}
    assert (steps["admission"], steps["pod security"]) == ("KPO pod admitted (dry run)", "privileged pod refused")


def test_verify_runs_on_a_python_with_only_the_kubernetes_client(pulumi_cli, dev_outputs):
    # The Airflow venv has the client and no pulumi, as Astro's image: the launcher's python3 there.
    env = {**pulumi_cli.env, "PATH": f"{ROOT / '.venv-airflow/bin'}:{pulumi_cli.env['PATH']}",
           "AIRFLOW_CONN_KPO_ANALYTICS": dev_outputs["airflowConnections"]["analytics"]}
    result = subprocess.run([str(ROOT / ".venv-airflow/bin/python"), "-m", "consumer.verify", "--connection-env",
                             "AIRFLOW_CONN_KPO_ANALYTICS"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "verify: 1 of 1 Deployments pass every step"


def test_a_deleted_rolebinding_fails_step_3_naming_the_deployment_and_the_verbs_and_the_fix_mends_it(
        pulumi_cli, verify_stack, kubectl):
    namespace = f"kpo-{BROKEN}"
    kubectl("delete", "rolebinding", "remote-kpo", "-n", namespace)
    result = run_verify(pulumi_cli, "--stack", verify_stack)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1].split()[:7] == [BROKEN, namespace, "ok", "ok", "FAIL", "-", "-"]
    assert (f"{BROKEN}: step 3 (permissions) failed: denied in {namespace}: list pods, create pods, get pods, "
            "patch pods, delete pods, get pods/log, list events, watch events, list resourcequotas") in result.stdout
    assert "fix: the namespace's Role or RoleBinding `remote-kpo` is missing or changed" in result.stdout
    pulumi_cli.run("up", "--yes", "--refresh", "--stack", verify_stack)
    assert run_verify(pulumi_cli, "--stack", verify_stack).returncode == 0


def test_a_namespace_without_pod_security_fails_step_5_and_the_fix_mends_it(pulumi_cli, verify_stack, kubectl):
    namespace = f"kpo-{BROKEN}"
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce-")
    result = run_verify(pulumi_cli, "--stack", verify_stack)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1].split()[:7] == [BROKEN, namespace, "ok", "ok", "ok", "ok", "FAIL"]
    assert (f"{BROKEN}: step 5 (pod security) failed: privileged pod admitted: Pod Security is not enforced on "
            f"{namespace}") in result.stdout
    pulumi_cli.run("up", "--yes", "--refresh", "--stack", verify_stack)
    assert run_verify(pulumi_cli, "--stack", verify_stack).returncode == 0


def test_a_gpu_task_shape_is_admitted_by_dry_run_unless_the_quota_has_no_gpu(pulumi_cli, dev_outputs, verify_stack):
    task = gpu_task("aks", GpuPool(enabled=True, spot=True))
    # ml-training's quota has GPUs (analytics has the default, none).
    training = target_from_connection(dev_outputs["airflowConnections"]["ml-training"], "ml-training", task)
    report = verify(training)
    assert report.ok, report
    assert report.steps[3].detail == "KPO pod and GPU pod admitted (dry run)"
    # vfy-broken's quota allows no GPU: the API server's quota admission refuses the GPU pod.
    broken_connection = pulumi_cli.outputs(verify_stack)["airflowConnections"][BROKEN]
    report = verify(target_from_connection(broken_connection, BROKEN, task))
    assert [s.ok for s in report.steps] == [True, True, True, False]
    assert report.steps[3].detail.startswith("GPU pod refused: pods \"remote-kpo-verify-gpu\" is forbidden: "
                                             "exceeded quota: remote-kpo-quota")
    assert report.steps[3].fix == "the namespace's ResourceQuota is used up or too small: raise the Deployment's quota"


def test_the_eks_task_shape_passes_the_admission_policy_and_quota_by_dry_run(dev_outputs):
    # What every task on eks passes: the no-eviction annotations, the task NodePool's selector and
    # toleration; the Deployment's admission policy refuses only the GPU pool's.
    target = replace(target_from_connection(dev_outputs["airflowConnections"]["analytics"], "analytics"),
                     task=task_shape("eks"))
    report = verify(target)
    assert report.ok, report
    assert report.steps[3].detail == "KPO pod admitted (dry run)"


def test_a_connection_whose_exec_plugin_is_absent_fails_at_step_1_with_the_dockerfile_lines(
        pulumi_cli, local_cluster_dir, tmp_path):
    # An image without the plugin: the kubeconfig names it by a path that does not exist (by name
    # alone it would depend on this machine's PATH).
    absent = tmp_path / "bin" / "gke-gcloud-auth-plugin"
    env = {**pulumi_cli.env, "AIRFLOW_CONN_KPO_ANALYTICS": gke_connection(local_cluster_dir, str(absent))}
    result = run_verify(pulumi_cli, "--connection-env", "AIRFLOW_CONN_KPO_ANALYTICS", env=env)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1].split() == ["kpo_analytics", "kpo-analytics", "FAIL", "-", "-", "-", "-", "-"]
    assert f"kpo_analytics: step 1 (plugin) failed: exec plugin '{absent}' is not found" in result.stdout
    assert "fix: add the stack's `dockerfile` output to the Astro project's Dockerfile" in result.stdout
    assert "    && apt-get install -y google-cloud-cli google-cloud-cli-gke-gcloud-auth-plugin \\" in result.stdout


def test_a_connection_whose_exec_plugin_fails_stops_at_step_2_with_the_plugins_error(
        pulumi_cli, local_cluster_dir, tmp_path):
    plugin = tmp_path / "gke-gcloud-auth-plugin"
    plugin.write_text("#!/bin/sh\necho 'ERROR: no Google credentials for this workload' >&2\nexit 1\n")
    plugin.chmod(0o755 | stat.S_IEXEC)
    result = run_verify(pulumi_cli, "--connection", "--name", "astro-analytics",
                        stdin=gke_connection(local_cluster_dir, str(plugin)))
    assert result.returncode == 1
    assert result.stdout.splitlines()[1].split()[:4] == ["astro-analytics", "kpo-analytics", "ok", "FAIL"]
    # Without a credential the request is anonymous, which may not review itself.
    assert ('astro-analytics: step 2 (identity) failed: refused (403): selfsubjectreviews.authentication.k8s.io '
            'is forbidden: User "system:anonymous"') in result.stdout
    assert "ERROR: no Google credentials for this workload" in result.stdout


def test_an_unknown_stack_is_one_line_naming_it(pulumi_cli, dev_outputs):
    result = run_verify(pulumi_cli, "--stack", "nope")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("verify: pulumi stack output --stack nope: ")
    assert "nope" in result.stderr.splitlines()[0] and len(result.stderr.splitlines()) == 1


def test_a_connection_to_an_unreachable_server_stops_at_step_2_saying_so(pulumi_cli, dev_outputs):
    connection = json.loads(dev_outputs["airflowConnections"]["analytics"])
    connection["extra"]["kube_config"]["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    result = run_verify(pulumi_cli, "--connection", stdin=json.dumps(connection))
    assert result.returncode == 1
    assert ("connection: step 2 (identity) failed: cannot reach https://127.0.0.1:1: "
            "HTTPSConnection(host='127.0.0.1', port=1): Failed to establish a new connection: "
            "[Errno 111] Connection refused") in result.stdout
    # Refused on this machine: nothing listens there, so no network setting is the cause.
    assert "fix: the API server is not running on this machine" in result.stdout
