"""The local control plane (scripts/local-cluster) as a shared machine needs it: etcd only for
client certificates, no host command through a fake node's exec, private state, and two
checkouts' clusters side by side without one reaching the other.

The session cluster plays the first checkout's; a second cluster in a temporary folder, on the
ports realenv.OTHER_* (moved with REMOTE_KPO_E2E_PORT_BASE), plays another checkout's.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from realenv import (API_PORT, ETCD_PORT, OTHER_API_PORT, OTHER_ETCD_PEER_PORT, OTHER_ETCD_PORT, ROOT,
                     copy_project, script_env)

LOCAL_CLUSTER = str(ROOT / "scripts" / "local-cluster")
PORT_VARIABLES = ("REMOTE_KPO_APISERVER_PORT", "REMOTE_KPO_ETCD_PORT", "REMOTE_KPO_ETCD_PEER_PORT",
                  "REMOTE_KPO_KWOK_PORT", "REMOTE_KPO_KWOK_SERVER_PORT", "REMOTE_KPO_KARPENTER_METRICS_PORT",
                  "REMOTE_KPO_KARPENTER_HEALTH_PORT")
KPO_XCOM_READ = ("if [ -s /airflow/xcom/return.json ]; then cat /airflow/xcom/return.json; "
                 "else echo __airflow_xcom_result_empty__; fi")


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "5", *args], capture_output=True, text=True)


def test_etcd_answers_only_the_api_servers_client_certificate(local_cluster_dir):
    etcd = local_cluster_dir / "pki" / "etcd"
    url = f"https://127.0.0.1:{ETCD_PORT}/health"
    # The API server's own flags name etcd's client certificate.
    pid = (local_cluster_dir / "run" / "kube-apiserver.pid").read_text().strip()
    flags = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert f"--etcd-certfile={etcd / 'client.crt'}".encode() in flags
    assert f"--etcd-servers=https://127.0.0.1:{ETCD_PORT}".encode() in flags

    assert curl("--cacert", str(etcd / "ca.crt"), "--cert", str(etcd / "client.crt"), "--key",
                str(etcd / "client.key"), url).stdout.strip() == '{"health":"true","reason":""}'
    # No plain HTTP, no TLS without a certificate, and not the API server's client CA's either.
    assert curl(f"http://127.0.0.1:{ETCD_PORT}/health").returncode != 0
    refused = curl("--cacert", str(etcd / "ca.crt"), url)
    assert refused.returncode != 0 and "health" not in refused.stdout, refused
    pki = local_cluster_dir / "pki"
    # Any certificate the API server's CA signs (which opens the API server) does not open etcd.
    refused = curl("--cacert", str(etcd / "ca.crt"), "--cert", str(pki / "apiserver.crt"), "--key",
                   str(pki / "apiserver.key"), url)
    assert refused.returncode != 0 and "health" not in refused.stdout, refused
    # The keys are the user's alone.
    assert {oct(path.stat().st_mode & 0o777) for path in etcd.glob("*.key")} == {"0o600"}


@pytest.fixture(scope="module")
def sidecar_pod(kubectl):
    """A pod with KPO's XCom sidecar running on the kwok node."""
    namespace = "exec-probe"
    kubectl("create", "namespace", namespace)
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probe", "namespace": namespace,
                     "annotations": {"kwok.remote-kpo.local/runtime": "300s"}},
        "spec": {"tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                 "containers": [{"name": "base", "image": "busybox"},
                                {"name": "airflow-xcom-sidecar", "image": "alpine"}]}}))
    kubectl("wait", "--for=jsonpath={.status.phase}=Running", "pod/probe", "-n", namespace, "--timeout=90s")
    yield namespace
    kubectl("delete", "namespace", namespace, "--wait=false")


def exec_in(kubectl, namespace: str, container: str, *command: str) -> subprocess.CompletedProcess:
    return kubectl("exec", "probe", "-n", namespace, "-c", container, "--", *command, check=False)


def test_exec_into_the_xcom_sidecar_gets_the_canned_result_and_runs_nothing_on_the_host(
        kubectl, sidecar_pod, local_cluster_dir, tmp_path):
    read = exec_in(kubectl, sidecar_pod, "airflow-xcom-sidecar", "/bin/sh", "-c", KPO_XCOM_READ)
    assert read.returncode == 0, read.stderr
    assert read.stdout == (local_cluster_dir / "kwok" / "xcom-result.json").read_text()

    marker = tmp_path / "exec-ran-on-the-host"
    for container, command in [("airflow-xcom-sidecar", ("/bin/sh", "-c", f"touch {marker}")),
                               ("airflow-xcom-sidecar", ("/usr/bin/touch", str(marker))),
                               ("base", ("/bin/sh", "-c", f"touch {marker}"))]:
        refused = exec_in(kubectl, sidecar_pod, container, *command)
        assert refused.returncode != 0, (container, command)
        assert "local cluster (kwok fake node): " in refused.stderr, refused.stderr
    assert not marker.exists()


