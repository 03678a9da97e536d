"""Nodes taken away under a running task: what the `task` shape and the GPU NodePool's disruption
settings do, for real, on upstream Karpenter with its kwok provider (as test_gpu_real.py runs it).

- The real engine applies the EKS stack's `GpuNodePool` (gpu_program/) for the `gpuPool` of
  Pulumi.eks.yaml with `terminationGracePeriod` shortened to GRACE through the config key, and
  consolidateAfter to CONSOLIDATE_AFTER (the cloud values are 24h and a minute).
- Task pods carry the `task` output's annotations (components/disruption.py) or, as the negative
  case, none; kwok runs each for its `kwok.remote-kpo.local/runtime`. They select and tolerate the
  pool as `gpuTask` says.

One story, told in order by the `story` fixture and checked by the tests below:
1. consolidation: a protected GPU task runs RUNTIME on its own node; once it is done the node goes.
2. drift: a protected and an unprotected task that never end share a node; the NodePool's
   template changes (a label), so Karpenter replaces the node.
3. expiry: the NodePool's expireAfter is shortened to EXPIRE_AFTER; the same two tasks on a new
   node that then expires.
"""

import json
from dataclasses import dataclass
from datetime import datetime

import pytest

from components.disruption import task_shape
from components.gpu import GPU_RESOURCE, NODE_POOL_NAME, gpu_task
from gpu_local import eks_gpu_pool, is_pool_node, pod_phase, start_karpenter, up_gpu_program
from watch import Event, Watch

CONSOLIDATE_AFTER = "5s"
GRACE = 20                # seconds: the NodePool's terminationGracePeriod here
POD_GRACE = 2             # the task pods' terminationGracePeriodSeconds
RUNTIME = 25              # seconds the consolidation story's task runs: past consolidateAfter and
                          # Karpenter's 10 s disruption polls
EXPIRE_AFTER = 30         # seconds: the expiry story's node lifetime
NAMESPACE = "default"
# Limits that only turn a hang into a failure.
STEP_LIMIT = 120


@pytest.fixture(scope="module")
def gpu_program(cluster_env, tmp_path_factory):
    start_karpenter(cluster_env)
    cli = up_gpu_program(cluster_env, tmp_path_factory.mktemp("disruption"), CONSOLIDATE_AFTER,
                         {"terminationGracePeriod": f"{GRACE}s"})
    yield cli
    cli.run("destroy", "--yes", "--stack", "gpu")


def task_pod(name: str, protected: bool, runtime: str, gpu: bool = False) -> dict:
    """A bare pod, as KPO makes one, on the GPU pool; with the `task` shape when protected."""
    shape = gpu_task("eks", eks_gpu_pool())
    annotations = {"kwok.remote-kpo.local/runtime": runtime, **(task_shape()["annotations"] if protected else {})}
    resources = {"limits": {GPU_RESOURCE: "1"}} if gpu else {"requests": {"cpu": "100m"}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": POD_GRACE,
                     "nodeSelector": shape["nodeSelector"], "tolerations": shape["tolerations"],
                     "containers": [{"name": "base", "image": "busybox:1.36", "resources": resources}]}}


def seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def deletion_started(events: list[Event]) -> float | None:
    """The API server's deletionTimestamp of the object, if it was ever deleted."""
    stamps = [e.object["metadata"]["deletionTimestamp"] for e in events if e.object["metadata"].get("deletionTimestamp")]
    return seconds(stamps[0]) if stamps else None


def node_of(events: list[Event]) -> str:
    return next(e.object["spec"]["nodeName"] for e in events if e.object["spec"].get("nodeName"))


def current(watch: Watch) -> list[dict]:
    """The watched objects that exist now."""
    latest: dict[str, Event] = {}
    for event in watch.events():
        latest[event.name] = event
    return [e.object for e in latest.values() if e.type != "DELETED"]


@dataclass
class Story:
    pods: list[Event]
    nodes: list[Event]
    claims: list[Event]

    def pod(self, name: str) -> list[Event]:
        return [e for e in self.pods if e.name == name]

    def node(self, name: str) -> list[Event]:
        return [e for e in self.nodes if e.name == name]

    def claim_of(self, node: str) -> list[Event]:
        name = next(e.name for e in self.claims if e.object.get("status", {}).get("nodeName") == node)
        return [e for e in self.claims if e.name == name]


