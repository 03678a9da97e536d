"""What the janitor (dags/remote_kpo_janitor.py) may remove in a Deployment's namespace: the
settings the stack hands it, as its `deployments` entry's `janitor` (README, "Orphaned task pods").

Deadlines are in seconds, derived here once, so the DAG only compares ages with them. A task waits
for its pod in two steps, each with its own timer that starts when KPO starts waiting
(cncf.kubernetes 10.25.0 utils/pod_manager.py await_pod_start): up to `schedule_timeout_seconds`
for a node (default: `startup_timeout_seconds`), then up to `startup_timeout_seconds` for the
containers to start. Past both, KPO has failed the task (PodLaunchTimeoutException) and deleted
its pod, unless its worker died first: that pod is the orphan. With queueing, the task shapes'
schedule timeout also covers the wait in line (`queueing.maxWaitSeconds`, components/queueing.py
queued_shape), and so does the deadline.
"""

from components.gpu import GPU_STARTUP_TIMEOUT_SECONDS
from components.queueing import KPO_DEFAULT_STARTUP_SECONDS
from config import Deployment, StackConfig, karpenter_seconds

# Beyond both waits: KPO notices a timeout at its next poll (startup_check_interval_seconds, 5 s;
# a read may take up to its API timeout, 60 s), then fails the task and deletes the pod. A poll
# that keeps failing ends the wait too: its retries ([workers] api_retries, kubernetes_helper_
# functions.py generic_api_retry) run out and the task fails.
PENDING_MARGIN_SECONDS = 300


def pending_deadline(startup_timeout_seconds: int, queue_wait_seconds: int) -> int:
    """How long a pod of a task waiting `startup_timeout_seconds` for each step, the first one
    after up to `queue_wait_seconds` in line, may stay Pending."""
    return queue_wait_seconds + 2 * startup_timeout_seconds + PENDING_MARGIN_SECONDS


def janitor_settings(cfg: StackConfig, deployment: Deployment) -> dict:
    """The Deployment's `janitor` output (public): the rules' thresholds, in seconds."""
    janitor = deployment.janitor
    queue_wait = cfg.queueing.max_wait_seconds if cfg.queueing.enabled else 0
    return {"enabled": janitor.enabled,
            "finishedTtlSeconds": karpenter_seconds(janitor.finished_ttl),
            "maxTaskRuntimeSeconds": karpenter_seconds(janitor.max_task_runtime),
            "pendingDeadlineSeconds": pending_deadline(KPO_DEFAULT_STARTUP_SECONDS, queue_wait),
            "gpuPendingDeadlineSeconds": pending_deadline(GPU_STARTUP_TIMEOUT_SECONDS, queue_wait)}
