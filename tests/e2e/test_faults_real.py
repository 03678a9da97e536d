"""Faults during `pulumi up` on the local control plane, and the documented recoveries.

The module runs its own cluster (API server 17443, etcd 17379/17380, kwok 17444 and 17447; realenv.py),
so stopping its API server leaves the session cluster of the other e2e tests alone, with its own
file backend and copy of the project. A clean `pulumi up` of a 20-Deployment stack is the baseline; after each
fault and its recovery, the stack's resources (`pulumi stack export`) and the objects in the
cluster must be exactly the baseline's: nothing duplicated, nothing lost, nothing pending.
"""

import base64
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from realenv import (FAULTS_API_PORT as API_PORT, FAULTS_ETCD_PEER_PORT as ETCD_PEER_PORT,
                     FAULTS_ETCD_PORT as ETCD_PORT, ROOT, Pulumi, backend_url, copy_project,
                     make_dev_pulumi_env, script_env, wipe_cluster)

STACK = "faults"
DEPLOYMENTS = 20
MANAGED = "app.kubernetes.io/managed-by=remote-kpo"
KINDS = "roles,rolebindings,serviceaccounts,secrets,limitranges,resourcequotas"


def faults_config() -> dict:
    """The dev stack's shape with 20 Deployments: its two entries in turn (xcom on; xcom off with
    podDefaults and a quota), named f01..f20."""
    template = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["remote-kpo:deployments"]
    deployments = [{**template[i % 2], "name": f"f{i + 1:02d}"} for i in range(DEPLOYMENTS)]
    return {"cloud": "existing", "clusterName": "remote-kpo-faults", "deployments": deployments}


