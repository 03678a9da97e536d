"""Nodes taken away under a running KPO task: what the `task` output and the task NodePool's
disruption settings do, for real, with real Airflow on upstream Karpenter with its kwok provider
(as test_gpu_real.py runs it).

- The real engine applies the EKS stack's `TaskNodePool` (gpu_program/) for a `taskPool` whose
  `terminationGracePeriod` is GRACE through the config key; consolidateAfter is shortened to
  CONSOLIDATE_AFTER (the cloud value is 5 minutes).
- Real Airflow runs the README's ordinary task, built from the eks `task` output
  (components/disruption.py task_shape: the no-eviction annotations, the task NodePool's selector
  and toleration), through the dev stack's exported connection of `analytics`; kwok runs its
  container RUNTIME seconds.
- Beside it, the negative case: a plain pod with the same selector and toleration but without the
  annotations ("unprotected"), which the scheduler puts on the task's node, the only one of the
  pool.

One story, told in order by the `story` fixture and checked by the tests below:
1. consolidation, then drift: the task runs on a new task node, the unprotected pod joins it, and
   CONSOLIDATION_WINDOW passes (consolidateAfter and Karpenter's 10 s disruption polls) with
   neither touched; then the NodePool's template changes (a label), so Karpenter replaces the
   node: the unprotected pod is evicted at once, the task runs to its end and succeeds, and the
   node goes.
2. expiry: the NodePool's expireAfter is shortened to EXPIRE_AFTER, and the task runs again with an
   unprotected pod, on a new node that expires under them: the same.
"""

import json
import time
from dataclasses import dataclass
from datetime import datetime

import pytest

from airflow_runner import Runner, migrated_airflow_env
from components.disruption import TASK_NODE_POOL_NAME, task_shape
from gpu_local import is_pool_node, pod_phase, start_karpenter, up_gpu_program
from watch import Event, Watch

CONSOLIDATE_AFTER = "5s"
GRACE = 120               # seconds: the task NodePool's terminationGracePeriod here, past RUNTIME
POD_GRACE = 2             # the unprotected pods' terminationGracePeriodSeconds
RUNTIME = 75              # seconds each task's container runs
CONSOLIDATION_WINDOW = 15  # seconds both pods share the node before the drift
EXPIRE_AFTER = 20         # seconds: the expiry story's node lifetime
DEPLOYMENT = "analytics"
CONN_ID = "kpo_analytics"
DAG = f"kpo_task_long__{CONN_ID}"
# Limits that only turn a hang into a failure.
STEP_LIMIT = 120


@pytest.fixture(scope="module")
def node_pools(cluster_env, tmp_path_factory):
    start_karpenter(cluster_env)
    cli = up_gpu_program(cluster_env, tmp_path_factory.mktemp("disruption"), CONSOLIDATE_AFTER,
                         task_pool={"terminationGracePeriod": f"{GRACE}s"})
    yield cli
    cli.run("destroy", "--yes", "--stack", "gpu")


@pytest.fixture(scope="module")
def airflow_env(dev_outputs, cluster_env, tmp_path_factory) -> dict:
    """The analytics Deployment's Airflow: its exported connection, and the eks `task` shape."""
    return migrated_airflow_env(dev_outputs, [DEPLOYMENT], cluster_env["PATH"], tmp_path_factory.mktemp("airflow-disrupt"),
                                REMOTE_KPO_E2E_TASK=json.dumps(task_shape("eks")),
                                REMOTE_KPO_E2E_TASK_RUNTIME=f"{RUNTIME}s")


def unprotected_pod(name: str) -> dict:
    """A bare pod on the task NodePool, as a task without the annotations makes one."""
    shape = task_shape("eks")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": {"kwok.remote-kpo.local/runtime": "1h"}},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": POD_GRACE,
                     "nodeSelector": shape["nodeSelector"], "tolerations": shape["tolerations"],
                     "containers": [{"name": "base", "image": "busybox:1.36",
                                     "resources": {"requests": {"cpu": "100m"}}}]}}


def seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def deletion_started(events: list[Event]) -> float | None:
    """The API server's deletionTimestamp of the object, if it was ever deleted."""
    stamps = [e.object["metadata"]["deletionTimestamp"] for e in events if e.object["metadata"].get("deletionTimestamp")]
    return seconds(stamps[0]) if stamps else None


def node_of(events: list[Event]) -> str:
    return next(e.object["spec"]["nodeName"] for e in events if e.object["spec"].get("nodeName"))


def is_task_node(node: dict) -> bool:
    return is_pool_node(node, TASK_NODE_POOL_NAME)


def current(watch: Watch) -> list[dict]:
    """The watched objects that exist now."""
    latest: dict[str, Event] = {}
    for event in watch.events():
        latest[event.name] = event
    return [e.object for e in latest.values() if e.type != "DELETED"]


@dataclass
class Story:
    runs: list[dict]        # run_dag.py's report: the drift story's task run, then the expiry story's
    pods: list[Event]       # the task namespace's and default's pods, as watched
    nodes: list[Event]
    claims: list[Event]
    drift_patched: float    # when the NodePool's template changed

    def pod(self, name: str) -> list[Event]:
        return [e for e in self.pods if e.name == name]

    def node(self, name: str) -> list[Event]:
        return [e for e in self.nodes if e.name == name]

    def claim_of(self, node: str) -> list[Event]:
        name = next(e.name for e in self.claims if e.object.get("status", {}).get("nodeName") == node)
        return [e for e in self.claims if e.name == name]

    def task_pod(self, index: int) -> list[Event]:
        return self.pod(self.runs[index]["tasks"]["run_pod"]["xcom"]["pod_name"])


