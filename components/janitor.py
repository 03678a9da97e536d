"""What the janitor (dags/remote_kpo_janitor.py) may remove in a Deployment's namespace: the
settings the stack hands it, as its `deployments` entry's `janitor` (README, "Orphaned task pods").

Deadlines are in seconds, derived here once, so the DAG only compares ages with them. A task waits
for its pod in two steps, each with its own timer that starts when KPO starts waiting
(cncf.kubernetes 10.25.0 utils/pod_manager.py await_pod_start): up to `schedule_timeout_seconds`
for a node (default: `startup_timeout_seconds`), then up to `startup_timeout_seconds` for the
containers to start. Past both, KPO has failed the task (PodLaunchTimeoutException) and deleted
its pod, unless its worker died first: that pod is the orphan.
"""

from components.gpu import GPU_STARTUP_TIMEOUT_SECONDS
from config import Deployment, karpenter_seconds

# KubernetesPodOperator's own default startup_timeout_seconds (operators/pod.py), what a task
# without the gpuTask shape waits.
KPO_STARTUP_TIMEOUT_SECONDS = 120
# Beyond both waits: KPO notices a timeout at its next poll (startup_check_interval_seconds, 5 s;
# a read may take up to its API timeout, 60 s), then fails the task and deletes the pod. A poll
# that keeps failing ends the wait too: its retries ([workers] api_retries, kubernetes_helper_
# functions.py generic_api_retry) run out and the task fails.
PENDING_MARGIN_SECONDS = 300


def pending_deadline(startup_timeout_seconds: int) -> int:
    """How long a pod of a task waiting `startup_timeout_seconds` for each step may stay Pending."""
    return 2 * startup_timeout_seconds + PENDING_MARGIN_SECONDS


def janitor_settings(deployment: Deployment) -> dict:
    """The Deployment's `janitor` output (public): the rules' thresholds, in seconds."""
    janitor = deployment.janitor
    return {"enabled": janitor.enabled,
            "finishedTtlSeconds": karpenter_seconds(janitor.finished_ttl),
            "maxTaskRuntimeSeconds": karpenter_seconds(janitor.max_task_runtime),
            "pendingDeadlineSeconds": pending_deadline(KPO_STARTUP_TIMEOUT_SECONDS),
            "gpuPendingDeadlineSeconds": pending_deadline(GPU_STARTUP_TIMEOUT_SECONDS)}
