"""DAGs with KubernetesPodOperator tasks, as an Astro Deployment would ship them.

Each DAG reaches the cluster only through the Airflow connection the stack exported
(`kubernetes_conn_id`, set as an AIRFLOW_CONN_* variable); none names a namespace, so the pod
goes where the connection says. The connection ids come from REMOTE_KPO_E2E_CONN_IDS (the
`deployments` output's `connectionId`s, comma separated).

On the local cluster the pods run on kwok's fake node (scripts/local-cluster): they tolerate its
taint, and the annotation `kwok.remote-kpo.local/exit-code` makes a pod fail. Sync-mode tasks do
not follow logs (get_logs=False) unless they say so: a followed log ends only once the fake
kubelet (kwok-front) sees the container terminated, up to a second after the pod's end. The
deferrable task reads its logs once, without following (logging_interval set).

DAG ids: kpo_<scenario>__<conn_id>, scenarios:
  success      one pod that succeeds (operator defaults otherwise: on_finish_action delete_pod)
  deferrable   the same with deferrable=True (the trigger waits for the pod)
  failure      one pod whose container exits 3
  xcom         do_xcom_push=True: KPO adds its XCom sidecar, execs into it to read the result
  parallel     20 independent pod tasks (bench/kpo.py)
  kept         one pod that succeeds and is kept (on_finish_action keep_pod), so the test can read
               what the API server made of it (the pull Secret its ServiceAccount adds)
  task_sa      the same, running as the remote-kpo-task ServiceAccount (taskIdentity)
and, when REMOTE_KPO_E2E_GPU_TASK holds the stack's `gpuTask` shape (components/gpu.py gpu_task()
as JSON; test_gpu_real.py, bench/gpu.py):
  gpu              the README's GPU task: that node selector, tolerations, annotations, labels (the
                   queue's, with `queueing` on), schedule and startup timeouts, and a limit of one
                   of its GPU resource; its container runs REMOTE_KPO_E2E_GPU_RUNTIME (a Go
                   duration) when set (test_queueing_real.py, bench/queueing.py), else kwok's 1 s
  gpu_untolerated  the same GPU limit without the GPU node selector and toleration (only kwok's,
                   as every task here): nothing can run it, so it fails when its short
                   schedule timeout (GPU_UNTOLERATED_SCHEDULE_TIMEOUT) runs out
  gpu_stuck        the README's GPU task whose pod, once on its GPU node, never starts (kwok's
                   `image-pull: fail`): Pending there until KPO's startup timeout (test_janitor_real.py
                   kills the task's Airflow first, to leave the pod orphaned)
and, when REMOTE_KPO_E2E_RESTRICTED_TASK holds the stack's `restrictedTask` shape
(components/pod_security.py restricted_task() as JSON; test_restricted_xcom_airflow.py):
  xcom_restricted  the xcom scenario as the README's restricted task: that pod and container
                   security context (the XCom sidecar's comes from the connection)
and, when REMOTE_KPO_E2E_TASK_RUNTIME holds a Go duration (test_token_expiry_airflow.py, bench/tokens.py),
tasks whose containers run that long:
  long_sync        sync, following the pod's log (get_logs=True) until the container ends
  long_deferrable  deferrable, its trigger polling every LONG_POLL_INTERVAL seconds, the log read once
  long_xcom        do_xcom_push=True, the sidecar read through exec at the end
and, when REMOTE_KPO_E2E_TASK holds the stack's `task` shape (components/disruption.py task_shape()
as JSON) and REMOTE_KPO_E2E_TASK_RUNTIME a duration (test_disruption_real.py):
  task_long        the README's ordinary task, built from the `task` shape (its annotations, node
                   selector and tolerations, nothing of kwok's), its container running that long
and kpo_warmup, a task without a pod.
"""

import json
import os
from datetime import datetime
from pathlib import Path

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG, task
from kubernetes.client import models as k8s

