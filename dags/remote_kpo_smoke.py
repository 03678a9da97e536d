"""remote_kpo_smoke: one tiny pod through each remote-kpo connection, and `nvidia-smi` where the
Deployment has GPU access. Copy this file into the Astro project's dags/ and trigger it after
scripts/astro-env has set the connections. It needs Airflow 3 (Astro Runtime 3), whose Task SDK
(`airflow.sdk`) it is written against, and apache-airflow-providers-cncf-kubernetes.

Which connections: every AIRFLOW_CONN_KPO_* environment variable (what scripts/astro-env sets),
read when the run starts, plus the connection ids listed in the Airflow Variable
`remote_kpo_connections` (a JSON list, or comma separated) for connections kept elsewhere (a
secrets backend, the UI).

Task shape: the Airflow Variable `remote_kpo_task__<connection id>` holds the stack's `task` output
(scripts/astro-env sets it as AIRFLOW_VAR_REMOTE_KPO_TASK__KPO_<NAME>); the smoke pod passes its
annotations, node selector and tolerations, as every task should (on EKS they send it to the
program's task NodePool). Without it the pod goes wherever the scheduler puts it.

GPU access: the Airflow Variable `remote_kpo_gpu_task__<connection id>` holds the stack's `gpuTask`
output (scripts/astro-env sets it as AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_<NAME>). The GPU pod
selects and tolerates the GPU pool, asks for one GPU and waits `startupTimeoutSeconds` for a node
to scale up from zero.

Optional Airflow Variable `remote_kpo_smoke` (JSON): `image`, `gpu_image`, `tolerations` (added to
every pod, e.g. for a cluster whose nodes are all tainted), `get_logs` (default true).

Every pod it starts meets the restricted Pod Security Standard (a Deployment's `podSecurity:
restricted`): non-root as uid 65534, the runtime's seccomp profile, no privilege escalation, no
capabilities; the images run as that user.

A failure says which connection and what to run next: the task log's "remote-kpo smoke:" line.
When the GPU task fails (its pod never scheduled, never pulled its image, or was OOM-killed), the
log also holds the pod's side in one screen, read through the connection: phase and conditions,
events, the namespace's quota, the GPU pool match, each cause and its next step
(remote_kpo_explain.py, which `scripts/verify --explain` prints too: copy it into dags/ beside
this file).

The task `check_environment` fails when KUBECONFIG is set in the Deployment's environment: a
deferrable KPO task then reads that file and hands it to its trigger beside the connection's
kube_config, and the trigger fails every poll (sync tasks are unaffected).
"""

import json
import logging
import os
from datetime import datetime

from airflow.exceptions import AirflowException, AirflowNotFoundException
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

try:
    from airflow.sdk import DAG, Connection, Variable, task
except ImportError as error:  # Airflow 2 has no Task SDK: say so in the DAG's import error
    raise ImportError("remote_kpo_smoke needs Airflow 3 (Astro Runtime 3): airflow.sdk is missing") from error

try:  # dags/remote_kpo_explain.py of remote-kpo, beside this file (Airflow puts dags/ on sys.path)
    import remote_kpo_explain
except ImportError:
    remote_kpo_explain = None

ENV_PREFIX = "AIRFLOW_CONN_KPO_"
IMAGE = "busybox:1.36"
GPU_IMAGE = "nvidia/cuda:12.4.1-base-ubuntu22.04"
# The restricted Pod Security Standard, which baseline namespaces admit as well
# (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted). Dicts in
# the API's spelling: KubernetesPodOperator puts them in the pod as given.
POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
log = logging.getLogger(__name__)


def connection_ids() -> list[str]:
    """kpo_* connection ids from the environment and the `remote_kpo_connections` Variable."""
    found = {name[len("AIRFLOW_CONN_"):].lower() for name in os.environ if name.startswith(ENV_PREFIX)}
    listed = Variable.get("remote_kpo_connections", default=None)
    if listed:
        try:
            extra = json.loads(listed)
        except json.JSONDecodeError:
            extra = listed.split(",")
        found |= {str(conn_id).strip() for conn_id in extra if str(conn_id).strip()}
    return sorted(found)


def options() -> dict:
    raw = Variable.get("remote_kpo_smoke", default=None)
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError as error:
        raise AirflowException(f"remote-kpo smoke: the Variable remote_kpo_smoke is not JSON ({error.msg})")


