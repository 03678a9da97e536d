"""The token-expiry set-up shared by test_token_expiry_airflow.py and bench/tokens.py: a private local
cluster whose API server also trusts the local issuer (token_issuer.py), the Deployment's access
bound to the EKS access entry's group, the eks stack's connection shape running the stand-in `aws`,
and long KPO tasks, one Airflow process each, run at once.
"""

import base64
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import config
import token_issuer
from airflow_runner import AIRFLOW_PYTHON, RUN_DAG, migrated_airflow_env
from components import kubeconfig as kc
from components import pod_security
from components.eks import kubernetes_group
from realenv import ROOT, script_env, up_access_program, wipe_cluster

NAMESPACE = "kpo-tokens"
CONN_ID = "kpo_tokens"
CLUSTER = "remote-kpo-tokens"
USER = "eks-access:analytics"  # how the local cluster's stand-ins name the EKS access entry's user
GROUP = kubernetes_group("analytics")
ACCESS_ROLE = "arn:aws:iam::123456789012:role/remote-kpo-tokens"
SCENARIOS = ("long_sync", "long_deferrable", "long_xcom")


def dag(scenario: str) -> str:
    return f"kpo_{scenario}__{CONN_ID}"


@dataclass
class TokenCluster:
    env: dict          # scripts/env.sh's environment for this cluster (admin KUBECONFIG)
    cluster_dir: Path
    issuer: token_issuer.Issuer
    keys: Path
    api_url: str
    plugin: token_issuer.Plugin


@contextmanager
def token_cluster(work: Path, ports: tuple[int, int, int]) -> Iterator[TokenCluster]:
    """Issuer, cluster (API server, etcd, etcd peer `ports`) and stand-in plugin; all gone after."""
    keys = work / "keys"
    token_issuer.make_keys(keys)
    issuer = token_issuer.Issuer(keys)
    authn = work / "authentication-config.json"
    authn.write_text(json.dumps(token_issuer.authentication_config(issuer.url, (keys / "ca.crt").read_text())))
    cluster_dir = work / "cluster"
    names = ("REMOTE_KPO_APISERVER_PORT", "REMOTE_KPO_ETCD_PORT", "REMOTE_KPO_ETCD_PEER_PORT")
    base = {**os.environ, "REMOTE_KPO_CLUSTER_DIR": str(cluster_dir), **dict(zip(names, map(str, ports))),
            "REMOTE_KPO_AUTHN_CONFIG": str(authn)}
    try:
        subprocess.run([str(ROOT / "scripts/toolchain")], check=True, capture_output=True)
        up = subprocess.run([str(ROOT / "scripts/local-cluster"), "up"], env=base, capture_output=True, text=True,
                            timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        plugin = token_issuer.write_plugin(work / "bin", kc.EXEC_PLUGINS["eks"], issuer.url, keys, USER, [GROUP])
        yield TokenCluster(script_env(base), cluster_dir, issuer, keys, f"https://127.0.0.1:{ports[0]}", plugin)
    finally:
        wipe_cluster(base)
        issuer.stop()


def grant_access(cluster: TokenCluster, work: Path) -> None:
    """The Deployment's namespace and Role (with `xcom`), bound to the access entry's group."""
    up_access_program(cluster.env, work, [{"name": "analytics", "namespace": NAMESPACE, "kind": "Group",
                                           "subject": GROUP, "xcom": True}])


def eks_connection(cluster: TokenCluster) -> dict:
    """The Airflow connection the eks stack exports (stacks/outputs.py) for a Deployment with `xcom`."""
    ca_data = base64.b64encode((cluster.cluster_dir / "pki/ca.crt").read_bytes()).decode()
    deployment = config.load({"cloud": "existing", "deployments": [{"name": "tokens"}]}).deployments[0]
    document = kc.kubeconfig(cluster_name=CLUSTER, server=cluster.api_url, ca_data=ca_data, namespace=NAMESPACE,
                             user_name=f"{CLUSTER}-tokens", user=kc.eks_user("us-east-1", CLUSTER, ACCESS_ROLE))
    return kc.airflow_connection(document, NAMESPACE, pod_security.xcom_sidecar_extras(deployment))


def review(cluster: TokenCluster, token: str) -> int:
    """The HTTP status of a SelfSubjectReview made with `token` alone."""
    tls = ssl.create_default_context(cafile=str(cluster.cluster_dir / "pki/ca.crt"))
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
    request = urllib.request.Request(f"{cluster.api_url}/apis/authentication.k8s.io/v1/selfsubjectreviews", data=body,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, context=tls, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def fresh_token(cluster: TokenCluster, tag: str) -> str:
    """Run the stand-in as an exec credential plugin would and return its token."""
    done = subprocess.run([str(cluster.plugin.path), "eks", "get-token"], capture_output=True, text=True, check=True,
                          env={**os.environ, "REMOTE_KPO_E2E_TOKEN_TAG": tag}, timeout=60)
    return json.loads(done.stdout)["status"]["token"]


def wait_authenticator(cluster: TokenCluster, limit: float = 90) -> None:
    """Until the JWT authenticator has the issuer's keys (it fetches them after the API server starts)."""
    deadline = time.monotonic() + limit
    while review(cluster, fresh_token(cluster, "wait")) != 201:
        assert time.monotonic() < deadline, f"the API server never took the issuer's tokens ({cluster.issuer.requests})"
        time.sleep(2)


@dataclass
class LongRuns:
    runs: dict      # dag_id -> run_dag.py's report
    logs: dict      # dag_id -> what Airflow logged
    wall: float     # seconds from the processes' start to the last one's end


def run_long_tasks(cluster: TokenCluster, connection: dict, work: Path, runtime: int,
                   scenarios: tuple[str, ...] = SCENARIOS) -> LongRuns:
    """Each scenario (kpo_e2e.py long_*) in an Airflow process of its own, all at once, pods running
    `runtime` seconds; each process tags the tokens it gets with its DAG id."""
    template = migrated_airflow_env(
        {"deployments": {"tokens": {"connectionId": CONN_ID, "envVar": f"AIRFLOW_CONN_{CONN_ID.upper()}"}},
         "airflowConnections": {"tokens": kc.to_json(connection)}},
        ["tokens"], f"{cluster.plugin.path.parent}{os.pathsep}{cluster.env['PATH']}", work / "template",
        REMOTE_KPO_E2E_TASK_RUNTIME=f"{runtime}s")
    started = time.monotonic()
    processes = {}
    for scenario in scenarios:
        home = work / scenario
        # Each process its own copy of the migrated database: processes at once never share sqlite.
        shutil.copytree(template["AIRFLOW_HOME"], home)
        env = {**template, "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
               "REMOTE_KPO_E2E_TOKEN_TAG": dag(scenario)}
        with (home / "airflow.log").open("w") as log:
            processes[scenario] = subprocess.Popen(
                [str(AIRFLOW_PYTHON), str(RUN_DAG), str(home / "runs.json"), dag(scenario)],
                env=env, stdout=log, stderr=subprocess.STDOUT)
    runs, logs = {}, {}
    for scenario, process in processes.items():
        try:
            process.wait(timeout=runtime + 600)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        logs[dag(scenario)] = (work / scenario / "airflow.log").read_text()
        assert process.returncode == 0, logs[dag(scenario)][-5000:]
        [runs[dag(scenario)]] = json.loads((work / scenario / "runs.json").read_text())
    return LongRuns(runs, logs, time.monotonic() - started)
