"""Which KubernetesPodOperator pods of one namespace the janitor (remote_kpo_janitor.py) removes,
and why none of them belongs to a task that is still alive. Pure: pods in, removals out; only the
standard library, so the tests call it without Airflow and an Astro project copies it beside the
DAG file.

A pod is KPO's when it carries the label `kubernetes_pod_operator=True`, which KPO puts on every
pod it makes, beside `dag_id`, `task_id`, `run_id`, `try_number` and, for a mapped task,
`map_index` (cncf.kubernetes 10.25.0, operators/pod.py `_get_ti_pod_labels`; values made label-safe
by pod_generator.make_safe_label_value: a run id with `:` or `+` is cut and given a hash suffix).
Pods labelled `airflow-worker` are KubernetesExecutor workers, which KPO's own lookup also leaves
out (`_build_find_pod_label_selector`).

The rules, each with why it cannot remove the pod of a live task:

- finished: Succeeded or Failed, ended more than `finishedTtlSeconds` ago. No container of it runs.
  KPO reads a finished pod only right after it ends (its log, its final state), and a deferrable
  task once more when it resumes on a worker; the TTL (at least 5 minutes, 1 hour by default) is
  longer. A retry never reuses a finished pod: KPO deletes or sets it aside and makes a new one
  (operators/pod.py `get_or_create_pod`).
- pending: still Pending (not started) `pendingDeadlineSeconds` after it was made, or
  `gpuPendingDeadlineSeconds` for a pod that asks for a GPU. A task waits for its pod up to its
  schedule timeout and then up to its startup timeout (utils/pod_manager.py `await_pod_start`),
  both the task shape's `startupTimeoutSeconds` (KPO's 120 s for other tasks), then fails and
  deletes the pod. The deadline is both waits plus a margin: the task that made the pod has given
  up on it by then.
- running: Running (or Unknown: its node stopped reporting) more than `maxTaskRuntimeSeconds` after
  it was made. It is the Deployment's declared longest task; Airflow ends a task at its
  `execution_timeout` and KPO then deletes its pod (`on_kill`), so a task within the Deployment's
  limit has a younger pod. The age counts from the pod's creation, the startup wait included.

Beyond the rules, Airflow has the last word: a pod whose task instance Airflow may still run,
resume or retry (any state but success, failed, skipped, upstream_failed and removed) is left
alone whatever its age. That covers a retry, which would reattach to the pod by its labels without
the try number (KPO's reattach_on_restart), and a task instance cleared to run again. A pod whose
task this Airflow does not know (another Airflow's, a deleted run, a dag_id or task_id too long for
a label) is judged by the rules alone, which assume the task shape's startup timeout (README,
"Orphaned task pods").

A pod already being deleted is left alone. The DAG deletes with the pod's uid and resourceVersion
as preconditions, so a pod that changed after it was listed (it started, KPO marked it) is not
deleted on what the janitor saw before.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

# Only KPO's pods, never the executor's workers.
LABEL_SELECTOR = "kubernetes_pod_operator=True,!airflow-worker"
# components/gpu.py GPU_RESOURCE (a unit test holds them equal): a pod asking for it waits for a GPU node.
GPU_RESOURCE = "nvidia.com/gpu"
SETTINGS_KEYS = {"enabled": bool, "finishedTtlSeconds": int, "maxTaskRuntimeSeconds": int,
                 "pendingDeadlineSeconds": int, "gpuPendingDeadlineSeconds": int}


# Task instance states after which Airflow neither runs nor retries the task by itself.
ENDED_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
UNKNOWN = "unknown"


def task_may_come_back(state: Optional[str]) -> bool:
    """Whether Airflow may still run, resume or retry a task instance in `state` (None: no status
    yet, e.g. cleared; UNKNOWN: not this Airflow's)."""
    return state != UNKNOWN and state not in ENDED_STATES


def task_state(states_by_run: dict, labels: dict, safe_label) -> Optional[str]:
    """The state Airflow holds for the task instance a pod's labels name, from Airflow's task
    states of its dag and task ({run_id: {task_id or task_id_<map index>: state}}, the Task SDK's
    get_task_states), matching the run by its label-safe form (`safe_label`, KPO's
    make_safe_label_value); UNKNOWN when none matches."""
    key = labels.get("task_id", "") + (f"_{labels['map_index']}" if "map_index" in labels else "")
    for run_id, tasks in states_by_run.items():
        if safe_label(run_id) == labels.get("run_id") and key in tasks:
            state = tasks[key]
            return None if state is None else str(getattr(state, "value", state))
    return UNKNOWN


class SettingsError(ValueError):
    """The janitor Variable is not the stack's `janitor` output: the message names the key."""


@dataclass(frozen=True)
class Settings:
    """A Deployment's `janitor` output (components/janitor.py), in seconds."""

    enabled: bool
    finished_ttl: int
    max_task_runtime: int
    pending_deadline: int
    gpu_pending_deadline: int

    @classmethod
    def parse(cls, document: object, where: str) -> "Settings":
        if not isinstance(document, dict):
            raise SettingsError(f"{where}: not a JSON object (the stack's deployments.<name>.janitor output)")
        for key, kind in SETTINGS_KEYS.items():
            value = document.get(key)
            # bool is an int in Python: keep true out of the durations.
            if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value <= 0)):
                expected = "true or false" if kind is bool else "a number of seconds above 0"
                raise SettingsError(f"{where}.{key}: {'missing' if value is None else repr(value)}, expected {expected}")
        unknown = sorted(set(document) - set(SETTINGS_KEYS))
        if unknown:
            raise SettingsError(f"{where}.{unknown[0]}: unknown key ({', '.join(SETTINGS_KEYS)})")
        return cls(document["enabled"], document["finishedTtlSeconds"], document["maxTaskRuntimeSeconds"],
                   document["pendingDeadlineSeconds"], document["gpuPendingDeadlineSeconds"])


