"""dags/remote_kpo_janitor.py, run by real Airflow through the ml-training Deployment's exported
connection, on the session cluster with Karpenter's kwok provider playing the GPU pool (opt-in
fixtures of test_gpu_real.py: the real engine applies components/gpu.py's NodePool, consolidateAfter
5 s).

The orphans are real KubernetesPodOperator pods, left the ways the issue names:
- finished: a task with `on_finish_action="keep_pod"` (KPO's label set, Succeeded, kept);
- pending: the README's GPU task whose pod, bound to the GPU node Karpenter made for it, never
  starts (kwok's `image-pull: fail`: an image that never arrives), its Airflow killed while KPO waits;
- running: a task whose pod runs for an hour, its Airflow killed while it runs.
The janitor DAG sweeps twice, in the Airflow that ran those tasks, with thresholds of THRESHOLD
seconds, MAX_TASK_RUNTIME for the running rule (the Variable scripts/astro-env would set, made small
so that the orphans pass them in the test instead of in hours): first while Airflow still counts the
killed tasks as running (as it does until its heartbeat timeout fails them), then after the test
has failed them as the scheduler would, while a live deferrable task's pod runs (in a second
Airflow). The analytics Deployment's kept pod, as old, has no janitor Variable and is in another
namespace.
"""

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime

import pytest

from airflow_runner import AIRFLOW_PYTHON, KPO_DAGS, Runner, migrated_airflow_env
from components.gpu import gpu_task
from gpu_local import eks_gpu_pool, is_pool_node
from realenv import ROOT, can_i
from test_gpu_real import gpu_program, karpenter  # noqa: F401  (the opt-in Karpenter fixtures)
from watch import Event, Watch

DEPLOYMENT, CONN_ID = "ml-training", "kpo_ml_training"
OTHER, OTHER_CONN_ID = "analytics", "kpo_analytics"
THRESHOLD = 30
# The running rule's: the live task's pod, made just before the second sweep, is well within it.
MAX_TASK_RUNTIME = 60
# Running through the second sweep.
LIVE_RUNTIME = "120s"
SETTINGS = {"enabled": True, "finishedTtlSeconds": THRESHOLD, "maxTaskRuntimeSeconds": MAX_TASK_RUNTIME,
            "pendingDeadlineSeconds": THRESHOLD, "gpuPendingDeadlineSeconds": THRESHOLD}
# Limits that only turn a hang into a failure.
STEP_LIMIT = 300


def dag(scenario: str, conn_id: str = CONN_ID) -> str:
    return f"kpo_{scenario}__{conn_id}"


@dataclass
class Sweep:
    first: dict                   # the janitor's sweep task while Airflow still ran the orphans' tasks
    task: dict                    # its sweep task once Airflow had failed them, as run_dag.py reports it
    janitor_log: str              # what Airflow logged while it ran
    live_run: dict                # run_dag.py's report of the live task's run
    live_pod: str
    orphans: dict                 # rule -> the orphan pod's name
    foreign_pod: str              # the analytics Deployment's kept pod
    gpu_node: str                 # the node Karpenter made for the orphan GPU pod
    gpu_node_at_sweep: bool       # it was still there when the janitor started
    swept_at: float
    pods: list[Event]             # the ml-training namespace's pods, as watched
    nodes: list[Event]


    @property
    def removals(self) -> list[dict]:
        """What the janitor removed (its tasks' XCom)."""
        return [r for task in (self.first, self.task) for r in task["xcom"].get("return_value", [])]


def created(event: Event) -> float:
    return datetime.fromisoformat(event.object["metadata"]["creationTimestamp"]).timestamp()


def pod_of(watch: Watch, dag_id: str, ready, what: str) -> Event:
    return watch.wait_for(lambda e: e.object["metadata"].get("labels", {}).get("dag_id") == dag_id and ready(e.object),
                          STEP_LIMIT, what)


def phase(pod: dict) -> str | None:
    return pod.get("status", {}).get("phase")


def stop(runner: Runner) -> None:
    """The task's Airflow dies (SIGKILL), as a worker does: no KPO cleanup runs."""
    runner.process.kill()
    runner.process.wait()


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory):
    """The test DAGs and the janitor DAG with its rules, as an Astro project's dags/ holds them."""
    folder = tmp_path_factory.mktemp("janitor-dags")
    for source in (KPO_DAGS / "dags" / "kpo_e2e.py", ROOT / "dags" / "remote_kpo_janitor.py",
                   ROOT / "dags" / "remote_kpo_janitor_rules.py"):
        (folder / source.name).symlink_to(source)
    return folder


@pytest.fixture(scope="module")
def airflow_env(dev_outputs, cluster_env, dags_folder, tmp_path_factory) -> dict:
    """Both Deployments' connections; the janitor Variable for ml-training only."""
    return migrated_airflow_env(
        dev_outputs, [OTHER, DEPLOYMENT], cluster_env["PATH"], tmp_path_factory.mktemp("airflow-janitor"),
        dags_folder=dags_folder, REMOTE_KPO_E2E_GPU_TASK=json.dumps(gpu_task("eks", eks_gpu_pool())),
        AIRFLOW_VAR_REMOTE_KPO_JANITOR__KPO_ML_TRAINING=json.dumps(SETTINGS))


