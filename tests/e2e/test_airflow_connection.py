"""Airflow itself (apache-airflow + cncf.kubernetes, in their own venv) uses the connections the
real `pulumi up` exported, read from AIRFLOW_CONN_* variables exactly as an Astro deploy sets
them, against the real API server."""

import json
import subprocess

from realenv import ROOT

AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"


def test_airflow_connects_through_each_connection_to_its_own_namespace_only(dev_outputs, cluster_env, tmp_path):
    deployments = dev_outputs["deployments"]
    env = {"PATH": cluster_env["PATH"], "AIRFLOW_HOME": str(tmp_path)}
    for name, info in deployments.items():
        env[info["envVar"]] = dev_outputs["airflowConnections"][name]
    # Each connection also tries the other Deployment's namespace.
    analytics, ml = deployments["analytics"], deployments["ml-training"]
    arguments = [f"{analytics['connectionId']}:{ml['namespace']}", f"{ml['connectionId']}:{analytics['namespace']}"]
    out = tmp_path / "probed.json"
    result = subprocess.run([str(AIRFLOW_PYTHON), str(ROOT / "tests/e2e/airflow_probe.py"), str(out), *arguments],
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(out.read_text()) == {
        "kpo_analytics": {"conn_type": "kubernetes", "namespace": "kpo-analytics", "in_cluster": False,
                          "list_pods_own_namespace": 200, "list_pods_other_namespace": 403},
        "kpo_ml_training": {"conn_type": "kubernetes", "namespace": "kpo-ml-training", "in_cluster": False,
                            "list_pods_own_namespace": 200, "list_pods_other_namespace": 403},
    }