@pytest.fixture(scope="module")
def story(gpu_program, cluster_env, kubectl) -> Story:
    with Watch(cluster_env, "pods", "-n", NAMESPACE) as pods, Watch(cluster_env, "nodes") as nodes, \
            Watch(cluster_env, "nodeclaims.karpenter.sh") as claims:

        def apply(*manifests: dict) -> None:
            kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)}))

        def gone(name: str, what: str) -> None:
            pods.wait_for(lambda e: e.type == "DELETED" and e.name == name, STEP_LIMIT, what)

        def pool_at_zero() -> None:
            # A new story's tasks must get a new node, not an emptied one of the last story.
            nodes.wait_for(lambda _: not [n for n in current(nodes) if is_pool_node(n)], STEP_LIMIT, "the pool at zero")

        def node_removed(pod: str) -> None:
            node = node_of(pods.events(pod))
            nodes.wait_for(lambda e: e.type == "DELETED" and e.name == node, STEP_LIMIT + GRACE, f"{node} removed")

        # 1. consolidation
        apply(task_pod("long-task", True, f"{RUNTIME}s", gpu=True))
        pods.wait_for(lambda e: e.name == "long-task" and pod_phase(e.object) == "Succeeded",
                      STEP_LIMIT + RUNTIME, "the long task done")
        node_removed("long-task")
        kubectl("delete", "pod", "long-task", "-n", NAMESPACE)

        # 2. drift
        pool_at_zero()
        apply(task_pod("drift-protected", True, "1h"), task_pod("drift-unprotected", False, "1h"))
        for name in ("drift-protected", "drift-unprotected"):
            kubectl("wait", f"pod/{name}", "-n", NAMESPACE, "--for=jsonpath={.status.phase}=Running",
                    f"--timeout={STEP_LIMIT}s")
        kubectl("patch", "nodepool", NODE_POOL_NAME, "--type=merge",
                "-p", json.dumps({"spec": {"template": {"metadata": {"labels": {"remote-kpo/drift-check": "1"}}}}}))
        gone("drift-unprotected", "the unprotected task on the drifted node evicted")
        gone("drift-protected", "the protected task on the drifted node deleted")
        node_removed("drift-protected")

        # 3. expiry
        pool_at_zero()
        kubectl("patch", "nodepool", NODE_POOL_NAME, "--type=merge",
                "-p", json.dumps({"spec": {"template": {"spec": {"expireAfter": f"{EXPIRE_AFTER}s"}}}}))
        apply(task_pod("expiry-protected", True, "1h"), task_pod("expiry-unprotected", False, "1h"))
        gone("expiry-unprotected", "the unprotected task on the expired node evicted")
        gone("expiry-protected", "the protected task on the expired node deleted")
        node_removed("expiry-protected")
        return Story(pods.events(), nodes.events(), claims.events())


def test_a_protected_task_keeps_its_node_past_consolidation_and_the_node_goes_once_it_is_done(story):
    seen = story.pod("long-task")
    node = node_of(seen)
    node_events = story.node(node)
    assert is_pool_node(node_events[0].object)
    running = next(e.at for e in seen if pod_phase(e.object) == "Running")
    done = next(e.at for e in seen if pod_phase(e.object) == "Succeeded")
    # It ran its whole time (several consolidateAfter periods and disruption polls) untouched...
    assert done - running >= RUNTIME - 1
    assert deletion_started([e for e in seen if e.at <= done]) is None
    claim = story.claim_of(node)
    assert deletion_started([e for e in claim if e.at <= done]) is None
    # ...and its node went once it was done: an empty node, after consolidateAfter.
    assert node_events[-1].type == "DELETED"
    assert done <= node_events[-1].at <= done + 60


def both_on_one_node(story: Story, protected: str, unprotected: str) -> str:
    node = node_of(story.pod(protected))
    assert node_of(story.pod(unprotected)) == node
    return node


def drifted(claim: list[Event]) -> bool:
    return any(c["type"] == "Drifted" and c["status"] == "True"
               for e in claim for c in e.object.get("status", {}).get("conditions", []))


def evicted_at_once_and_after_the_grace_period(story: Story, prefix: str, node: str, claim: list[Event]) -> None:
    started = deletion_started(claim)
    unprotected = deletion_started(story.pod(f"{prefix}-unprotected"))
    protected = deletion_started(story.pod(f"{prefix}-protected"))
    assert started is not None and unprotected is not None and protected is not None
    # A pod's deletionTimestamp is when the API server removes it (the delete call + its grace).
    assert unprotected - started <= POD_GRACE + 10
    # Karpenter deletes a blocking pod so that its own grace ends with the node's.
    assert GRACE - 1 <= protected - started <= GRACE + 15
    assert story.node(node)[-1].type == "DELETED"


def test_drift_evicts_an_unprotected_task_at_once_and_a_protected_one_after_the_grace_period(story):
    node = both_on_one_node(story, "drift-protected", "drift-unprotected")
    claim = story.claim_of(node)
    assert drifted(claim)
    evicted_at_once_and_after_the_grace_period(story, "drift", node, claim)


def test_expiry_evicts_an_unprotected_task_at_once_and_a_protected_one_after_the_grace_period(story):
    node = both_on_one_node(story, "expiry-protected", "expiry-unprotected")
    claim = story.claim_of(node)
    created = seconds(claim[0].object["metadata"]["creationTimestamp"])
    started = deletion_started(claim)
    assert started is not None and EXPIRE_AFTER <= started - created <= EXPIRE_AFTER + 15
    assert not drifted(claim)
    evicted_at_once_and_after_the_grace_period(story, "expiry", node, claim)