# The fake node's taint (scripts/local-cluster); harmless on a real cluster.
KWOK_TOLERATION = k8s.V1Toleration(key="kwok.x-k8s.io/node", operator="Exists", effect="NoSchedule")
FAIL = {"kwok.remote-kpo.local/exit-code": "3"}
NEVER_STARTS = {"kwok.remote-kpo.local/image-pull": "fail"}
# kwok keeps the XCom sidecar running this long after the base container ended, time enough for KPO
# to exec into it (read the result, then `kill` it, which a fake sidecar survives) and delete the pod.
SIDECAR = {"kwok.remote-kpo.local/sidecar-runtime": "15s"}
# The long tasks' trigger poll: one API call (and, with an exec plugin, one token) per poll.
LONG_POLL_INTERVAL = 10
# Long enough for the scheduler to try the pod against every node, short enough for a test.
GPU_UNTOLERATED_SCHEDULE_TIMEOUT = 10


def record_failure(context) -> None:
    """Write the task's exception where the runner collects it (REMOTE_KPO_E2E_RESULTS)."""
    folder = os.environ.get("REMOTE_KPO_E2E_RESULTS")
    if not folder:
        return
    ti = context["ti"]
    exception = context.get("exception")
    document = {"task_id": ti.task_id, "type": type(exception).__name__, "message": str(exception),
                "causes": []}
    cause = getattr(exception, "__cause__", None) or getattr(exception, "__context__", None)
    while cause is not None and len(document["causes"]) < 10:
        document["causes"].append(f"{type(cause).__name__}: {cause}"[:2000])
        cause = getattr(cause, "__cause__", None) or getattr(cause, "__context__", None)
    (Path(folder) / f"failure-{ti.dag_id}-{ti.task_id}.json").write_text(json.dumps(document))


def pod_task(task_id: str, conn_id: str, **kwargs) -> KubernetesPodOperator:
    options = {"get_logs": False, "annotations": {}, "tolerations": [KWOK_TOLERATION]} | kwargs
    return KubernetesPodOperator(
        task_id=task_id,
        kubernetes_conn_id=conn_id,
        name=task_id.replace("_", "-"),
        image="busybox:1.36",
        cmds=["sh", "-c", "echo done"],
        on_failure_callback=record_failure,
        **options,
    )


def gpu_limit(shape: dict) -> k8s.V1ResourceRequirements:
    return k8s.V1ResourceRequirements(limits={shape["resourceName"]: "1"})


def gpu_task_options(shape: dict, annotations: dict | None = None) -> dict:
    """The README's GPU task's KubernetesPodOperator arguments, from the `gpuTask` shape (with
    queueing, its queue label and the schedule timeout that covers the wait in line)."""
    return {"node_selector": shape["nodeSelector"],
            "tolerations": [k8s.V1Toleration(**toleration) for toleration in shape["tolerations"]],
            "container_resources": gpu_limit(shape), "annotations": shape["annotations"] | (annotations or {}),
            "labels": shape.get("labels"), "schedule_timeout_seconds": shape.get("scheduleTimeoutSeconds"),
            "startup_timeout_seconds": shape["startupTimeoutSeconds"]}


def gpu_scenarios(conn_id: str, shape: dict, runtime: str | None) -> dict:
    """The README's GPU task, built from the `gpuTask` shape as a DAG author would."""
    runs_for = {"kwok.remote-kpo.local/runtime": runtime} if runtime else {}
    return {
        "gpu": lambda: pod_task("run_pod", conn_id, **gpu_task_options(shape, runs_for)),
        "gpu_untolerated": lambda: pod_task(
            "run_pod", conn_id, container_resources=gpu_limit(shape), annotations=shape["annotations"],
            schedule_timeout_seconds=GPU_UNTOLERATED_SCHEDULE_TIMEOUT),
        "gpu_stuck": lambda: pod_task("run_pod", conn_id, **gpu_task_options(shape, NEVER_STARTS)),
    }


