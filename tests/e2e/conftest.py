"""End-to-end fixtures: the real Pulumi engine against the local control plane.

The toolchain and the cluster come from the project's own scripts (idempotent, cached), so the
e2e tests run the same way on a fresh machine as on a warm one. Each test session works on a
copy of the project with its own empty file backend: fresh state per run, and the repo's
stack files stay untouched.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from realenv import ROOT, Pulumi, backend_url, cluster_settings, copy_project, script_env
from task_pods_env import TASK_PODS_CONFIG, TASK_PODS_PASSWORDS



@pytest.fixture(scope="session")
def cluster_env(tmp_path_factory):
    """A fresh local cluster for this test session, stopped and wiped at its end."""
    base = {**os.environ, **cluster_settings(tmp_path_factory.mktemp("cluster"))}
    subprocess.run([str(ROOT / "scripts/toolchain")], check=True)
    subprocess.run([str(ROOT / "scripts/local-cluster"), "up"], env=base, check=True)
    yield script_env(base)
    subprocess.run([str(ROOT / "scripts/local-cluster"), "down"], env=base, check=True)


@pytest.fixture(scope="session")
def pulumi_cli(cluster_env, tmp_path_factory) -> Pulumi:
    project = tmp_path_factory.mktemp("project")
    copy_project(project)
    state = tmp_path_factory.mktemp("state")
    env = {**cluster_env, "PULUMI_BACKEND_URL": backend_url(state)}
    return Pulumi(project, env)


@pytest.fixture(scope="session")
def dev_outputs(pulumi_cli) -> dict:
    pulumi_cli.run("stack", "init", "dev")
    pulumi_cli.run("up", "--yes", "--stack", "dev")
    return pulumi_cli.outputs("dev")


@pytest.fixture(scope="session")
def task_pods_outputs(pulumi_cli) -> dict:
    """The task-pods stack, its passwords set with `pulumi config set --secret --path`."""
    pulumi_cli.write_stack("tasks", TASK_PODS_CONFIG)
    pulumi_cli.run("stack", "init", "tasks")
    for i, password in enumerate(TASK_PODS_PASSWORDS):
        pulumi_cli.run("config", "set", "--secret", "--path", f"remote-kpo:deployments[{i}].registries[0].password",
                       password, "--stack", "tasks")
    pulumi_cli.run("up", "--yes", "--stack", "tasks")
    return pulumi_cli.outputs("tasks")


@pytest.fixture(scope="session")
def kubectl(cluster_env):
    """kubectl as the local cluster's admin, or with `kubeconfig=` as someone else."""

    def run(*args: str, kubeconfig: Path | None = None, check: bool = True, stdin: str | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
        command = ["kubectl", *args]
        if kubeconfig:
            command[1:1] = ["--kubeconfig", str(kubeconfig)]
        result = subprocess.run(command, env=env or cluster_env, capture_output=True, text=True,
                                input=stdin, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def local_cluster_dir(cluster_env) -> Path:
    return Path(cluster_env["REMOTE_KPO_CLUSTER_DIR"])


@pytest.fixture(scope="session")
def identities(local_cluster_dir) -> dict:
    """The stand-in cloud identities the local API server accepts (scripts/local-cluster)."""
    return json.loads((local_cluster_dir / "identities.json").read_text())


def pytest_collection_modifyitems(items):
    # Keep the outputs of the shared session stack alive until the destroy test, which runs last.
    items.sort(key=lambda item: "test_destroy" in item.nodeid)

