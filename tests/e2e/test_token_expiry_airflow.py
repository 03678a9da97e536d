"""KPO tasks that outlive their tokens: real Airflow, the real API server, tokens valid 60 s.

The exec plugins the exported kubeconfigs run return short-lived tokens (EKS about 15 min, GKE and
AKS about an hour); a KPO task runs for hours. Here the API server of a cluster of this module's
own (scripts/local-cluster with REMOTE_KPO_AUTHN_CONFIG) has a JWT authenticator for a local HTTPS
issuer (token_issuer.py) next to its static tokens, and a stand-in `aws` mints a token valid for
LIFETIME seconds at every call, with `expirationTimestamp`, as `aws eks get-token` does.

The connection is the eks stack's exported shape (components/kubeconfig.py `eks_user`, as
stacks/outputs.py builds it) for a Deployment with `xcom`, bound by DeploymentAccess to the access
entry's group (access_program/, the real engine). Three Airflow processes run at once, each one
task whose pod runs RUNTIME seconds (over three token lifetimes): sync following its log,
deferrable, and XCom-pushing (token_env.py). Each must succeed on tokens minted along the way.
"""

import subprocess

import pytest

import token_env
from components import kubeconfig as kc
from realenv import TOKENS_API_PORT, TOKENS_ETCD_PEER_PORT, TOKENS_ETCD_PORT
from test_kpo_airflow import TRIGGER, pod_is_gone
from token_env import GROUP, NAMESPACE, SCENARIOS, USER, dag
from token_issuer import LIFETIME

RUNTIME = 3 * LIFETIME + 15  # seconds each task's pod runs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with token_env.token_cluster(tmp_path_factory.mktemp("tokens"),
                                 (TOKENS_API_PORT, TOKENS_ETCD_PORT, TOKENS_ETCD_PEER_PORT)) as cluster:
        token_env.wait_authenticator(cluster)
        token_env.grant_access(cluster, tmp_path_factory.mktemp("tokens-access"))
        yield cluster


@pytest.fixture(scope="module")
def long_runs(cluster, tmp_path_factory) -> token_env.LongRuns:
    return token_env.run_long_tasks(cluster, token_env.eks_connection(cluster), tmp_path_factory.mktemp("tokens-airflow"),
                                    RUNTIME)


def test_the_api_server_takes_the_plugins_token_as_the_access_entrys_user_and_group(cluster, tmp_path):
    kubeconfig = tmp_path / "tokens.json"
    kubeconfig.write_text(kc.to_json(token_env.eks_connection(cluster)["extra"]["kube_config"]))
    done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "auth", "whoami", "-o",
                           "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"],
                          env={**cluster.env, "PATH": f"{cluster.plugin.path.parent}:{cluster.env['PATH']}",
                               "REMOTE_KPO_E2E_TOKEN_TAG": "whoami"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f'{USER} ["{GROUP}","system:authenticated"]'
    [minted] = cluster.plugin.calls("whoami")
    assert minted["exp"] - minted["at"] <= LIFETIME
    assert "/.well-known/openid-configuration" in cluster.issuer.requests


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_task_running_for_several_token_lifetimes_succeeds_on_tokens_minted_along_the_way(
        long_runs, cluster, scenario):
    name = dag(scenario)
    run = long_runs.runs[name]
    assert run["state"] == "success", long_runs.logs[name][-5000:]
    task = run["tasks"]["run_pod"]
    assert task["end"] - task["start"] >= 3 * LIFETIME
    assert task["xcom"]["pod_namespace"] == NAMESPACE
    minted = cluster.plugin.calls(name)
    # Its last API calls went out on a token minted after its first token had long expired.
    assert minted[-1]["at"] > minted[0]["exp"] + LIFETIME, minted
    assert "Unauthorized" not in long_runs.logs[name]


def test_the_api_server_refuses_a_token_once_it_has_expired(long_runs, cluster):
    first = cluster.plugin.calls(dag("long_sync"))[0]
    assert token_env.review(cluster, first["token"]) == 401
    assert token_env.review(cluster, token_env.fresh_token(cluster, "after")) == 201


def test_the_deferrable_task_completed_through_its_trigger(long_runs):
    assert long_runs.runs[dag("long_deferrable")]["triggers"] == [
        {"classpath": TRIGGER, "task_id": "run_pod", "status": "success"}]


def test_the_sync_task_followed_its_log_to_its_containers_end_and_the_xcom_task_read_its_sidecar(long_runs):
    assert "kwok: fake container on kwok-node-0" in long_runs.logs[dag("long_sync")]
    # The followed log ended with the container (kwok-front), not on KPO's 5-minute read timeout
    # (100 s past the container's end): the sync task took no longer than the deferrable one, which
    # follows no log, started beside it.
    def length(scenario: str) -> float:
        task = long_runs.runs[dag(scenario)]["tasks"]["run_pod"]
        return task["end"] - task["start"]

    assert length("long_sync") < length("long_deferrable") + 30
    assert "Running command... if [ -s /airflow/xcom/return.json ]" in long_runs.logs[dag("long_xcom")]


def test_every_pod_is_deleted_once_its_task_is_done(long_runs, cluster):
    def kubectl(*args, check=True):
        return subprocess.run(["kubectl", *args], env=cluster.env, capture_output=True, text=True, timeout=60)

    for name, run in long_runs.runs.items():
        xcom = run["tasks"]["run_pod"]["xcom"]
        assert pod_is_gone(kubectl, xcom["pod_name"], xcom["pod_namespace"]), name