def restricted_scenarios(conn_id: str, shape: dict) -> dict:
    """The README's restricted task, built from the `restrictedTask` shape as a DAG author would."""
    return {"xcom_restricted": lambda: pod_task(
        "run_pod", conn_id, do_xcom_push=True, annotations=SIDECAR, security_context=shape["securityContext"],
        container_security_context=shape["containerSecurityContext"])}


def long_scenarios(conn_id: str, runtime: str) -> dict:
    """Tasks that outlive many short-lived tokens."""
    long = {"kwok.remote-kpo.local/runtime": runtime}
    return {
        "long_sync": lambda: pod_task("run_pod", conn_id, get_logs=True, annotations=long),
        "long_deferrable": lambda: pod_task("run_pod", conn_id, deferrable=True, get_logs=True, logging_interval=3600,
                                            poll_interval=LONG_POLL_INTERVAL, annotations=long),
        "long_xcom": lambda: pod_task("run_pod", conn_id, do_xcom_push=True, annotations=long | SIDECAR),
    }


def task_scenarios(conn_id: str, shape: dict, runtime: str) -> dict:
    """The README's ordinary task, from the `task` shape as a DAG author would pass it."""
    return {"task_long": lambda: pod_task(
        "run_pod", conn_id, node_selector=shape.get("nodeSelector"),
        tolerations=[k8s.V1Toleration(**toleration) for toleration in shape.get("tolerations", [])],
        annotations=shape["annotations"] | {"kwok.remote-kpo.local/runtime": runtime})}


def scenarios(conn_id: str) -> dict:
    return {
        "success": lambda: pod_task("run_pod", conn_id),
        "deferrable": lambda: pod_task("run_pod", conn_id, deferrable=True, get_logs=True,
                                       logging_interval=3600, poll_interval=1),
        "failure": lambda: pod_task("run_pod", conn_id, annotations=FAIL),
        "xcom": lambda: pod_task("run_pod", conn_id, do_xcom_push=True, annotations=SIDECAR),
        "parallel": lambda: [pod_task(f"run_pod_{i:02d}", conn_id) for i in range(20)],
        "kept": lambda: pod_task("run_pod", conn_id, on_finish_action="keep_pod"),
        "task_sa": lambda: pod_task("run_pod", conn_id, service_account_name="remote-kpo-task",
                                    on_finish_action="keep_pod"),
    }


@task
def nothing() -> None:
    """No pod: a first task run sets up Airflow's in-process machinery (bench/kpo.py warm-up)."""


_gpu_shape = json.loads(os.environ.get("REMOTE_KPO_E2E_GPU_TASK", "null"))
_gpu_runtime = os.environ.get("REMOTE_KPO_E2E_GPU_RUNTIME")
_restricted_shape = json.loads(os.environ.get("REMOTE_KPO_E2E_RESTRICTED_TASK", "null"))
_task_shape = json.loads(os.environ.get("REMOTE_KPO_E2E_TASK", "null"))
_runtime = os.environ.get("REMOTE_KPO_E2E_TASK_RUNTIME")
for _conn_id in filter(None, os.environ.get("REMOTE_KPO_E2E_CONN_IDS", "").split(",")):
    _scenarios = scenarios(_conn_id) | (gpu_scenarios(_conn_id, _gpu_shape, _gpu_runtime) if _gpu_shape else {})
    _scenarios |= restricted_scenarios(_conn_id, _restricted_shape) if _restricted_shape else {}
    _scenarios |= long_scenarios(_conn_id, _runtime) if _runtime else {}
    _scenarios |= task_scenarios(_conn_id, _task_shape, _runtime) if _task_shape and _runtime else {}
    for _scenario, _build in _scenarios.items():
        with DAG(dag_id=f"kpo_{_scenario}__{_conn_id}", schedule=None, start_date=datetime(2024, 1, 1),
                 catchup=False, tags=["remote-kpo-e2e"]) as _dag:
            _build()
        globals()[_dag.dag_id] = _dag

with DAG(dag_id="kpo_warmup", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         tags=["remote-kpo-e2e"]) as kpo_warmup:
    nothing()
