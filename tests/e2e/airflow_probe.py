"""Runs inside the Airflow venv: use each connection the way a KPO task does.

Usage: airflow_probe.py OUT_FILE CONN_ID:OTHER_NAMESPACE...; the connections come from
AIRFLOW_CONN_* variables, as an Astro deploy sets them. Writes one JSON object keyed by
connection id to OUT_FILE (Airflow logs to stdout).
"""

import json
import sys

from airflow.models.connection import Connection
from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from kubernetes.client.exceptions import ApiException


def list_pods_status(hook: KubernetesHook, namespace: str) -> int:
    try:
        hook.core_v1_client.list_namespaced_pod(namespace)
        return 200
    except ApiException as exc:
        return exc.status


def probe(conn_id: str, other_namespace: str) -> dict:
    connection = Connection.get_connection_from_secrets(conn_id)
    hook = KubernetesHook(conn_id=conn_id)
    namespace = hook.get_namespace()
    return {
        "conn_type": connection.conn_type,
        "namespace": namespace,
        "in_cluster": connection.extra_dejson["in_cluster"],
        "list_pods_own_namespace": list_pods_status(hook, namespace),
        "list_pods_other_namespace": list_pods_status(hook, other_namespace),
    }


if __name__ == "__main__":
    results = {}
    for argument in sys.argv[2:]:
        conn_id, other_namespace = argument.split(":")
        results[conn_id] = probe(conn_id, other_namespace)
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump(results, out)