@dataclass
class Faults:
    cli: Pulumi
    env: dict
    cluster_dir: Path
    state: Path  # the file backend's folder

    def kubectl(self, *args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        command = ["kubectl", *(["--kubeconfig", str(kubeconfig)] if kubeconfig else []), *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def pulumi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.cli.run(*args, "--stack", STACK, check=check)

    def export(self) -> dict:
        return json.loads(self.pulumi("stack", "export").stdout)["deployment"]

    def snapshot(self) -> dict:
        """What a converged stack is made of, in the state and in the cluster."""
        deployment = self.export()
        resources = sorted((r["type"], r["urn"]) for r in deployment.get("resources") or [])
        namespaces = set(self.kubectl("get", "namespaces", "-l", MANAGED, "-o", "name").stdout.split())
        listed = json.loads(self.kubectl("get", KINDS, "--all-namespaces", "-o", "json").stdout)["items"]
        objects = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in listed
                   if f"namespace/{o['metadata']['namespace']}" in namespaces and o["metadata"]["name"] != "default"}
        return {"resources": resources, "pending": deployment.get("pending_operations") or [],
                "namespaces": namespaces, "objects": objects}

    def start_up(self, *args: str, env: dict | None = None) -> "RunningUp":
        return RunningUp(self, args, env or self.env)

    def wipe_stack(self) -> None:
        """A new, empty stack and no object of ours left in the cluster."""
        # --force leaves the objects (deleted below); --preserve-config keeps Pulumi.faults.yaml.
        self.cli.run("stack", "rm", STACK, "--force", "--yes", "--preserve-config")
        self.kubectl("delete", "namespaces", "-l", MANAGED, "--wait=true", "--timeout=120s")
        self.cli.run("stack", "init", STACK)


class RunningUp:
    """`pulumi up --yes` in the background, in its own process group; its output is collected
    line by line so the test can strike once the first resources are created."""

    def __init__(self, faults: Faults, args: tuple[str, ...], env: dict):
        self.process = subprocess.Popen(
            ["pulumi", "up", "--yes", "--stack", STACK, "--non-interactive", *args], cwd=faults.cli.cwd,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.created = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if re.search(r"kubernetes:core/v1:Namespace .* created", line):
                self.created.set()

    def wait_for_first_namespace(self) -> None:
        assert self.created.wait(timeout=120), "no Namespace created:\n" + self.output()
        assert self.process.poll() is None, "up already finished:\n" + self.output()

    def finish(self, timeout: int = 180) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code

    def output(self) -> str:
        return "".join(self.lines)


def kill_session(cli: subprocess.Popen) -> None:
    """SIGKILL every process of the CLI's session: the engine starts its plugins in process groups
    of their own, and orphaned, the language host and program do not exit. The CLI goes first: one
    that outlived its plugins for a moment would see them fail and save the state as a failed `up`
    does (pids wrap, so /proc's order may list it last). Popen.kill does nothing once it is reaped."""
    cli.kill()
    sid = cli.pid
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after "pid (comm)": state, ppid, pgrp, session
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def plugins_in(sid: int) -> list[str]:
    """The pulumi plugins (provider, language host) still running in a session."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            session = int(stat.read_text().rsplit(")", 1)[1].split()[3])
            argv0 = (stat.parent / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if session == sid and os.path.basename(argv0).startswith("pulumi-"):
            found.append(f"{os.path.basename(argv0)} ({stat.parent.name})")
    return found


def programs_of(project: Path) -> list[int]:
    """Pids of Python programs the language host runs for `project` (pulumi-language-python-exec)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(b"pulumi-language-python-exec") for arg in argv) and f"--pwd\0{project}".encode() in b"\0".join(argv):
            pids.append(int(cmdline.parent.name))
    return pids


def start_cluster(env: dict) -> None:
    """scripts/local-cluster up, tried again if a port is briefly taken (a second cluster may
    be starting or stopping beside this one)."""
    for _ in range(3):
        result = subprocess.run([str(ROOT / "scripts/local-cluster"), "up"], env=env, capture_output=True,
                                text=True, timeout=300)
        if result.returncode == 0:
            return
        time.sleep(5)
    raise AssertionError(f"local-cluster up failed:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> Faults:
    """A private cluster, file backend and project copy for this module; stopped and wiped after."""
    cluster_dir = tmp_path_factory.mktemp("faults-cluster")
    base = {**os.environ, "REMOTE_KPO_CLUSTER_DIR": str(cluster_dir), "REMOTE_KPO_APISERVER_PORT": str(API_PORT),
            "REMOTE_KPO_ETCD_PORT": str(ETCD_PORT), "REMOTE_KPO_ETCD_PEER_PORT": str(ETCD_PEER_PORT)}
    project = tmp_path_factory.mktemp("faults-project")
    copy_project(project)
    state = tmp_path_factory.mktemp("faults-state")
    subprocess.run([str(ROOT / "scripts/toolchain")], check=True, capture_output=True)
    start_cluster(base)
    try:
        env = script_env(base)
        env["PULUMI_BACKEND_URL"] = backend_url(state)
        cli = Pulumi(project, env)
        cli.write_stack(STACK, faults_config())
        yield Faults(cli, env, cluster_dir, state)
    finally:
        # Its data is wiped anyway: no graceful stop (that takes ~15 s).
        wipe_cluster(base)


@pytest.fixture(scope="module")
def baseline(faults) -> dict:
    """A clean `pulumi up` of the stack: what every recovery must converge to."""
    faults.cli.run("stack", "init", STACK)
    faults.pulumi("up", "--yes")
    clean = faults.snapshot()
    clean["outputs"] = faults.cli.outputs(STACK)
    # The clean up is complete: per Deployment a namespace and nine objects in it (Role,
    # RoleBinding, ServiceAccount, token Secret, LimitRange, four ResourceQuotas); in the state
    # also the stack, the provider, and per Deployment two components and the cluster-scoped
    # admission policy and its binding.
    objects = DEPLOYMENTS * 9
    assert len(clean["namespaces"]) == DEPLOYMENTS
    assert len(clean["objects"]) == objects
    assert len(clean["resources"]) == 2 + DEPLOYMENTS * 5 + objects
    assert clean["pending"] == []
    return clean


def assert_converged(faults: Faults, baseline: dict) -> dict:
    """Same resources in the state, same objects in the cluster as the clean up; every
    exported kubeconfig carries its namespace's live token."""
    now = faults.snapshot()
    assert now["pending"] == []
    assert now["resources"] == baseline["resources"]  # a sorted list: a duplicate would show
    assert now["namespaces"] == baseline["namespaces"]
    assert now["objects"] == baseline["objects"]
    faults.pulumi("preview", "--expect-no-changes")
    outputs = faults.cli.outputs(STACK)
    assert outputs["deployments"] == baseline["outputs"]["deployments"]
    secrets = json.loads(faults.kubectl("get", "secrets", "--all-namespaces", "--field-selector",
                                        "type=kubernetes.io/service-account-token", "-o", "json").stdout)["items"]
    live = {s["metadata"]["namespace"]: s["data"]["token"] for s in secrets}
    for name, document in outputs["kubeconfigs"].items():
        kubeconfig = json.loads(document)
        namespace = kubeconfig["contexts"][0]["context"]["namespace"]
        token = kubeconfig["users"][0]["user"]["token"]
        assert base64.b64decode(live[namespace]).decode() == token, name
    return outputs


def kubeconfig_file(outputs: dict, name: str, path: Path) -> Path:
    path.write_text(outputs["kubeconfigs"][name])
    return path


def test_a_namespace_deleted_out_of_band_comes_back_with_new_credentials(faults, baseline, tmp_path):
    victim, namespace = "f02", "kpo-f02"
    before = kubeconfig_file(baseline["outputs"], victim, tmp_path / "before.json")
    faults.kubectl("get", "pods", "-n", namespace, kubeconfig=before)

    faults.kubectl("delete", "namespace", namespace, "--wait=false")
    # `make dev` right away: its `scripts/local-cluster up` waits for the namespace to be gone (an up
    # while it is Terminating would find it "unchanged"), and says so.
    settled = subprocess.run([str(ROOT / "scripts/local-cluster"), "up"], env=faults.env, capture_output=True,
                             text=True, timeout=300)
    assert settled.returncode == 0, settled.stderr
    assert f"local-cluster: waiting for namespaces being deleted to go: {namespace} " in settled.stdout, settled.stdout
    assert "NotFound" in faults.kubectl("get", "namespace", namespace, check=False).stderr
    # The Deployment's access went with its namespace (its RoleBinding and, once the API server's
    # token cache lets go, its token: Forbidden first, then Unauthorized).
    refused = faults.kubectl("get", "pods", "-n", namespace, kubeconfig=before, check=False)
    assert refused.returncode != 0 and re.search(r"Forbidden|Unauthorized", refused.stderr), refused.stderr

    # Without --refresh Pulumi trusts its state and sees nothing to do: hence `make dev`'s --refresh.
    faults.pulumi("preview", "--expect-no-changes")
    result = faults.pulumi("up", "--refresh", "--yes")
    # The up says what it found missing: that Deployment's namespaced objects, made again, and no
    # other (its admission policy and binding are cluster-scoped: they stayed).
    created = set(re.findall(r"^ \+  (kubernetes:\S+ \S+) created", result.stdout, re.MULTILINE))
    assert created == {f"kubernetes:core/v1:Namespace {victim}-namespace", f"kubernetes:core/v1:ServiceAccount {victim}-serviceaccount",
                       f"kubernetes:core/v1:Secret {victim}-token", f"kubernetes:rbac.authorization.k8s.io/v1:Role {victim}-role",
                       f"kubernetes:rbac.authorization.k8s.io/v1:RoleBinding {victim}-rolebinding",
                       f"kubernetes:core/v1:LimitRange {victim}-limitrange", f"kubernetes:core/v1:ResourceQuota {victim}-quota",
                       *(f"kubernetes:core/v1:ResourceQuota {victim}-admission-{guard}"
                         for guard in ("no-system-priority", "no-cross-namespace-affinity", "no-best-effort"))}
    assert re.search(r"\+ 10 created\n +272 unchanged", result.stdout), result.stdout

    outputs = assert_converged(faults, baseline)
    after = kubeconfig_file(outputs, victim, tmp_path / "after.json")
    assert json.loads(after.read_text())["users"] != json.loads(before.read_text())["users"]
    assert faults.kubectl("auth", "can-i", "create", "pods", "-n", namespace, kubeconfig=after).stdout.strip() == "yes"
    faults.kubectl("get", "pods", "-n", namespace, kubeconfig=after)
    # Every other Deployment kept its credential.
    for name in baseline["outputs"]["kubeconfigs"]:
        if name != victim:
            assert outputs["kubeconfigs"][name] == baseline["outputs"]["kubeconfigs"][name]


def test_up_interrupted_by_a_stopped_api_server_says_so_and_converges_after_restart(faults, baseline):
    faults.wipe_stack()
    running = faults.start_up()
    running.wait_for_first_namespace()
    pid = int((faults.cluster_dir / "run/kube-apiserver.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert running.finish() != 0
    output = running.output()
    # Each failed object names the API server it could not reach, and how: requests in flight
    # were reset, later ones refused.
    assert "was not successfully created by the Kubernetes API server" in output, output
    assert re.search(rf"dial tcp 127.0.0.1:{API_PORT}: connect: connection refused"
                     rf"|->127.0.0.1:{API_PORT}: read: connection reset by peer", output), output
    assert "Traceback" not in output
    # It stopped part way: some resources recorded, not all.
    partial = faults.export()["resources"]
    assert 0 < len(partial) < len(baseline["resources"])

    start_cluster(faults.env)
    faults.pulumi("up", "--refresh", "--yes")
    assert_converged(faults, baseline)


def stale_lock(faults) -> subprocess.CompletedProcess:
    """What `make dev` runs before `pulumi up` (Makefile)."""
    return subprocess.run([str(ROOT / "scripts/stale-lock"), STACK], cwd=faults.cli.cwd, env=faults.env,
                          capture_output=True, text=True, timeout=300)


def test_up_killed_mid_way_is_recovered_by_the_next_make_dev(faults, baseline):
    faults.wipe_stack()
    running = faults.start_up()
    running.wait_for_first_namespace()
    # As a CI runner cancelling a job hard: the CLI, its language host, program and provider.
    kill_session(running.process)
    running.finish()

    # A plain `up` is refused for the dead process's lock, which it names.
    refused = faults.pulumi("up", "--refresh", "--yes", check=False)
    message = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "the stack is currently locked by 1 lock(s)" in message, message
    assert f"(pid {running.process.pid})" in message, message
    # The backend keeps no metadata sidecars (`?metadata=skip`): a kill mid-write once left an empty
    # `<stack>.json.attrs`, and every later command failed with `failed to load checkpoint: EOF`.
    assert not list(faults.state.rglob("*.attrs"))
    interrupted = faults.export()
    assert 0 < len(interrupted["resources"]) < len(baseline["resources"])
    assert {op["type"] for op in interrupted.get("pending_operations") or []} <= {"creating"}

    # `make dev` again: one line about the dead lock, then the up converges.
    healed = stale_lock(faults)
    assert healed.returncode == 0, healed.stderr
    assert healed.stderr.strip().splitlines() == [
        f"remote-kpo: stack {STACK} was locked by pulumi pid {running.process.pid}, which no longer runs: "
        "cancelling the lock and forgetting its unconfirmed creates"]
    assert not faults.export().get("pending_operations")
    faults.pulumi("up", "--refresh", "--skip-preview", "--yes")  # as `make dev` runs it
    assert_converged(faults, baseline)


def test_make_dev_up_killed_mid_way_leaves_no_record_and_the_next_adopts_what_it_made(faults, baseline):
    """`make dev` runs `up` with the state saved only at its end (the Makefile's DEV_PULUMI_ENV):
    killed, it leaves the stack as it was, its objects in the cluster; the next `make dev` adopts them."""
    faults.wipe_stack()
    make_dev = {**faults.env, **make_dev_pulumi_env()}
    running = faults.start_up("--refresh", "--skip-preview", env=make_dev)
    running.wait_for_first_namespace()
    kill_session(running.process)
    running.finish()

    # Nothing recorded, not even a pending create: the state is the empty stack's.
    interrupted = faults.export()
    assert not interrupted.get("resources") and not interrupted.get("pending_operations"), (
        f"{len(interrupted.get('resources') or [])} resources recorded, at {interrupted['manifest']['time']}:\n"
        + running.output())
    made = faults.snapshot()  # part way: some namespaces, not every object
    assert made["namespaces"] and made["objects"] < baseline["objects"]

    healed = stale_lock(faults)
    assert healed.returncode == 0, healed.stderr
    result = Pulumi(faults.cli.cwd, make_dev).run("up", "--refresh", "--skip-preview", "--yes", "--stack", STACK)
    # Every object, the ones the killed up made included, created by this up: none refused as
    # already there, none duplicated.
    assert re.search(rf"\+ {len(baseline['resources'])} created", result.stdout), result.stdout
    assert_converged(faults, baseline)


def test_make_dev_leaves_the_lock_of_a_running_up_alone(faults, baseline):
    faults.wipe_stack()
    running = faults.start_up()
    running.wait_for_first_namespace()
    refused = stale_lock(faults)
    assert refused.returncode == 1
    assert f"locked by a running pulumi (pid {running.process.pid}" in refused.stderr, refused.stderr
    # The running up was not disturbed.
    assert running.finish() == 0, running.output()
    assert_converged(faults, baseline)


def test_a_killed_cli_leaves_no_program_running(faults, baseline):
    faults.wipe_stack()
    running = faults.start_up()
    running.wait_for_first_namespace()
    assert programs_of(faults.cli.cwd), "the program is not running mid-up"
    # Only the CLI, as the OOM killer or `kill -9 <pid>` would: its language host notices it has
    # been orphaned and ends the program it started.
    os.kill(running.process.pid, signal.SIGKILL)
    running.finish()
    deadline = time.monotonic() + 15
    while programs_of(faults.cli.cwd) and time.monotonic() < deadline:
        time.sleep(0.25)
    left = programs_of(faults.cli.cwd)
    try:
        assert not left, f"programs outlived the killed CLI: {left}"
        # The provider plugin did: `make dev`'s stale-lock stops it, and says so.
        assert any(p.startswith("pulumi-resource-") for p in plugins_in(running.process.pid))
        healed = stale_lock(faults)
        assert healed.returncode == 0, healed.stderr
        assert re.search(r"remote-kpo: stopping plugins a killed pulumi left running: .*pulumi-resource-kubernetes "
                         r"\(pid \d+\)", healed.stderr), healed.stderr
        assert plugins_in(running.process.pid) == []
    finally:
        kill_session(running.process)
    faults.pulumi("up", "--refresh", "--yes")
    assert_converged(faults, baseline)


KILLS = 30


def test_no_sigkill_leaves_an_unreadable_stack(faults, baseline):
    """SIGKILLs at random moments of `up`s (engine start, creates, checkpoint writes): after each,
    the stack still loads, and `make dev`'s recovery plus an `up` converge at the end."""
    faults.wipe_stack()
    chooser = random.Random(15)
    unreadable = []
    for kill in range(KILLS):
        running = faults.start_up()
        time.sleep(chooser.uniform(0.5, 6.0))
        kill_session(running.process)
        running.finish()
        loaded = faults.pulumi("stack", "export", check=False)
        if loaded.returncode != 0:
            unreadable.append((kill, loaded.stderr.strip()))
            break
        assert stale_lock(faults).returncode == 0
    assert unreadable == []
    faults.pulumi("up", "--refresh", "--yes")
    assert_converged(faults, baseline)