# What Airflow's scheduler does to a task whose worker died, once task_instance_heartbeat_timeout has
# passed: here no scheduler runs, and a killed dag.test() leaves its task instance running.
FAIL_DEAD_TASKS = """
import sys
from sqlalchemy import update
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
with create_session() as session:
    session.execute(update(TaskInstance).where(TaskInstance.dag_id.in_(sys.argv[1:]),
                                               TaskInstance.state == "running").values(state="failed"))
"""


def second_home(env: dict, folder) -> dict:
    """The same migrated database, copied: a second Airflow process running beside the first."""
    shutil.copy(f"{env['AIRFLOW_HOME']}/airflow.db", folder / "airflow.db")
    return {**env, "AIRFLOW_HOME": str(folder), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{folder}/airflow.db"}


@pytest.fixture(scope="module")
def sweep(gpu_program, airflow_env, dev_outputs, cluster_env, kubectl, tmp_path_factory) -> Sweep:  # noqa: F811
    namespace = dev_outputs["deployments"][DEPLOYMENT]["namespace"]
    other_namespace = dev_outputs["deployments"][OTHER]["namespace"]
    runners: list[Runner] = []

    def start(env: dict, steps: list[str]) -> Runner:
        runners.append(Runner(env, tmp_path_factory.mktemp("janitor-runs"), steps))
        return runners[-1]

    with Watch(cluster_env, "pods", "-n", namespace) as pods, Watch(cluster_env, "nodes") as nodes:
        try:
            # A task whose pod runs an hour, killed while it runs.
            runner = start({**airflow_env, "REMOTE_KPO_E2E_TASK_RUNTIME": "1h"}, [dag("long_sync")])
            running = pod_of(pods, dag("long_sync"), lambda p: phase(p) == "Running", "the long pod running")
            stop(runner)
            # Finished and kept, in both namespaces; then the GPU task, killed once its pod sits on
            # the GPU node Karpenter made for it.
            orphaner = start(airflow_env, [dag("kept", OTHER_CONN_ID), dag("kept"), dag("gpu_stuck")])
            gpu_pod = pod_of(pods, dag("gpu_stuck"), lambda p: p["spec"].get("nodeName"), "the GPU pod on a node")
            stop(orphaner)
            gpu_node = gpu_pod.object["spec"]["nodeName"]
            assert is_pool_node(kubectl_json(kubectl, "node", gpu_node))
            kept = pod_of(pods, dag("kept"), lambda p: phase(p) == "Succeeded", "the kept pod")
            foreign = kubectl_json(kubectl, "pods", "-n", other_namespace, "-l", f"dag_id={dag('kept', OTHER_CONN_ID)}")
            [foreign_pod] = foreign["items"]

            # The janitor, in the Airflow that ran the orphans' tasks, once every orphan is past its
            # rule's threshold (the kept pod counts from its end, after its creation): Airflow still
            # has the killed tasks running.
            janitor = start(airflow_env, ["@sweep", "remote_kpo_janitor", "@again", "remote_kpo_janitor"])
            janitor.reach("sweep")
            time.sleep(max(0.0, created(running) + MAX_TASK_RUNTIME + 5 - time.time(),
                           max(created(e) for e in (gpu_pod, kept)) + THRESHOLD + 5 - time.time()))
            janitor.go("sweep")
            janitor.reach("again")
            # Airflow fails the dead tasks; a live task runs in a second Airflow; the janitor again.
            subprocess.run([str(AIRFLOW_PYTHON), "-c", FAIL_DEAD_TASKS, dag("gpu_stuck"), dag("long_sync")],
                           env=airflow_env, check=True, capture_output=True, timeout=300)
            live = start({**second_home(airflow_env, tmp_path_factory.mktemp("airflow-live")),
                          "REMOTE_KPO_E2E_TASK_RUNTIME": LIVE_RUNTIME}, [dag("long_deferrable")])
            live_pod = pod_of(pods, dag("long_deferrable"), lambda p: phase(p) == "Running", "the live pod running")
            gpu_node_at_sweep = kubectl("get", "node", gpu_node, check=False).returncode == 0
            swept_at = time.time()
            janitor.go("again")
            first_run, janitor_run = janitor.finish()
            nodes.wait_for(lambda e: e.type == "DELETED" and e.name == gpu_node, STEP_LIMIT, "the GPU node removed")
            [live_run] = live.finish()
        finally:
            for runner in runners:
                if runner.process.poll() is None:
                    stop(runner)
        return Sweep(first_run["tasks"]["sweep[0]"], janitor_run["tasks"]["sweep[0]"], janitor.log.read_text(),
                     live_run, live_pod.name, {"finished": kept.name, "pending": gpu_pod.name, "running": running.name},
                     foreign_pod["metadata"]["name"], gpu_node, gpu_node_at_sweep, swept_at, pods.events(),
                     nodes.events())


def kubectl_json(kubectl, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture(scope="module", autouse=True)
def leave_no_pods(gpu_program, kubectl, dev_outputs):  # noqa: F811
    """Whatever a failed story left, gone before the GPU pool's destroy (which waits for its nodes)."""
    yield
    for deployment in (OTHER, DEPLOYMENT):
        kubectl("delete", "pods", "-n", dev_outputs["deployments"][deployment]["namespace"], "-l",
                "kubernetes_pod_operator=True", "--wait=false")


def test_an_orphan_of_each_kind_is_removed_and_each_removal_names_its_task(sweep, kubectl):
    assert sorted((r["rule"], r["pod"]) for r in sweep.removals) == sorted(
        (rule, pod) for rule, pod in sweep.orphans.items())
    by_rule = {r["rule"]: r for r in sweep.removals}
    assert {rule: r["dag_id"] for rule, r in by_rule.items()} == {
        "finished": dag("kept"), "pending": dag("gpu_stuck"), "running": dag("long_sync")}
    for removal in sweep.removals:
        assert removal["age"] > removal["limit"] == SETTINGS[
            {"finished": "finishedTtlSeconds", "pending": "gpuPendingDeadlineSeconds",
             "running": "maxTaskRuntimeSeconds"}[removal["rule"]]]
        assert (removal["task_id"], removal["try_number"], removal["namespace"]) == ("run_pod", "1", "kpo-ml-training")
        # KPO's run_id label: the run id made label-safe, a hash at its end.
        assert removal["run_id"].startswith("manual__")
        line = (f"remote-kpo janitor: removed pod kpo-ml-training/{removal['pod']} (dag_id {removal['dag_id']}, "
                f"task_id run_pod, run_id {removal['run_id']}, try_number 1): {removal['rule']} ")
        assert line in sweep.janitor_log, sweep.janitor_log[-3000:]
        gone = kubectl("get", "pod", removal["pod"], "-n", "kpo-ml-training", check=False)
        assert "NotFound" in gone.stderr


def test_orphans_whose_tasks_airflow_may_still_retry_are_left_until_it_fails_them(sweep):
    # First sweep, every orphan past its threshold: the kept pod's task had succeeded; the killed
    # tasks were still running as far as Airflow knew (a retry would reattach to their pods).
    assert [(r["rule"], r["pod"]) for r in sweep.first["xcom"]["return_value"]] == [
        ("finished", sweep.orphans["finished"])]
    for rule in ("pending", "running"):
        assert (f"remote-kpo janitor: left pod kpo-ml-training/{sweep.orphans[rule]}: its task instance is running "
                "in Airflow") in sweep.janitor_log
    # Once Airflow failed them, the next sweep removed their pods.
    assert sorted(r["rule"] for r in sweep.task["xcom"]["return_value"]) == ["pending", "running"]


def test_the_pod_of_a_live_task_is_not_removed_and_its_task_succeeds(sweep):
    assert sweep.live_pod not in {r["pod"] for r in sweep.removals}
    # It ran through the whole sweep (it ends LIVE_RUNTIME after it started), and its task succeeded.
    ended = next(e for e in sweep.pods if e.name == sweep.live_pod and phase(e.object) == "Succeeded")
    assert sweep.task["end"] < ended.at
    assert sweep.live_run["state"] == "success"
    # It was deleted once, after the sweep: by KPO, when its task was done.
    deleted = [e for e in sweep.pods if e.name == sweep.live_pod and e.type == "DELETED"]
    assert len(deleted) == 1 and deleted[0].at > sweep.swept_at


def test_another_deployments_namespace_is_untouched(sweep, kubectl, dev_outputs, tmp_path):
    other_namespace = dev_outputs["deployments"][OTHER]["namespace"]
    # As old and as finished as the removed one; no janitor Variable for its connection, and the
    # ml-training connection could not list it anyway.
    pod = kubectl_json(kubectl, "pod", sweep.foreign_pod, "-n", other_namespace)
    assert phase(pod) == "Succeeded"
    assert time.time() - created(Event(0, "", pod)) > THRESHOLD
    kubeconfig = tmp_path / "ml-training.json"
    kubeconfig.write_text(dev_outputs["kubeconfigs"][DEPLOYMENT])
    assert not can_i(kubectl, kubeconfig, "list", "pods", other_namespace)
    assert not can_i(kubectl, kubeconfig, "delete", "pods", other_namespace)


def test_removing_the_orphan_pending_gpu_pod_lets_karpenter_take_its_gpu_node_away(sweep):
    # The pod held the node (Pending on it, the pool's consolidateAfter long past) until the sweep.
    assert sweep.gpu_node_at_sweep
    pod_events = [e for e in sweep.pods if e.name == sweep.orphans["pending"]]
    assert all(phase(e.object) == "Pending" for e in pod_events)
    removed = next(e for e in pod_events if e.type == "DELETED")
    node_gone = next(e for e in sweep.nodes if e.name == sweep.gpu_node and e.type == "DELETED")
    assert sweep.swept_at < removed.at <= node_gone.at
