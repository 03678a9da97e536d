"""The janitor's rules (dags/remote_kpo_janitor_rules.py) on pods as the API returns them, and the
settings the stack hands it (components/janitor.py)."""

from datetime import datetime, timedelta, timezone

import pytest

import config
from components import gpu
from components.janitor import janitor_settings
import remote_kpo_janitor_rules as rules  # dags/, on the path as on Airflow's (conftest.py)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
# Small thresholds, as a Deployment's janitor output carries them (seconds).
SETTINGS = rules.Settings(enabled=True, finished_ttl=3600, max_task_runtime=86400, pending_deadline=540,
                          gpu_pending_deadline=2100)
# What KPO labels its pod with (cncf.kubernetes operators/pod.py _get_ti_pod_labels), run id made label-safe.
KPO_LABELS = {"dag_id": "train", "task_id": "fit", "run_id": "manual__2026-12-05T100000-0000-3f2a9c1d0",
              "try_number": "1", "kubernetes_pod_operator": "True", "airflow_kpo_in_cluster": "False",
              "airflow_version": "3.3.2"}


def stamp(ago: timedelta) -> str:
    return (NOW - ago).isoformat().replace("+00:00", "Z")


def pod(phase: str, created: timedelta, ended: timedelta | None = None, gpus: int = 0, labels: dict | None = None,
        name: str = "fit-abc", deleting: bool = False) -> dict:
    containers = [{"name": "base", "resources": {"limits": {gpu.GPU_RESOURCE: str(gpus)}} if gpus else {}}]
    status: dict = {"phase": phase}
    if ended is not None:
        status["containerStatuses"] = [{"name": "base", "state": {"terminated": {
            "exitCode": 0, "startedAt": stamp(created), "finishedAt": stamp(ended)}}}]
    metadata = {"name": name, "namespace": "kpo-ml-training", "uid": f"uid-{name}", "resourceVersion": "42",
                "creationTimestamp": stamp(created), "labels": KPO_LABELS if labels is None else labels}
    if deleting:
        metadata["deletionTimestamp"] = stamp(timedelta(seconds=1))
    return {"metadata": metadata, "spec": {"containers": containers}, "status": status}


def removed(*pods: dict, settings: rules.Settings = SETTINGS) -> list[tuple[str, str]]:
    return [(r.name, r.rule) for r in rules.select(list(pods), settings, NOW)]


# ---- finished -----------------------------------------------------------------------------------

def test_a_pod_that_ended_longer_ago_than_the_ttl_is_removed_by_the_finished_rule():
    assert removed(pod("Succeeded", timedelta(hours=3), ended=timedelta(hours=2))) == [("fit-abc", "finished")]
    assert removed(pod("Failed", timedelta(hours=3), ended=timedelta(minutes=61))) == [("fit-abc", "finished")]


def test_a_long_task_that_ended_recently_keeps_its_pod_for_the_ttl_counted_from_its_end():
    # Made two days ago, ended 10 minutes ago: a deferrable task may still resume and read it.
    assert removed(pod("Succeeded", timedelta(days=2), ended=timedelta(minutes=10))) == []


def test_a_finished_pod_without_container_ends_counts_from_when_it_stopped_being_ready():
    evicted = pod("Failed", timedelta(hours=5))
    evicted["status"]["conditions"] = [{"type": "Ready", "status": "False", "lastTransitionTime": stamp(timedelta(minutes=5))}]
    assert removed(evicted) == []
    evicted["status"]["conditions"][0]["lastTransitionTime"] = stamp(timedelta(hours=2))
    assert removed(evicted) == [("fit-abc", "finished")]


# ---- pending ------------------------------------------------------------------------------------

def test_a_pod_pending_past_both_of_kpos_waits_is_removed_and_a_gpu_pod_gets_the_gpu_shapes_deadline():
    assert removed(pod("Pending", timedelta(seconds=541))) == [("fit-abc", "pending")]
    # The same age is within a GPU task's waits (900 s for a node, 900 s to start).
    assert removed(pod("Pending", timedelta(seconds=541), gpus=1)) == []
    assert removed(pod("Pending", timedelta(seconds=2101), gpus=1)) == [("fit-abc", "pending")]


