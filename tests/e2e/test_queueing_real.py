"""Tasks over a Deployment's quota wait in line and Deployments lend each other idle GPUs (issue 26):
for real, on the session's local cluster.

- Kueue v0.17.0 (scripts/toolchain kueue), run by `REMOTE_KPO_KUEUE=1 scripts/local-cluster up` as
  an `existing` cluster's operators would install it, with the Configuration the cloud stacks give
  it (the pod integration for the namespaces labelled remote-kpo/queueing).
- The real engine applies the `queue` stack (QUEUE_CONFIG: `cloud: existing`, `queueing` on, three
  Deployments with a quota of one GPU each): its ResourceFlavors, ClusterQueues in one cohort and
  LocalQueues (components/queueing.py), and the tenancy layer (components/admission.py).
- Karpenter's kwok provider scales the GPU pool from zero (the GpuNodePool of test_gpu_real.py's
  gpu_program/), so the pool has no GPU until an admitted task asks for one.
- Real Airflow runs the README's GPU task (the stack's `gpuTask` shape: the queue label, its
  schedule timeout) through each Deployment's exported connection, three Airflow processes at once.

One story, told in order by the `story` fixture and checked by the tests below:
1. q-solo (quota 1 GPU, lends nothing) gets three GPU tasks at once: one runs, two wait gated, all
   three succeed one after the other. Karpenter makes a node for the admitted pod only. While the
   first runs, `scripts/verify` through q-solo's connection passes and shows the other two in line.
2. q-team-a (quota 1 GPU, may borrow 1) gets two at once while q-team-b (quota 1 GPU) is idle: both
   run, one on team-b's GPU. Then team-b sends one: it waits until one of team-a's tasks ends, and
   gets its GPU then (`queueing.reclaim: wait`, the default: nothing is evicted). `reclaim: preempt`
   (Kueue evicts the borrower's task, whose KPO task fails) is not proven here.
"""

import json
import subprocess
from dataclasses import dataclass

import pytest

from airflow_runner import migrated_airflow_env
from components.kueue import QUEUE_LABEL
from gpu_local import pod_phase, start_karpenter, up_gpu_program
from queue_local import gated, lives, start_airflow, start_kueue
from realenv import ROOT
from watch import Event, Watch

STACK = "queue"
SOLO, TEAM_A, TEAM_B = "q-solo", "q-team-a", "q-team-b"
QUEUE_CONFIG = {
    "cloud": "existing", "clusterName": "remote-kpo-queue", "gpuPool": {"enabled": True},
    "queueing": {"enabled": True, "maxWaitSeconds": 600},
    "deployments": [
        {"name": SOLO, "xcom": False, "quota": {"gpu": 1, "lendingLimit": {"gpu": 0}}},
        {"name": TEAM_A, "xcom": False, "quota": {"gpu": 1, "borrowingLimit": {"gpu": 1}}},
        {"name": TEAM_B, "xcom": False, "quota": {"gpu": 1}},
    ],
}
CONSOLIDATE_AFTER = "5s"
# How long the fake GPU containers run (kwok): long enough for scripts/verify to see two tasks in
# line while the first runs, and for team-b's task to arrive while both of team-a's run.
RUNTIME = "15s"
# Limits that only turn a hang into a failure.
STEP_LIMIT = 180
# Once a borrowed GPU is free again, its owner's waiting task is admitted within this (Kueue
# requeues on a finished workload at once; the rest is KPO's and the scheduler's latency).
RECLAIM_LIMIT = 20


def dag(conn_id: str) -> str:
    return f"kpo_gpu__{conn_id}"


def test_queueing_on_a_cluster_without_kueue_stops_before_any_resource(pulumi_cli, kubectl):
    # First in this file: the session cluster has no Kueue until the fixtures below start it.
    assert not kubectl("get", "crd", "-o", "name").stdout.count("kueue.x-k8s.io")
    pulumi_cli.write_stack("queue-no-kueue", QUEUE_CONFIG)
    pulumi_cli.run("stack", "init", "queue-no-kueue")
    try:
        result = pulumi_cli.run("up", "--yes", "--skip-preview", "--stack", "queue-no-kueue", check=False)
        assert result.returncode != 0
        assert ("remote-kpo:queueing.enabled: Kueue is not installed on this cluster: no CustomResourceDefinition "
                "resourceflavors.kueue.x-k8s.io, clusterqueues.kueue.x-k8s.io") in result.stdout + result.stderr
        state = json.loads(pulumi_cli.run("stack", "export", "--stack", "queue-no-kueue").stdout)["deployment"]
        assert [r["type"] for r in state.get("resources") or [] if r["type"].startswith("kubernetes:")] == []
    finally:
        pulumi_cli.run("stack", "rm", "--yes", "--force", "queue-no-kueue", check=False)