def timed_follow(kubectl, namespace: str, pod: str, container: str, limit: int) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = kubectl("logs", "-f", pod, "-n", namespace, "-c", container, f"--request-timeout={limit}s", check=False)
    return result, time.monotonic() - started


def test_a_followed_log_ends_once_its_container_has_terminated_as_a_kubelets_does(
        kubectl, sidecar_pod, local_cluster_dir):
    line = (local_cluster_dir / "kwok" / "container.log").read_text().split(" F ", 1)[1]
    runtime = 8
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "follow", "namespace": sidecar_pod,
                     "annotations": {"kwok.remote-kpo.local/runtime": f"{runtime}s"}},
        "spec": {"restartPolicy": "Never",
                 "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                 "containers": [{"name": "base", "image": "busybox"}]}}))
    kubectl("wait", "--for=jsonpath={.status.phase}=Running", "pod/follow", "-n", sidecar_pod, "--timeout=90s")
    # Followed while it runs: the log, then the end once kwok has ended the container.
    followed, took = timed_follow(kubectl, sidecar_pod, "follow", "base", 60)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == line
    assert took < runtime + 5
    phase = kubectl("get", "pod/follow", "-n", sidecar_pod, "-o", "jsonpath={.status.phase}").stdout
    assert phase == "Succeeded"
    # Followed after the end: the whole log at once.
    again, took = timed_follow(kubectl, sidecar_pod, "follow", "base", 60)
    assert (again.returncode, again.stdout) == (0, line) and took < 5
    # A container still running keeps its followed log open (the probe's, for 300 s).
    running, _ = timed_follow(kubectl, sidecar_pod, "probe", "airflow-xcom-sidecar", 4)
    assert running.returncode != 0 and running.stdout == line, running


def test_env_sh_keeps_the_pulumi_state_private(tmp_path):
    """0700 folders and 0600 files from a shell whose umask was 022, state written before
    included."""
    root = copy_project(tmp_path / "checkout")
    (root / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "env.sh", root / "scripts" / "env.sh")
    (root / ".toolchain").symlink_to(ROOT / ".toolchain")
    old = root / ".pulumi-state" / "written-before"
    old.parent.mkdir(mode=0o755)
    old.write_text("{}")
    old.chmod(0o644)
    environ = {k: v for k, v in os.environ.items() if k not in ("PULUMI_BACKEND_URL", "KUBECONFIG")}
    subprocess.run(["bash", "-c", "umask 022 && source scripts/env.sh && pulumi stack init private --non-interactive"
                    " && pulumi config set remote-kpo:cloud existing --stack private"],
                   cwd=root, env=environ, check=True, capture_output=True, text=True)
    modes = {str(path.relative_to(root)): oct(path.stat().st_mode & 0o777)
             for path in [root / ".pulumi-state", *(root / ".pulumi-state").rglob("*")]}
    assert any(name.endswith("private.json") for name in modes), modes
    assert {mode for name, mode in modes.items() if (root / name).is_dir()} == {"0o700"}, modes
    assert {mode for name, mode in modes.items() if (root / name).is_file()} == {"0o600"}, modes


def test_a_stack_other_than_dev_without_a_kubeconfig_is_warned_that_it_uses_the_local_cluster(pulumi_cli):
    pulumi_cli.write_stack("prod", {"cloud": "existing", "clusterName": "prod",
                                    "deployments": [{"name": "prod-only", "xcom": False}]})
    pulumi_cli.run("stack", "init", "prod")
    preview = pulumi_cli.run("preview", "--stack", "prod")
    assert re.search(r"warning: stack prod sets no remote-kpo:existing.kubeconfig, so it uses "
                     rf"KUBECONFIG=\S+/admin.kubeconfig: the local cluster of scripts/env.sh", preview.stdout), preview.stdout


# ------------------------------------------------------------ two checkouts ---

def without_ports(env: dict) -> dict:
    return {k: v for k, v in env.items() if k not in PORT_VARIABLES}


def local_cluster(command: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([LOCAL_CLUSTER, command], env=env, capture_output=True, text=True, timeout=400)


@pytest.fixture
def other_dir(tmp_path, cluster_env):
    """The second checkout's cluster folder; its cluster stopped and wiped after the test."""
    folder = tmp_path / "other-cluster"
    yield folder
    local_cluster("down", {**without_ports(os.environ), "REMOTE_KPO_CLUSTER_DIR": str(folder)})


def test_a_second_cluster_names_every_busy_port_at_once_and_starts_nothing(other_dir, cluster_env):
    env = {**without_ports(os.environ), "REMOTE_KPO_CLUSTER_DIR": str(other_dir),
           # As a second checkout left on the first one's ports: the API server's and etcd's.
           "REMOTE_KPO_APISERVER_PORT": str(API_PORT), "REMOTE_KPO_ETCD_PORT": str(ETCD_PORT),
           "REMOTE_KPO_ETCD_PEER_PORT": str(OTHER_ETCD_PEER_PORT)}
    result = local_cluster("up", env)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("local-cluster: error:")]
    assert len(errors) == 1, result.stderr
    # The API server's neighbours (kwok-front + 1, kwok + 4) are the first cluster's too.
    for name, port in [("REMOTE_KPO_ETCD_PORT", ETCD_PORT), ("REMOTE_KPO_APISERVER_PORT", API_PORT),
                       ("REMOTE_KPO_KWOK_PORT", API_PORT + 1), ("REMOTE_KPO_KWOK_SERVER_PORT", API_PORT + 4)]:
        assert f"{name}={port} " in errors[0], errors[0]
    assert "REMOTE_KPO_ETCD_PEER_PORT" not in errors[0]
    # Nothing started, no kubeconfig for ports it never got.
    assert not list(other_dir.rglob("*.pid")) and not list(other_dir.rglob("*.kubeconfig"))


def test_a_second_cluster_keeps_its_ports_and_never_reaches_the_first(other_dir, cluster_env):
    first = cluster_env["REMOTE_KPO_CLUSTER_DIR"]
    ports = {"REMOTE_KPO_APISERVER_PORT": str(OTHER_API_PORT), "REMOTE_KPO_ETCD_PORT": str(OTHER_ETCD_PORT),
             "REMOTE_KPO_ETCD_PEER_PORT": str(OTHER_ETCD_PEER_PORT)}
    bare = {**without_ports(os.environ), "REMOTE_KPO_CLUSTER_DIR": str(other_dir)}
    started = local_cluster("up", {**bare, **ports})
    assert started.returncode == 0, started.stderr
    recorded = dict(line.split("=", 1) for line in (other_dir / "ports.env").read_text().split())
    assert recorded.items() >= ports.items()
    assert recorded["REMOTE_KPO_KWOK_PORT"] == str(OTHER_API_PORT + 1)

    # A new shell without the variables: the cluster's own ports, for the script and for env.sh.
    status = local_cluster("status", bare)
    assert f"kube-apiserver https://127.0.0.1:{OTHER_API_PORT}: ready" in status.stdout, status.stdout
    shell = script_env(bare)
    assert {name: shell[name] for name in ports} == ports
    ready = subprocess.run(["kubectl", "get", "--raw", "/readyz"], env=shell, capture_output=True, text=True)
    assert ready.stdout == "ok", ready.stderr

    # Other ports for a cluster that has its own: refused, every variable named, nothing moved.
    moved = local_cluster("up", {**bare, "REMOTE_KPO_APISERVER_PORT": str(API_PORT),
                                 "REMOTE_KPO_ETCD_PORT": str(ETCD_PORT)})
    assert moved.returncode != 0
    assert f"REMOTE_KPO_APISERVER_PORT={API_PORT} (this cluster's: {OTHER_API_PORT})" in moved.stderr, moved.stderr
    assert f"REMOTE_KPO_ETCD_PORT={ETCD_PORT} (this cluster's: {OTHER_ETCD_PORT})" in moved.stderr, moved.stderr
    assert local_cluster("status", bare).returncode == 0

    # A kubeconfig in its folder pointing at the first cluster's API server: refused by `up`,
    # `status` and env.sh, never used.
    admin = other_dir / "admin.kubeconfig"
    original = admin.read_text()
    admin.write_text(original.replace(f"127.0.0.1:{OTHER_API_PORT}", f"127.0.0.1:{API_PORT}"))
    for command in ("up", "status"):
        refused = local_cluster(command, bare)
        assert refused.returncode != 0
        assert f"{admin} points at port {API_PORT}, which this cluster does not own" in refused.stderr, refused.stderr
    with pytest.raises(subprocess.CalledProcessError) as env_sh:
        script_env(bare)
    assert f"{admin} points at port {API_PORT}, which this cluster does not own" in env_sh.value.stderr
    admin.write_text(original)

    # A start that fails shows why (the API server's own error), not its routine log lines.
    pid = int((other_dir / "run" / "kube-apiserver.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    (other_dir / "tokens.csv").write_text("not-a-token-line\n")
    failed = local_cluster("up", bare)
    assert failed.returncode != 0
    assert "local-cluster: error: kube-apiserver exited while waiting for kube-apiserver /readyz" in failed.stderr
    assert "tokens.csv' must have at least 3 columns" in failed.stderr, failed.stderr
    assert not re.search(r"^[IW]\d{4} ", failed.stderr, re.MULTILINE), failed.stderr

    # Its `down` leaves the first cluster alone.
    assert local_cluster("down", bare).returncode == 0
    first_status = local_cluster("status", {**without_ports(os.environ), "REMOTE_KPO_CLUSTER_DIR": first})
    assert f"kube-apiserver https://127.0.0.1:{API_PORT}: ready" in first_status.stdout, first_status.stdout