@pytest.fixture(scope="module")
def story(node_pools, airflow_env, dev_outputs, cluster_env, kubectl, tmp_path_factory) -> Story:
    namespace = dev_outputs["deployments"][DEPLOYMENT]["namespace"]
    with Watch(cluster_env, "pods", "--all-namespaces") as pods, Watch(cluster_env, "nodes") as nodes, \
            Watch(cluster_env, "nodeclaims.karpenter.sh") as claims:
        runner = Runner(airflow_env, tmp_path_factory.mktemp("disruption-runs"),
                        ["kpo_warmup", "@drift", DAG, "@expiry", DAG])

        def task_running_on_a_task_node(after: float) -> str:
            """The node of the next task pod to run on a task node."""
            event = pods.wait_for(lambda e: e.at >= after and e.object["metadata"]["namespace"] == namespace
                                  and pod_phase(e.object) == "Running", STEP_LIMIT, "the task running")
            node = event.object["spec"]["nodeName"]
            assert is_task_node(nodes.wait_for(lambda e: e.name == node, STEP_LIMIT, f"node {node}").object), node
            return node

        def beside_the_task(name: str, node: str) -> None:
            kubectl("apply", "-f", "-", stdin=json.dumps(unprotected_pod(name)))
            placed = pods.wait_for(lambda e: e.name == name and pod_phase(e.object) == "Running", STEP_LIMIT,
                                   f"{name} running")
            assert placed.object["spec"]["nodeName"] == node

        def node_removed(node: str) -> None:
            nodes.wait_for(lambda e: e.type == "DELETED" and e.name == node, STEP_LIMIT + RUNTIME, f"{node} removed")

        def pool_at_zero() -> None:
            # The expiry story's task must get a new node, made after expireAfter changed.
            nodes.wait_for(lambda _: not [n for n in current(nodes) if is_task_node(n)], STEP_LIMIT,
                           "the task pool at zero")

        # 1. consolidation, then drift
        runner.reach("drift")
        released = time.time()
        runner.go("drift")
        drift_node = task_running_on_a_task_node(released)
        beside_the_task("drift-unprotected", drift_node)
        time.sleep(CONSOLIDATION_WINDOW)
        drift_patched = time.time()
        kubectl("patch", "nodepool", TASK_NODE_POOL_NAME, "--type=merge",
                "-p", json.dumps({"spec": {"template": {"metadata": {"labels": {"remote-kpo/drift-check": "1"}}}}}))
        runner.reach("expiry", STEP_LIMIT + RUNTIME)
        node_removed(drift_node)

        # 2. expiry
        pool_at_zero()
        kubectl("patch", "nodepool", TASK_NODE_POOL_NAME, "--type=merge",
                "-p", json.dumps({"spec": {"template": {"spec": {"expireAfter": f"{EXPIRE_AFTER}s"}}}}))
        released = time.time()
        runner.go("expiry")
        expiry_node = task_running_on_a_task_node(released)
        beside_the_task("expiry-unprotected", expiry_node)
        runs = runner.finish(STEP_LIMIT + RUNTIME)
        node_removed(expiry_node)
        return Story([run for run in runs if run["dag_id"] == DAG], pods.events(), nodes.events(), claims.events(),
                     drift_patched)


def ran_to_its_end_untouched(seen: list[Event]) -> float:
    """When the task's pod Succeeded, after its whole RUNTIME, with no deletion before."""
    running = next(e.at for e in seen if pod_phase(e.object) == "Running")
    done = next(e.at for e in seen if pod_phase(e.object) == "Succeeded")
    assert done - running >= RUNTIME - 2
    assert deletion_started([e for e in seen if e.at <= done]) is None
    return done


def drifted(claim: list[Event]) -> bool:
    return any(c["type"] == "Drifted" and c["status"] == "True"
               for e in claim for c in e.object.get("status", {}).get("conditions", []))


def survived(story: Story, index: int) -> tuple[list[Event], float]:
    """Run `index` succeeded, its pod ran to its end although its node's removal began while it
    ran, and the node went once it was done: (the node's NodeClaim, when its removal began)."""
    assert story.runs[index]["state"] == "success"
    seen = story.task_pod(index)
    node = node_of(seen)
    done = ran_to_its_end_untouched(seen)
    claim = story.claim_of(node)
    started = deletion_started(claim)
    assert started is not None and started < done
    node_events = story.node(node)
    assert node_events[-1].type == "DELETED" and done <= node_events[-1].at
    return claim, started


def test_the_task_succeeds_through_consolidation_and_drift_and_its_node_goes_once_it_is_done(story):
    claim, started = survived(story, 0)
    # Consolidation touched nothing before the template changed; drift took the node then.
    assert started > story.drift_patched
    assert drifted(claim)


def test_the_task_succeeds_on_a_node_that_expires_under_it_and_the_node_goes_once_it_is_done(story):
    claim, started = survived(story, 1)
    created = seconds(claim[0].object["metadata"]["creationTimestamp"])
    assert EXPIRE_AFTER <= started - created <= EXPIRE_AFTER + 15
    assert not drifted(claim)


@pytest.mark.parametrize("index, name", [(0, "drift-unprotected"), (1, "expiry-unprotected")])
def test_an_unprotected_pod_on_the_tasks_node_is_evicted_at_once(story, index, name):
    node = node_of(story.task_pod(index))
    assert node_of(story.pod(name)) == node
    started = deletion_started(story.claim_of(node))
    evicted = deletion_started(story.pod(name))
    assert started is not None and evicted is not None
    # A pod's deletionTimestamp is when the API server removes it (the eviction + its grace).
    assert evicted - started <= POD_GRACE + 10