@pytest.fixture(scope="module")
def kueue_and_karpenter(cluster_env):
    """Kueue and Karpenter on the session cluster (opt-in: the other tests run without them)."""
    start_kueue(cluster_env)
    start_karpenter(cluster_env)


@pytest.fixture(scope="module")
def gpu_program(kueue_and_karpenter, cluster_env, tmp_path_factory):
    cli = up_gpu_program(cluster_env, tmp_path_factory.mktemp("queue-gpu"), CONSOLIDATE_AFTER)
    yield cli
    cli.run("destroy", "--yes", "--stack", "gpu")


@pytest.fixture(scope="module")
def queue_outputs(kueue_and_karpenter, pulumi_cli) -> dict:
    pulumi_cli.write_stack(STACK, QUEUE_CONFIG)
    pulumi_cli.run("stack", "init", STACK)
    pulumi_cli.run("up", "--yes", "--skip-preview", "--stack", STACK)
    yield pulumi_cli.outputs(STACK)
    pulumi_cli.run("destroy", "--yes", "--skip-preview", "--stack", STACK)


@dataclass
class Story:
    outputs: dict
    runs: dict                         # dag_id -> [report of each run], in the order they ended
    pods: dict[str, list[Event]]       # Deployment -> its namespace's pods, as watched
    node_claims: list[Event]           # Karpenter's NodeClaims, as watched
    logs: str                          # every Airflow process's output
    verified: subprocess.CompletedProcess  # scripts/verify --json of q-solo while its tasks waited


@pytest.fixture(scope="module")
def story(gpu_program, queue_outputs, pulumi_cli, cluster_env, tmp_path_factory) -> Story:
    work = tmp_path_factory.mktemp("queue-airflow")
    deployments = queue_outputs["deployments"]
    conn = {name: deployments[name]["connectionId"] for name in (SOLO, TEAM_A, TEAM_B)}
    template = migrated_airflow_env(queue_outputs, [SOLO, TEAM_A, TEAM_B], cluster_env["PATH"], work / "template",
                                    REMOTE_KPO_E2E_GPU_TASK=json.dumps(queue_outputs["gpuTask"]))
    namespaces = {name: deployments[name]["namespace"] for name in conn}
    watches = {name: Watch(cluster_env, "pods", "-n", namespace) for name, namespace in namespaces.items()}
    claims = Watch(cluster_env, "nodeclaims.karpenter.sh")
    # Each process runs a q-solo task, then a team's: team-a's two long, team-b's short.
    airflows = [start_airflow(template, work / f"a{i}", RUNTIME,
                              ["kpo_warmup", "@solo", dag(conn[SOLO]), "@teams", dag(conn[TEAM_A])]) for i in (1, 2)]
    airflows.append(start_airflow(template, work / "b", RUNTIME,
                                  ["kpo_warmup", "@solo", dag(conn[SOLO]), "@reclaim", dag(conn[TEAM_B])]))
    try:
        # 1. Three GPU tasks of q-solo at once.
        for airflow in airflows:
            airflow.reach("solo")
        for airflow in airflows:
            airflow.go("solo")
        # While the first runs and the others wait: what the Deployment's own check shows.
        watches[SOLO].wait_for(lambda e: pod_phase(e.object) == "Running", STEP_LIMIT, "a q-solo pod Running")
        verified = subprocess.run([str(ROOT / "scripts/verify"), "--connection", "--name", SOLO, "--json"],
                                  cwd=pulumi_cli.cwd, env=pulumi_cli.env, input=queue_outputs["airflowConnections"][SOLO],
                                  capture_output=True, text=True, timeout=STEP_LIMIT)
        for airflow, barrier in zip(airflows, ("teams", "teams", "reclaim")):
            airflow.reach(barrier)
        # 2. Two of q-team-a at once, with q-team-b idle; once both run, one of q-team-b.
        for airflow in airflows[:2]:
            airflow.go("teams")
        running: set[str] = set()

        def both_running(e: Event) -> bool:
            if pod_phase(e.object) == "Running":
                running.add(e.name)
            return len(running) == 2

        watches[TEAM_A].wait_for(both_running, STEP_LIMIT, "two team-a pods Running")
        airflows[2].go("reclaim")
        runs: dict[str, list[dict]] = {}
        for airflow in airflows:
            for run in airflow.finish():
                runs.setdefault(run["dag_id"], []).append(run)
        # The last pods' deletions reach the watch.
        for name, watch in watches.items():
            expected = {SOLO: 3, TEAM_A: 2, TEAM_B: 1}[name]
            gone: set[str] = set()
            watch.wait_for(lambda e: e.type == "DELETED" and not gone.add(e.name) and len(gone) == expected,
                           STEP_LIMIT, f"{name}'s pods deleted")
        logs = "\n".join(airflow.log.read_text() for airflow in airflows)
        return Story(queue_outputs, runs, {name: watch.events() for name, watch in watches.items()},
                     claims.events(), logs, verified)
    finally:
        for watch in [*watches.values(), claims]:
            watch.stop()
        for airflow in airflows:
            if airflow.process.poll() is None:
                airflow.process.kill()


