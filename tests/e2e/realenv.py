"""Helpers for tests against the real engine and API server (used by conftest and tests)."""

import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
# The tests run their own local cluster, apart from `make dev`'s (ports 26443/23790/23800), on
# ports below Linux's ephemeral range (32768+), so no outgoing connection can take them.
# REMOTE_KPO_E2E_PORT_BASE moves them, so two checkouts can run their suites side by side.
PORT_BASE = int(os.environ.get("REMOTE_KPO_E2E_PORT_BASE", "16000"))
API_PORT, ETCD_PORT, ETCD_PEER_PORT = PORT_BASE + 443, PORT_BASE + 379, PORT_BASE + 380
# The fault tests' own cluster (test_faults_real.py).
FAULTS_API_PORT, FAULTS_ETCD_PORT, FAULTS_ETCD_PEER_PORT = PORT_BASE + 1443, PORT_BASE + 1379, PORT_BASE + 1380
# A second cluster beside the session's, as another checkout's (test_local_cluster_real.py).
OTHER_API_PORT, OTHER_ETCD_PORT, OTHER_ETCD_PEER_PORT = PORT_BASE + 643, PORT_BASE + 579, PORT_BASE + 580
# Beside each cluster's API server port (scripts/local-cluster): kwok-front (the nodes' kubelet
# endpoint) + 1, Karpenter's metrics and health + 2 and + 3, kwok's own server + 4, Kueue's
# webhook server and health + 5 and + 6.
NEIGHBOUR_PORTS = (1, 2, 3, 4, 5, 6)
# The README test's own checkout's cluster (test_readme_real.py), as a second checkout's `make dev`.
README_API_PORT, README_ETCD_PORT, README_ETCD_PEER_PORT = PORT_BASE + 843, PORT_BASE + 779, PORT_BASE + 780
# The token-expiry test's cluster, with a JWT authenticator (test_token_expiry_airflow.py).
TOKENS_API_PORT, TOKENS_ETCD_PORT, TOKENS_ETCD_PEER_PORT = PORT_BASE + 1643, PORT_BASE + 1579, PORT_BASE + 1580
API_URL = f"https://127.0.0.1:{API_PORT}"
PROJECT_FILES = ("__main__.py", "config.py", "components", "stacks", "Pulumi.yaml", "Pulumi.dev.yaml")


def copy_project(project: Path) -> Path:
    """The program and its stack files in `project`, with the project's venv linked: a place
    to init stacks and write stack files without touching the repo."""
    project.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, project / name)
    (project / ".venv").symlink_to(ROOT / ".venv")
    return project