def check_connection(conn_id: str) -> None:
    """Fail with the reason when `conn_id` is missing or not a remote-kpo connection."""
    try:
        connection = Connection.get(conn_id)
    except AirflowNotFoundException:
        raise AirflowException(f"remote-kpo smoke: connection {conn_id} (listed in the Variable "
                               "remote_kpo_connections) is not defined")
    if connection.conn_type != "kubernetes":
        problem = f"conn_type {connection.conn_type!r}, not 'kubernetes'"
    elif "kube_config" not in connection.extra_dejson:
        problem = "conn_type 'kubernetes', no kube_config in extra"
    else:
        return
    raise AirflowException(f"remote-kpo smoke: connection {conn_id} is not a remote-kpo connection ({problem}): "
                           "set it from the stack's airflowConnections output (scripts/astro-env)")


def task_shape(conn_id: str) -> dict:
    """The smoke pod's arguments from the connection's `task` Variable; none without one."""
    variable = f"remote_kpo_task__{conn_id}"
    raw = Variable.get(variable, default=None)
    if not raw:
        return {}
    try:
        shape = json.loads(raw)
        return {"annotations": shape["annotations"], "node_selector": shape.get("nodeSelector", {}),
                "tolerations": shape.get("tolerations", [])}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise AirflowException(f"remote-kpo smoke: the Variable {variable} is not the stack's task output "
                               f"({type(error).__name__}: {error})")


@task
def find_connections() -> list[dict]:
    """One set of pod arguments per connection."""
    conn_ids = connection_ids()
    if not conn_ids:
        raise AirflowException("remote-kpo smoke: no remote-kpo connection found: set AIRFLOW_CONN_KPO_<NAME> "
                               "(scripts/astro-env) or list connection ids in the Variable remote_kpo_connections")
    settings = options()
    pods = []
    for conn_id in conn_ids:
        check_connection(conn_id)
        shape = task_shape(conn_id)
        pods.append({"kubernetes_conn_id": conn_id, "image": settings.get("image", IMAGE), **shape,
                     "tolerations": shape.get("tolerations", []) + settings.get("tolerations", []),
                     "get_logs": settings.get("get_logs", True)})
    return pods


@task
def find_gpu_connections(pods: list[dict]) -> list[dict]:
    """The GPU pod's arguments for each connection whose Deployment has a `gpuTask`."""
    settings = options()
    gpu_pods = []
    for pod in pods:
        raw = Variable.get(f"remote_kpo_gpu_task__{pod['kubernetes_conn_id']}", default=None)
        if not raw:
            continue
        try:
            gpu = json.loads(raw)
            shape = {"node_selector": gpu["nodeSelector"], "annotations": gpu["annotations"],
                     "tolerations": gpu["tolerations"] + settings.get("tolerations", []),
                     "container_resources": {"limits": {gpu["resourceName"]: "1"}},
                     # A pool at zero leaves the pod unscheduled until a node boots: both waits.
                     "schedule_timeout_seconds": gpu["startupTimeoutSeconds"],
                     "startup_timeout_seconds": gpu["startupTimeoutSeconds"]}
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise AirflowException(f"remote-kpo smoke: the Variable remote_kpo_gpu_task__{pod['kubernetes_conn_id']} "
                                   f"is not the stack's gpuTask output ({type(error).__name__}: {error})")
        gpu_pods.append({**pod, "image": settings.get("gpu_image", GPU_IMAGE), **shape})
    return gpu_pods


@task
def check_environment() -> None:
    """A set KUBECONFIG breaks deferrable tasks: KubernetesPodOperator reads it
    (convert_config_file_to_dict, cncf.kubernetes 10.25.0) and its trigger refuses it beside the
    connection's kube_config."""
    path = os.environ.get("KUBECONFIG")
    if path:
        raise AirflowException(
            f"remote-kpo smoke: KUBECONFIG is set in this Deployment's environment ({path}): every deferrable "
            "KubernetesPodOperator task fails each trigger poll with \"Options kube_config_path, kube_config, "
            "in_cluster, and config_dict are mutually exclusive\" (sync tasks are unaffected). Remove KUBECONFIG "
            "from the Deployment's environment variables.")


def reason(exception) -> str:
    """The first line of the exception and of each cause: KPO wraps a launch timeout in
    "Pod X returned a failure." followed by the whole pod, which buries the reason."""
    lines: list[str] = []
    while exception is not None and len(lines) < 5:
        text = str(exception).strip()
        first = text.splitlines()[0] if text else type(exception).__name__
        if first not in lines:
            lines.append(first)
        exception = exception.__cause__ or exception.__context__
    return " Caused by: ".join(line.rstrip(".") + "." for line in lines)