@dataclass(frozen=True)
class Removal:
    """One pod to remove, by which rule, with what identifies its task."""

    name: str
    namespace: str
    uid: str
    resource_version: str
    rule: str          # finished, pending or running
    age: int           # seconds since it ended (finished) or was made (pending, running)
    limit: int         # the rule's threshold, seconds
    labels: dict

    def line(self) -> str:
        """The log line: the pod and the task it ran for, in KPO's label values."""
        task = ", ".join(f"{key} {self.labels.get(key, '-')}" for key in ("dag_id", "task_id", "run_id", "try_number"))
        if "map_index" in self.labels:
            task += f", map_index {self.labels['map_index']}"
        return (f"remote-kpo janitor: removed pod {self.namespace}/{self.name} ({task}): {self.rule} "
                f"{self.age}s, over {self.limit}s")

    def report(self) -> dict:
        return {"pod": self.name, "namespace": self.namespace, "rule": self.rule, "age": self.age,
                "limit": self.limit, **{key: self.labels.get(key) for key in
                                        ("dag_id", "task_id", "run_id", "try_number", "map_index")}}


def _time(value: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(value) if value else None


def finished_at(pod: dict) -> datetime:
    """When the pod ended: its last container's end, else when it stopped being Ready, else its
    creation (a pod failed before any container ran)."""
    status = pod.get("status") or {}
    ends = [_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for c in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])]
    ends = [end for end in ends if end]
    if ends:
        return max(ends)
    ready = [_time(c.get("lastTransitionTime")) for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return next((t for t in ready if t), created_at(pod))


def created_at(pod: dict) -> datetime:
    return datetime.fromisoformat(pod["metadata"]["creationTimestamp"])


def asks_for_gpu(pod: dict) -> bool:
    return any(GPU_RESOURCE in ((container.get("resources") or {}).get(kind) or {})
               for container in (pod.get("spec") or {}).get("containers") or [] for kind in ("requests", "limits"))


def rule_for(pod: dict, settings: Settings, now: datetime) -> Optional[tuple[str, int, int]]:
    """(rule, age, limit) when a rule removes the pod, else None."""
    if pod["metadata"].get("deletionTimestamp"):
        return None
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        rule, since, limit = "finished", finished_at(pod), settings.finished_ttl
    elif phase == "Pending":
        limit = settings.gpu_pending_deadline if asks_for_gpu(pod) else settings.pending_deadline
        rule, since = "pending", created_at(pod)
    elif phase in ("Running", "Unknown"):
        rule, since, limit = "running", created_at(pod), settings.max_task_runtime
    else:
        return None
    age = int((now - since).total_seconds())
    return (rule, age, limit) if age > limit else None


def select(pods: list[dict], settings: Settings, now: datetime) -> list[Removal]:
    """The KPO pods of `pods` (one namespace's list, as the API returns it) that a rule removes;
    none when the janitor is off."""
    if not settings.enabled:
        return []
    removals = []
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if labels.get("kubernetes_pod_operator") != "True" or "airflow-worker" in labels:
            continue
        found = rule_for(pod, settings, now)
        if found:
            metadata = pod["metadata"]
            removals.append(Removal(metadata["name"], metadata["namespace"], metadata["uid"],
                                    metadata["resourceVersion"], *found, labels))
    return removals
