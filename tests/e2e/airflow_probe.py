"""Runs inside the Airflow venv: resolve connections the way a KPO task does.

Usage: probe.py OUT_FILE CONN_ID...; the connections come from AIRFLOW_CONN_* variables, as an
Astro deploy sets them. Writes one JSON object keyed by connection id to OUT_FILE (Airflow logs
to stdout).
"""

import json
import sys

from airflow.models.connection import Connection
from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook


def probe(conn_id: str) -> dict:
    connection = Connection.get_connection_from_secrets(conn_id)
    hook = KubernetesHook(conn_id=conn_id)
    # Builds the kubernetes client from the connection's kube_config; no request is sent.
    configuration = hook.api_client.configuration
    return {
        "conn_type": connection.conn_type,
        "namespace": hook.get_namespace(),
        "in_cluster": connection.extra_dejson["in_cluster"],
        "host": configuration.host,
        "authorization": configuration.api_key.get("BearerToken"),
    }


if __name__ == "__main__":
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump({conn_id: probe(conn_id) for conn_id in sys.argv[2:]}, out)