def test_the_stack_exports_task_shapes_that_name_the_queue_and_wait_long_enough(queue_outputs):
    shape = queue_outputs["gpuTask"]
    assert shape["labels"] == {QUEUE_LABEL: "default"}
    # maxWaitSeconds in line, then the GPU node's start from zero.
    assert shape["scheduleTimeoutSeconds"] == 600 + shape["startupTimeoutSeconds"]
    assert queue_outputs["task"]["labels"] == {QUEUE_LABEL: "default"}


def test_kueue_admits_the_stacks_queues(queue_outputs, kubectl):
    for name in (SOLO, TEAM_A, TEAM_B):
        info = queue_outputs["deployments"][name]
        kubectl("wait", f"clusterqueue/{info['clusterQueue']}", "--for=condition=Active", "--timeout=60s")
        kubectl("wait", f"localqueue/{info['localQueue']}", "-n", info["namespace"], "--for=condition=Active",
                "--timeout=60s")


def test_three_gpu_tasks_over_a_one_gpu_quota_run_one_after_the_other_and_all_succeed(story):
    solo = dag(story.outputs["deployments"][SOLO]["connectionId"])
    assert [run["state"] for run in story.runs[solo]] == ["success"] * 3, story.runs[solo]
    pods = lives(story.pods[SOLO])
    assert len(pods) == 3
    # Every pod was created behind Kueue's gate, and let through only once the one before was done.
    assert all(pod.created_gated for pod in pods)
    for before, after in zip(pods, pods[1:]):
        assert after.ungated >= before.succeeded, (before, after)
    # While the first ran, the other two were there, waiting.
    assert all(pod.created < pods[0].succeeded for pod in pods[1:])
    assert all(pod.phases == {"Pending", "Running", "Succeeded"} for pod in pods), pods


def test_no_queued_task_is_refused_by_the_api_server(story):
    # Before queueing, the second and third task failed at pod creation: 403 "exceeded quota".
    assert "exceeded quota" not in story.logs
    assert " 403" not in story.logs and "Forbidden" not in story.logs
    assert not [run for runs in story.runs.values() for run in runs if run["failures"]]


def test_karpenter_makes_no_node_for_a_gated_pod_and_one_for_an_admitted_pod(story):
    pods = lives(story.pods[SOLO])
    first = pods[0]
    # The first pod's node came from Karpenter's pool while the other two waited gated.
    claims_then = {e.name for e in story.node_claims if e.at <= first.running}
    assert len(claims_then) == 1, claims_then
    # Every NodeClaim followed an admitted pod that had no node yet: none for a gated one.
    admitted_unbound = [(pod.ungated, pod.running) for name in story.pods for pod in lives(story.pods[name])]
    created = {e.name: e.at for e in reversed(story.node_claims)}
    for claim, at in created.items():
        assert any(ungated <= at <= running for ungated, running in admitted_unbound), (claim, at)
    nodes = {pod.node for name in story.pods for pod in lives(story.pods[name])}
    assert "kwok-node-0" not in nodes


