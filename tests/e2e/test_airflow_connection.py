"""Airflow itself (apache-airflow + cncf.kubernetes, in their own venv) accepts the exported
connections, read from AIRFLOW_CONN_* variables exactly as an Astro deploy sets them."""

import json
import os
import subprocess

from harness import ROOT, run_program, stack_config, token_for
from test_dev_stack import admin_kubeconfig  # noqa: F401  (fixture)

AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"


def test_airflow_resolves_each_exported_connection_to_its_namespace_and_token(admin_kubeconfig, tmp_path):
    dev = run_program(stack_config("dev"))
    env = {"PATH": os.environ["PATH"], "AIRFLOW_HOME": str(tmp_path)}
    for name, info in dev.outputs["deployments"].items():
        env[info["envVar"]] = dev.outputs["airflowConnections"][name]
    conn_ids = [info["connectionId"] for info in dev.outputs["deployments"].values()]
    out = tmp_path / "probed.json"
    result = subprocess.run([str(AIRFLOW_PYTHON), str(ROOT / "tests/e2e/airflow_probe.py"), str(out), *conn_ids],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    probed = json.loads(out.read_text())
    assert probed == {
        "kpo_analytics": {"conn_type": "kubernetes", "namespace": "kpo-analytics", "in_cluster": False,
                          "host": "https://127.0.0.1:26443",
                          "authorization": f"Bearer {token_for('analytics-token')}"},
        "kpo_ml_training": {"conn_type": "kubernetes", "namespace": "kpo-ml-training", "in_cluster": False,
                            "host": "https://127.0.0.1:26443",
                            "authorization": f"Bearer {token_for('ml-training-token')}"},
    }
