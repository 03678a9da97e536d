"""remote_kpo_janitor: remove the KubernetesPodOperator pods no task waits for any more, in each
remote-kpo Deployment namespace this Airflow Deployment reaches. Copy this file and
remote_kpo_janitor_rules.py (the rules, and why none removes a live task's pod) into the Astro
project's dags/; it runs every 10 minutes. It needs Airflow 3 (Astro Runtime 3) and
apache-airflow-providers-cncf-kubernetes.

Which namespaces: one per Airflow Variable `remote_kpo_janitor__<connection id>`, which holds the
stack's `janitor` output of that Deployment (scripts/astro-env sets it as
AIRFLOW_VAR_REMOTE_KPO_JANITOR__KPO_<NAME>, read when the run starts). The connection names the
namespace and acts with the Deployment's own RBAC: `list` and `delete` on pods, which KPO already
needs there (components/permissions.py); it reaches no other namespace. A connection without that
Variable, or with `"enabled": false` in it (the stack's `janitor.enabled`), is left alone.

A pod whose task instance Airflow may still run, resume or retry (running, deferred, queued,
up_for_retry, cleared...) is left alone, whatever the rules say: a retry reattaches to its pod.

Every removal is one log line, "remote-kpo janitor: removed pod <namespace>/<pod> (dag_id ...,
task_id ..., run_id ..., try_number ...): <rule> <age>s, over <limit>s", and the task's XCom lists
them.
"""

import json
import logging
import os
from datetime import datetime, timedelta, timezone

from airflow.exceptions import AirflowException
from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value
from kubernetes.client import V1DeleteOptions, V1Preconditions
from kubernetes.client.exceptions import ApiException

from remote_kpo_janitor_rules import (LABEL_SELECTOR, Settings, SettingsError, select, task_may_come_back,
                                      task_state)

try:
    from airflow.sdk import DAG, Variable, get_current_context, task
except ImportError as error:  # Airflow 2 has no Task SDK: say so in the DAG's import error
    raise ImportError("remote_kpo_janitor needs Airflow 3 (Astro Runtime 3): airflow.sdk is missing") from error

VARIABLE_PREFIX = "remote_kpo_janitor__"
ENV_PREFIX = "AIRFLOW_VAR_" + VARIABLE_PREFIX.upper()
log = logging.getLogger(__name__)


@task
def find_namespaces() -> list[str]:
    """The connection ids that have janitor settings."""
    return sorted(name[len(ENV_PREFIX):].lower() for name in os.environ if name.startswith(ENV_PREFIX))


@task(map_index_template="{{ conn_id }}")
def sweep(conn_id: str) -> list[dict]:
    """Remove what the rules select in the namespace of `conn_id`; the removals, as done."""
    variable = VARIABLE_PREFIX + conn_id
    try:
        settings = Settings.parse(json.loads(Variable.get(variable)), f"Variable {variable}")
    except (json.JSONDecodeError, SettingsError) as error:
        raise AirflowException(f"remote-kpo janitor: {error}: set it from the stack's deployments output "
                               "(scripts/astro-env)")
    if not settings.enabled:
        log.info("remote-kpo janitor: %s: off (janitor.enabled is false)", conn_id)
        return []
    hook = KubernetesHook(conn_id=conn_id)
    namespace = hook.get_namespace()
    if not namespace:
        raise AirflowException(f"remote-kpo janitor: connection {conn_id} names no namespace: set it from the "
                               "stack's airflowConnections output (scripts/astro-env)")
    client = hook.core_v1_client
    # The API's own JSON, the shape the rules read (camelCase, RFC 3339 times).
    listed = client.list_namespaced_pod(namespace, label_selector=LABEL_SELECTOR, _preload_content=False)
    pods = json.loads(listed.data)["items"]
    ti = get_current_context()["ti"]
    done = []
    for removal in select(pods, settings, datetime.now(timezone.utc)):
        # Airflow's own view of the pod's task instance (Task SDK, execution API /task-instances/states).
        labels = removal.labels
        states = ti.get_task_states(dag_id=labels.get("dag_id", ""), task_ids=[labels.get("task_id", "")],
                                    map_index=int(labels.get("map_index", -1)))
        state = task_state(states, labels, make_safe_label_value)
        if task_may_come_back(state):
            log.info("remote-kpo janitor: left pod %s/%s: its task instance is %s in Airflow, which may still run, "
                     "resume or retry it", namespace, removal.name, state or "without a state")
            continue
        # Only the pod as it was listed: one that started, was marked by KPO or was made anew under
        # the same name since then is refused (409) and looked at again next run.
        preconditions = V1Preconditions(uid=removal.uid, resource_version=removal.resource_version)
        try:
            client.delete_namespaced_pod(removal.name, namespace, body=V1DeleteOptions(preconditions=preconditions))
        except ApiException as error:
            if error.status not in (404, 409):
                raise
            log.info("remote-kpo janitor: left pod %s/%s: it changed or went since it was listed (%s)",
                     namespace, removal.name, error.status)
            continue
        log.info(removal.line())
        done.append(removal.report())
    log.info("remote-kpo janitor: %s: %d of %d KPO pods removed", namespace, len(done), len(pods))
    return done


with DAG(dag_id="remote_kpo_janitor", schedule=timedelta(minutes=10), start_date=datetime(2024, 1, 1),
         catchup=False, max_active_runs=1, tags=["remote-kpo"], doc_md=__doc__) as dag:
    sweep.expand(conn_id=find_namespaces())