def make_dev_pulumi_env() -> dict[str, str]:
    """The variables `make dev` and `make down` give `pulumi` (the Makefile's DEV_PULUMI_ENV)."""
    line = re.search(r"^DEV_PULUMI_ENV := (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    return dict(item.split("=", 1) for item in line.split())


def backend_url(state: Path) -> str:
    """A file backend in `state`, with the project's options (scripts/env.sh: no .attrs files)."""
    return f"file://{state}?metadata=skip"


def backend_dir(url: str) -> Path:
    return Path(urlsplit(url).path)


def cluster_settings(cluster_dir: Path) -> dict:
    return {"REMOTE_KPO_CLUSTER_DIR": str(cluster_dir), "REMOTE_KPO_APISERVER_PORT": str(API_PORT),
            "REMOTE_KPO_ETCD_PORT": str(ETCD_PORT), "REMOTE_KPO_ETCD_PEER_PORT": str(ETCD_PEER_PORT)}


def bench_cluster_base(work: Path, ports: tuple[int, int, int], **extra: str) -> dict:
    """A bench's private cluster in `work`: (API server, etcd, etcd peer) ports unless the
    REMOTE_KPO_*_PORT variables say otherwise."""
    names = ("REMOTE_KPO_APISERVER_PORT", "REMOTE_KPO_ETCD_PORT", "REMOTE_KPO_ETCD_PEER_PORT")
    return {**os.environ, "REMOTE_KPO_CLUSTER_DIR": str(work / "cluster"),
            **{name: os.environ.get(name, str(port)) for name, port in zip(names, ports)}, **extra}


def dev_stack_outputs(env: dict, work: Path) -> dict:
    """`pulumi up` of the dev stack on a copy of the project in `work`, with its own backend."""
    project = copy_project(work / "project")
    (work / "state").mkdir()
    cli = Pulumi(project, {**env, "PULUMI_BACKEND_URL": backend_url(work / "state")})
    cli.run("stack", "init", "dev")
    cli.run("up", "--yes", "--stack", "dev")
    return cli.outputs("dev")


def script_env(base: dict) -> dict:
    """The environment scripts/env.sh sets up (PATH, PULUMI_HOME, KUBECONFIG, ...) over `base`."""
    dump = subprocess.run(["bash", "-c", f"source {ROOT}/scripts/env.sh && env -0"], env=base,
                          check=True, capture_output=True, text=True).stdout
    return dict(item.split("=", 1) for item in dump.split("\0") if "=" in item)


@dataclass
class Pulumi:
    cwd: Path
    env: dict

    def run(self, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(["pulumi", *args, "--non-interactive"], cwd=self.cwd, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def outputs(self, stack: str) -> dict:
        return json.loads(self.run("stack", "output", "--json", "--show-secrets", "--stack", stack).stdout)

    def write_stack(self, stack: str, config: dict) -> None:
        """A stack file in the session's project copy (keys without `remote-kpo:`)."""
        document = {"config": {f"remote-kpo:{key}": value for key, value in config.items()}}
        (self.cwd / f"Pulumi.{stack}.yaml").write_text(json.dumps(document))


def can_i(kubectl, kubeconfig: Path, verb: str, resource: str, namespace: str | None,
          env: dict | None = None) -> bool:
    """Ask the API server's own authorizer (SelfSubjectAccessReview) as that kubeconfig's user."""
    # `pods/exec` on kubectl's command line means the pod named exec: subresources go apart.
    resource, _, subresource = resource.partition("/")
    args = ["auth", "can-i", verb, resource] + (["--subresource", subresource] if subresource else [])
    args += ["--namespace", namespace] if namespace else []
    result = kubectl(*args, kubeconfig=kubeconfig, check=False, env=env)
    answer = result.stdout.strip()
    if answer not in ("yes", "no"):
        raise AssertionError(f"kubectl auth can-i {verb} {resource}: {result.stdout}{result.stderr}")
    return answer == "yes"


def up_access_program(env: dict, work: Path, subjects: list[dict]) -> Pulumi:
    """`pulumi up` of access_program/ (stack `check`, its own state in `work`): DeploymentAccess for
    each of `subjects` ({name, namespace, kind, subject, xcom}), ready to destroy."""
    project = work / "access-program"
    shutil.copytree(ROOT / "tests/e2e/access_program", project, dirs_exist_ok=True)
    (project / ".venv").symlink_to(ROOT / ".venv")
    (project / "Pulumi.check.yaml").write_text(json.dumps({"config": {"remote-kpo-access-check:subjects": subjects}}))
    (work / "access-state").mkdir()
    cli = Pulumi(project, {**env, "PULUMI_BACKEND_URL": backend_url(work / "access-state"), "REMOTE_KPO_ROOT": str(ROOT)})
    cli.run("stack", "init", "check")
    cli.run("up", "--yes", "--stack", "check")
    return cli


def wipe_cluster(base: dict) -> None:
    """Kill a private cluster's processes (no graceful stop: its data goes anyway), then
    `scripts/local-cluster down` wipes its folder (REMOTE_KPO_CLUSTER_DIR of `base`)."""
    for pid_file in (Path(base["REMOTE_KPO_CLUSTER_DIR"]) / "run").glob("*.pid"):
        pid = pid_file.read_text().strip()
        if pid and os.path.basename(os.path.realpath(f"/proc/{pid}/exe")) == pid_file.stem:
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run([str(ROOT / "scripts/local-cluster"), "down"], env=base, check=True, capture_output=True)
