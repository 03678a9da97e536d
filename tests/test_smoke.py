"""consumer/smoke.py: which Airflow Variables `make smoke` sets for a stack's cluster."""

import json

from consumer.smoke import smoke_variables

GPU_TASK = {"resourceName": "nvidia.com/gpu", "nodeSelector": {"pool": "gpu"}, "annotations": {},
            "tolerations": [], "startupTimeoutSeconds": 600}


TASK = {"annotations": {"karpenter.sh/do-not-disrupt": "true"}}


def outputs(server: str, gpu: bool, task: bool = False) -> dict:
    kube_config = {"clusters": [{"name": "c", "cluster": {"server": server}}], "current-context": "c",
                   "contexts": [{"name": "c", "context": {"cluster": "c", "namespace": "kpo-analytics"}}]}
    result = {"deployments": {"analytics": {"connectionId": "kpo_analytics", "envVar": "AIRFLOW_CONN_KPO_ANALYTICS"}},
              "airflowConnections": {"analytics": json.dumps(
                  {"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(kube_config)}})}}
    return {**result, **({"gpuTask": GPU_TASK} if gpu else {}), **({"task": TASK} if task else {})}


def local_cluster(tmp_path, monkeypatch, server: str) -> None:
    (tmp_path / "admin.kubeconfig").write_text(f"clusters:\n- name: local\n  cluster:\n    server: {server}\n")
    monkeypatch.setenv("REMOTE_KPO_CLUSTER_DIR", str(tmp_path))


def test_on_the_local_cluster_the_pods_tolerate_kwok_and_the_gpu_task_is_skipped(
        tmp_path, monkeypatch, capsys):
    local_cluster(tmp_path, monkeypatch, "https://127.0.0.1:26443")
    variables = smoke_variables(outputs("https://127.0.0.1:26443", gpu=True), "dev")
    assert set(variables) == {"AIRFLOW_VAR_REMOTE_KPO_SMOKE"}
    assert json.loads(variables["AIRFLOW_VAR_REMOTE_KPO_SMOKE"]) == {
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]}
    assert "no GPU: skipping gpu_pod" in capsys.readouterr().out


def test_on_another_cluster_each_connection_gets_the_gpu_task_variable_astro_env_would_set(tmp_path, monkeypatch):
    local_cluster(tmp_path, monkeypatch, "https://127.0.0.1:26443")
    variables = smoke_variables(outputs("https://gke.example:443", gpu=True), "prod")
    assert variables == {"AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_ANALYTICS": json.dumps(GPU_TASK, sort_keys=True)}
    assert smoke_variables(outputs("https://gke.example:443", gpu=False), "prod") == {}


def test_each_connection_gets_the_task_variable_astro_env_would_set_on_the_local_cluster_too(tmp_path, monkeypatch):
    local_cluster(tmp_path, monkeypatch, "https://127.0.0.1:26443")
    task_variable = {"AIRFLOW_VAR_REMOTE_KPO_TASK__KPO_ANALYTICS": json.dumps(TASK, sort_keys=True)}
    remote = smoke_variables(outputs("https://eks.example:443", gpu=True, task=True), "prod")
    assert remote == {**task_variable,
                      "AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__KPO_ANALYTICS": json.dumps(GPU_TASK, sort_keys=True)}
    local = smoke_variables(outputs("https://127.0.0.1:26443", gpu=True, task=True), "dev")
    assert set(local) == {"AIRFLOW_VAR_REMOTE_KPO_SMOKE", *task_variable}
    assert local["AIRFLOW_VAR_REMOTE_KPO_TASK__KPO_ANALYTICS"] == task_variable["AIRFLOW_VAR_REMOTE_KPO_TASK__KPO_ANALYTICS"]