# KPO's words when no node took the pod in time (cncf.kubernetes utils/pod_manager.py,
# PodLaunchTimeoutException): the connection worked, since the pod was created.
NOT_SCHEDULED = "Pod took too long to be scheduled"


def next_step(task_id: str, conn_id: str, why: str) -> str:
    """Where the pod could run when no node took it, else the connection."""
    if NOT_SCHEDULED not in why:
        return (f"Check the connection from the Deployment's side: scripts/verify --connection-env "
                f"AIRFLOW_CONN_{conn_id.upper()} (remote-kpo README).")
    if task_id == "gpu_pod":
        return ("A GPU pod waits for a GPU node: see the pod's events (FailedScheduling, TriggeredScaleUp), the "
                "pool's maxNodes, the cloud's GPU quota and the namespace's GPU quota.")
    return ("No node took the pod: see its events (FailedScheduling): a taint it does not tolerate (add "
            "`tolerations` to the Variable remote_kpo_smoke) or no free CPU or memory on the nodes.")


def explain_failure(context) -> None:
    """The line a person reads first: which connection, and what to run next; for the GPU task, the
    pod's side too."""
    conn_id = context["task"].kubernetes_conn_id
    task_id = context["ti"].task_id
    why = reason(context.get("exception"))
    log.error("remote-kpo smoke: %s through connection %s failed: %s %s", task_id, conn_id, why,
              next_step(task_id, conn_id, why))
    if task_id == "gpu_pod":
        explain_gpu_pod(context["task"])


def explain_gpu_pod(operator) -> None:
    """Log why the GPU pod waited or ended, then delete it. KPO keeps it for this
    (on_finish_action delete_succeeded_pod: a pod that did not succeed is left to the failure
    callback, which runs after KPO's cleanup), so the summary reads the pod as it was."""
    pod = operator.pod  # set by KPO once it made the pod; None when the API server refused it
    if pod is None:
        return
    namespace, name = pod.metadata.namespace, pod.metadata.name
    try:
        if remote_kpo_explain is None:
            log.error("remote-kpo smoke: copy remote_kpo_explain.py (remote-kpo's dags/) beside this DAG for the "
                      "summary of why %s/%s waited", namespace, name)
        else:
            gpu_task = json.loads(Variable.get(f"remote_kpo_gpu_task__{operator.kubernetes_conn_id}"))
            facts = remote_kpo_explain.read(operator.client.api_client, namespace, name, gpu_task)
            log.error("remote-kpo smoke: why %s/%s waited or ended (scripts/verify --explain %s/%s prints the "
                      "same):\n%s", namespace, name, namespace, name, remote_kpo_explain.render(facts))
    except Exception as error:  # the summary is a help: never let it hide the task's own failure
        log.error("remote-kpo smoke: no summary of %s/%s: %s: %s", namespace, name, type(error).__name__, error)
    finally:
        try:
            operator.client.delete_namespaced_pod(name, namespace)
        except Exception as error:
            log.error("remote-kpo smoke: could not delete the GPU pod %s/%s: %s", namespace, name, error)


with DAG(dag_id="remote_kpo_smoke", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         tags=["remote-kpo"], doc_md=__doc__) as dag:
    check_environment()
    pods = find_connections()
    KubernetesPodOperator.partial(
        task_id="smoke_pod", name="remote-kpo-smoke", cmds=["sh", "-c", "echo remote-kpo smoke ok"],
        security_context=POD_SECURITY_CONTEXT, container_security_context=CONTAINER_SECURITY_CONTEXT,
        on_failure_callback=explain_failure, map_index_template="{{ task.kubernetes_conn_id }}",
    ).expand_kwargs(pods)
    KubernetesPodOperator.partial(
        task_id="gpu_pod", name="remote-kpo-smoke-gpu", cmds=["nvidia-smi"],
        security_context=POD_SECURITY_CONTEXT, container_security_context=CONTAINER_SECURITY_CONTEXT,
        # A failed pod is kept for explain_failure, which deletes it once it has said why it failed.
        on_finish_action="delete_succeeded_pod",
        on_failure_callback=explain_failure, map_index_template="{{ task.kubernetes_conn_id }}",
    ).expand_kwargs(find_gpu_connections(pods))