def test_a_live_task_still_waiting_for_its_pod_to_start_keeps_it():
    # KPO waits up to 120 s to schedule, then 120 s to start: a pod 4 minutes old may still be awaited.
    assert removed(pod("Pending", timedelta(seconds=240))) == []
    # A GPU task on a pool at zero: 25 minutes, still inside 2 x 900 s.
    assert removed(pod("Pending", timedelta(minutes=25), gpus=1)) == []


# ---- running ------------------------------------------------------------------------------------

def test_a_pod_running_longer_than_the_deployments_max_task_runtime_is_removed():
    assert removed(pod("Running", timedelta(hours=25))) == [("fit-abc", "running")]
    # A node that stopped reporting leaves its pods Unknown: the same limit.
    assert removed(pod("Unknown", timedelta(hours=25))) == [("fit-abc", "running")]


def test_a_live_task_running_within_the_max_task_runtime_keeps_its_pod():
    assert removed(pod("Running", timedelta(hours=23, minutes=59))) == []


# ---- what is never touched ----------------------------------------------------------------------

def test_pods_not_made_by_kpo_and_executor_workers_are_never_removed():
    plain = pod("Succeeded", timedelta(days=3), ended=timedelta(days=3), labels={"app": "mine"}, name="mine")
    worker = pod("Running", timedelta(days=3), labels={**KPO_LABELS, "airflow-worker": "123"}, name="worker")
    assert removed(plain, worker) == []


def test_a_pod_already_being_deleted_is_left_to_its_deletion():
    assert removed(pod("Running", timedelta(days=3), deleting=True)) == []


def test_the_off_switch_removes_nothing():
    off = rules.Settings(False, 1, 1, 1, 1)
    assert removed(pod("Succeeded", timedelta(days=3), ended=timedelta(days=3)), settings=off) == []


def test_each_removal_names_the_pods_task_and_the_precondition_it_was_seen_with():
    mapped = pod("Running", timedelta(hours=30), labels={**KPO_LABELS, "map_index": "2", "try_number": "3"})
    [removal] = rules.select([mapped], SETTINGS, NOW)
    assert (removal.uid, removal.resource_version) == ("uid-fit-abc", "42")
    assert removal.line() == ("remote-kpo janitor: removed pod kpo-ml-training/fit-abc (dag_id train, task_id fit, "
                              "run_id manual__2026-12-05T100000-0000-3f2a9c1d0, try_number 3, map_index 2): "
                              "running 108000s, over 86400s")
    assert removal.report()["try_number"] == "3"


# ---- settings -----------------------------------------------------------------------------------

def test_the_gpu_resource_the_rules_look_for_is_the_one_gpu_tasks_ask_for():
    assert rules.GPU_RESOURCE == gpu.GPU_RESOURCE


def test_the_stack_hands_the_janitor_its_config_in_seconds_and_the_rules_read_it_back():
    cfg = config.load({"cloud": "existing", "deployments": [
        {"name": "a", "janitor": {"enabled": False, "finishedTtl": "90m", "maxTaskRuntime": "2h30m"}}]})
    settings = janitor_settings(cfg, cfg.deployments[0])
    assert settings == {"enabled": False, "finishedTtlSeconds": 5400, "maxTaskRuntimeSeconds": 9000,
                        "pendingDeadlineSeconds": 540, "gpuPendingDeadlineSeconds": 2100}
    assert rules.Settings.parse(settings, "Variable v") == rules.Settings(False, 5400, 9000, 540, 2100)


def test_a_deployment_that_sets_nothing_gets_the_janitor_on_with_an_hour_and_a_day():
    cfg = config.load({"cloud": "existing", "deployments": [{"name": "a"}]})
    settings = janitor_settings(cfg, cfg.deployments[0])
    assert (settings["enabled"], settings["finishedTtlSeconds"], settings["maxTaskRuntimeSeconds"]) == (True, 3600, 86400)