def test_verify_passes_a_queued_deployment_and_shows_its_tasks_in_line_in_the_order_kueue_admits_them(story):
    assert story.verified.returncode == 0, story.verified.stdout + story.verified.stderr
    [report] = json.loads(story.verified.stdout)["deployments"]
    queue = report["queue"]
    assert (queue["local_queue"], queue["cluster_queue"]) == (
        "default", story.outputs["deployments"][SOLO]["clusterQueue"])
    assert queue["admitted"] >= 1
    # Seen while the first task ran: the other two, first in line first, as Kueue then let them in.
    pods = lives(story.pods[SOLO])
    assert queue["in_line"] == [pod.name for pod in pods[1:]], (queue, pods)


def test_a_deployment_borrows_an_idle_deployments_gpu(story):
    team_a = dag(story.outputs["deployments"][TEAM_A]["connectionId"])
    assert [run["state"] for run in story.runs[team_a]] == ["success"] * 2
    first, second = lives(story.pods[TEAM_A])
    # Both ran at once on a quota of one GPU: one of them on team-b's.
    assert second.running < first.succeeded


def test_the_lender_gets_its_gpu_back_when_a_borrowing_task_ends_without_killing_it(story):
    team_b = dag(story.outputs["deployments"][TEAM_B]["connectionId"])
    assert [run["state"] for run in story.runs[team_b]] == ["success"]
    [lender] = lives(story.pods[TEAM_B])
    borrowers = lives(story.pods[TEAM_A])
    # Sent while both of team-a's ran, it waited gated...
    assert lender.created_gated and lender.created > max(pod.running for pod in borrowers)
    first_end = min(pod.succeeded for pod in borrowers)
    assert lender.created < first_end
    # ...until the first of them ended (reclaim: wait), and no longer than RECLAIM_LIMIT after.
    assert first_end <= lender.ungated <= first_end + RECLAIM_LIMIT, (first_end, lender)
    # Neither borrowing task was evicted: both ran to Succeeded, never Failed.
    assert all(pod.phases == {"Pending", "Running", "Succeeded"} for pod in borrowers), borrowers


def test_a_tenant_cannot_let_its_own_pod_out_of_the_queue(queue_outputs, kubectl, tmp_path):
    """Kueue's gate holds a task until its quota admits it; the tenancy policy (components/admission.py)
    refuses the Deployment's own attempt to lift it or to move the pod to another queue, while Kueue's
    controller lifts it (the story above). Two GPUs over q-solo's one: Kueue never admits it."""
    info = queue_outputs["deployments"][SOLO]
    kubeconfig = tmp_path / "solo.json"
    kubeconfig.write_text(queue_outputs["kubeconfigs"][SOLO])
    shape = queue_outputs["gpuTask"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "over-quota", "annotations": shape["annotations"]},
           "spec": {"restartPolicy": "Never", "nodeSelector": shape["nodeSelector"], "tolerations": shape["tolerations"],
                    "containers": [{"name": "base", "image": "busybox:1.36",
                                    "resources": {"limits": {shape["resourceName"]: "2"}}}]}}
    namespace = ["-n", info["namespace"]]
    kubectl("apply", *namespace, "-f", "-", stdin=json.dumps(pod), kubeconfig=kubeconfig)
    try:
        stored = json.loads(kubectl("get", "pod", "over-quota", *namespace, "-o", "json").stdout)
        # Without the label in the pod, Kueue put its namespace's LocalQueue on it, and its gate.
        assert stored["metadata"]["labels"][QUEUE_LABEL] == "default"
        assert gated(stored)
        ungate = kubectl("patch", "pod", "over-quota", *namespace, "--type=json",
                         "-p", json.dumps([{"op": "remove", "path": "/spec/schedulingGates"}]),
                         kubeconfig=kubeconfig, check=False)
        assert ungate.returncode != 0
        assert "remote-kpo: a pod cannot be changed once created" in ungate.stderr, ungate.stderr
        requeue = kubectl("label", "pod", "over-quota", *namespace, f"{QUEUE_LABEL}=other", "--overwrite",
                          kubeconfig=kubeconfig, check=False)
        assert requeue.returncode != 0
        assert "remote-kpo: a pod's labels cannot be changed once created" in requeue.stderr, requeue.stderr
        assert gated(json.loads(kubectl("get", "pod", "over-quota", *namespace, "-o", "json").stdout))
    finally:
        kubectl("delete", "pod", "over-quota", *namespace, "--wait=false")