def test_with_queueing_a_pending_pod_is_given_its_wait_in_line_before_it_counts_as_orphaned():
    # A gated pod waits up to queueing.maxWaitSeconds (here 30 min) before KPO's two waits begin.
    cfg = config.load({"cloud": "existing", "queueing": {"enabled": True, "maxWaitSeconds": 1800},
                       "deployments": [{"name": "a"}]})
    settings = janitor_settings(cfg, cfg.deployments[0])
    assert (settings["pendingDeadlineSeconds"], settings["gpuPendingDeadlineSeconds"]) == (1800 + 540, 1800 + 2100)


@pytest.mark.parametrize("document, message", [
    ([], "Variable v: not a JSON object (the stack's deployments.<name>.janitor output)"),
    ({"enabled": True, "finishedTtlSeconds": 3600, "maxTaskRuntimeSeconds": 86400, "pendingDeadlineSeconds": 540},
     "Variable v.gpuPendingDeadlineSeconds: missing, expected a number of seconds above 0"),
    ({"enabled": "yes", "finishedTtlSeconds": 1, "maxTaskRuntimeSeconds": 1, "pendingDeadlineSeconds": 1,
      "gpuPendingDeadlineSeconds": 1}, "Variable v.enabled: 'yes', expected true or false"),
    ({"enabled": True, "finishedTtlSeconds": 0, "maxTaskRuntimeSeconds": 1, "pendingDeadlineSeconds": 1,
      "gpuPendingDeadlineSeconds": 1}, "Variable v.finishedTtlSeconds: 0, expected a number of seconds above 0"),
    ({"enabled": True, "finishedTtlSeconds": 1, "maxTaskRuntimeSeconds": True, "pendingDeadlineSeconds": 1,
      "gpuPendingDeadlineSeconds": 1}, "Variable v.maxTaskRuntimeSeconds: True, expected a number of seconds above 0"),
    ({"enabled": True, "finishedTtlSeconds": 1, "maxTaskRuntimeSeconds": 1, "pendingDeadlineSeconds": 1,
      "gpuPendingDeadlineSeconds": 1, "ttl": 5}, "Variable v.ttl: unknown key (enabled, finishedTtlSeconds, "
     "maxTaskRuntimeSeconds, pendingDeadlineSeconds, gpuPendingDeadlineSeconds)"),
])
def test_a_janitor_variable_that_is_not_the_stacks_output_is_refused_naming_the_key(document, message):
    with pytest.raises(rules.SettingsError) as caught:
        rules.Settings.parse(document, "Variable v")
    assert str(caught.value) == message


# ---- Airflow's last word ------------------------------------------------------------------------

def label_safe(run_id: str) -> str:
    """What KPO's make_safe_label_value makes of the run ids below (`:` and `+` cut, a hash added)."""
    return {"manual__2026-12-05T10:00:00+00:00": KPO_LABELS["run_id"]}.get(run_id, run_id)


@pytest.mark.parametrize("state, comes_back", [
    ("running", True), ("deferred", True), ("queued", True), ("up_for_retry", True), ("restarting", True),
    (None, True), ("success", False), ("failed", False), ("upstream_failed", False), ("skipped", False),
    ("removed", False), (rules.UNKNOWN, False)])
def test_a_pod_is_spared_while_airflow_may_still_run_resume_or_retry_its_task(state, comes_back):
    assert rules.task_may_come_back(state) is comes_back


def test_the_pods_task_instance_is_found_by_its_label_safe_run_id_and_its_map_index():
    states = {"manual__2026-12-05T10:00:00+00:00": {"fit": "up_for_retry", "fit_2": "failed"},
              "scheduled__2026-12-04T00:00:00+00:00": {"fit": "success"}}
    assert rules.task_state(states, KPO_LABELS, label_safe) == "up_for_retry"
    assert rules.task_state(states, {**KPO_LABELS, "map_index": "2"}, label_safe) == "failed"
    # A run Airflow does not hold (another Airflow's, or deleted): the rules alone decide.
    assert rules.task_state(states, {**KPO_LABELS, "run_id": "manual__other"}, label_safe) == rules.UNKNOWN
    assert rules.task_state({}, KPO_LABELS, label_safe) == rules.UNKNOWN
