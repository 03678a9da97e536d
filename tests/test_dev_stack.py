"""The dev stack (cloud: existing) under Pulumi mocks: resources, RBAC and outputs."""

import json

import pulumi
import pytest
from pulumi.runtime import rpc

from harness import ADMIN_KUBECONFIG, DEFAULT_JANITOR, run_program, stack_config, token_for

ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"


@pytest.fixture
def dev(admin_kubeconfig):
    return run_program(stack_config("dev"))


def test_each_deployment_gets_its_namespace(dev):
    names = sorted(r.inputs["metadata"]["name"] for r in dev.of_type("kubernetes:core/v1:Namespace"))
    assert names == ["kpo-analytics", "kpo-ml-training"]


def test_each_namespace_enforces_its_pod_security_level_and_warns_and_audits_at_restricted(admin_kubeconfig):
    raw = stack_config("dev") | {"deployments": [{"name": "analytics"}, {"name": "strict", "podSecurity": "restricted"}]}
    labels = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]
              for r in run_program(raw).of_type("kubernetes:core/v1:Namespace")}
    psa = {name: {key.rsplit("/", 1)[1]: value for key, value in label.items()
                  if key.startswith("pod-security.kubernetes.io/")} for name, label in labels.items()}
    assert psa == {"kpo-analytics": {"enforce": "baseline", "warn": "restricted", "audit": "restricted"},
                   "kpo-strict": {"enforce": "restricted", "warn": "restricted", "audit": "restricted"}}


def test_roles_follow_the_permission_table_with_pods_exec_only_for_xcom(dev):
    rules = {r.name: r.inputs["rules"] for r in dev.of_type(ROLE)}
    assert [rule["resources"] for rule in rules["analytics-role"]] == [
        ["pods"], ["pods/log"], ["events"], ["resourcequotas"], ["pods/exec"]]
    assert [rule["resources"] for rule in rules["ml-training-role"]] == [["pods"], ["pods/log"], ["events"], ["resourcequotas"]]


def test_rolebinding_binds_the_namespace_role_to_the_deployments_service_account(dev):
    binding = dev.named("analytics-rolebinding").inputs
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "remote-kpo"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "remote-kpo", "namespace": "kpo-analytics"}]
    assert binding["metadata"]["namespace"] == "kpo-analytics"


def test_no_cluster_scoped_rbac_is_created(dev):
    assert not [r for r in dev.resources if "ClusterRole" in r.typ]


def test_token_secret_is_a_service_account_token_for_that_account(dev):
    secret = dev.named("analytics-token").inputs
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "remote-kpo"
    assert dev.named("analytics-serviceaccount").inputs["automountServiceAccountToken"] is False


def test_every_namespace_gets_a_quota_and_pod_defaults_with_maximums_given_or_not(dev):
    quotas = {q.inputs["metadata"]["namespace"]: q.inputs["spec"]["hard"]
              for q in dev.of_type("kubernetes:core/v1:ResourceQuota") if q.inputs["metadata"]["name"] == "remote-kpo-quota"}
    # ml-training's own quota, with 3 finished pods kept per running one; analytics sets none and
    # gets the defaults, with no GPU.
    assert quotas == {
        "kpo-ml-training": {"requests.cpu": "8", "requests.memory": "16Gi", "requests.nvidia.com/gpu": "2",
                            "pods": "20", "count/pods": "80"},
        "kpo-analytics": {"requests.cpu": "8", "requests.memory": "32Gi", "requests.nvidia.com/gpu": "0",
                          "pods": "50", "count/pods": "200"},
    }
    limits = {r.inputs["metadata"]["namespace"]: r.inputs["spec"]["limits"]
              for r in dev.of_type("kubernetes:core/v1:LimitRange")}
    assert limits == {
        "kpo-ml-training": [{"type": "Container", "defaultRequest": {"cpu": "250m", "memory": "256Mi"},
                             "default": {"cpu": "1", "memory": "1Gi"}, "max": {"cpu": "4", "memory": "16Gi"}}],
        "kpo-analytics": [{"type": "Container", "defaultRequest": {"cpu": "100m", "memory": "256Mi"},
                           "default": {"cpu": "1", "memory": "1Gi"}, "max": {"cpu": "4", "memory": "16Gi"}}],
    }


def test_provider_uses_the_admin_kubeconfig_and_a_cluster_identifier(dev, admin_kubeconfig):
    (provider,) = dev.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == str(admin_kubeconfig)
    assert provider.inputs["clusterIdentifier"] == "remote-kpo-local"


def test_provider_client_rate_limit_defaults_to_large_stack_values_and_follows_kube_client(dev, admin_kubeconfig):
    (provider,) = dev.of_type("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeClientSettings"]) == {"qps": 200, "burst": 400}
    run = run_program(stack_config("dev") | {"kubeClient": {"qps": 25.5, "burst": 60}})
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeClientSettings"]) == {"qps": 25.5, "burst": 60}


def test_every_kubernetes_object_goes_through_the_existing_cluster_provider(dev):
    objects = [r for r in dev.resources if r.typ.startswith("kubernetes:")]
    # 2 x (Namespace, Role, RoleBinding, ServiceAccount, Secret, LimitRange, 4 ResourceQuotas,
    # ValidatingAdmissionPolicy and its binding)
    assert len(objects) == 24
    assert {r.provider.rsplit("$", 1)[-1] for r in objects} == {
        "pulumi:providers:kubernetes::existing-cluster::existing-cluster-id"}


def test_outputs_describe_the_cluster_and_each_deployment(dev):
    assert dev.outputs["cloud"] == "existing"
    assert dev.outputs["clusterName"] == "remote-kpo-local"
    assert dev.outputs["clusterEndpoint"] == "https://127.0.0.1:26443"
    assert dev.outputs["clusterCaCertificate"] == "Q0EtREFUQQ=="
    assert dev.outputs["deployments"] == {
        "analytics": {"namespace": "kpo-analytics", "connectionId": "kpo_analytics",
                      "envVar": "AIRFLOW_CONN_KPO_ANALYTICS", "janitor": DEFAULT_JANITOR},
        "ml-training": {"namespace": "kpo-ml-training", "connectionId": "kpo_ml_training",
                        "envVar": "AIRFLOW_CONN_KPO_ML_TRAINING", "janitor": DEFAULT_JANITOR},
    }


def test_an_existing_cluster_with_gpu_nodes_exports_a_gpu_task_that_names_them_and_makes_no_nodes(dev, admin_kubeconfig):
    gpu = run_program(stack_config("dev") | {"gpuPool": {"enabled": True}})
    # The README's label and taint, which the cluster's operators put on its GPU nodes.
    assert gpu.outputs["gpuTask"] == {
        "nodeSelector": {"remote-kpo/gpu": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "resourceName": "nvidia.com/gpu",
        "annotations": {"karpenter.sh/do-not-disrupt": "true",
                        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
        "startupTimeoutSeconds": 900,
    }
    assert gpu.secret["gpuTask"] is False
    assert sorted(r.typ for r in gpu.resources) == sorted(r.typ for r in dev.resources)
    assert "gpuTask" not in dev.outputs


def test_the_existing_gpu_pool_error_names_the_label_and_taint_gpu_tasks_select(admin_kubeconfig):
    from components.gpu import GPU_LABELS, GPU_TAINT
    from config import ConfigError, load

    with pytest.raises(ConfigError) as refused:
        load(stack_config("dev") | {"gpuPool": {"enabled": True, "spot": True}})
    ((label, value),) = GPU_LABELS.items()
    assert f"label {label}={value} and the taint {GPU_TAINT['key']}={GPU_TAINT['value']}:{GPU_TAINT['effect']}" \
        in str(refused.value)


def test_credentials_are_secret_and_descriptions_are_not(dev):
    assert dev.secret == {
        "cloud": False, "clusterName": False, "clusterEndpoint": False, "clusterCaCertificate": False,
        "deployments": False, "dockerfile": False, "task": False,
        "kubeconfigs": True, "airflowConnections": True, "kubeconfig": True,
    }


def test_exported_kubeconfig_uses_the_deployments_own_token_and_namespace(dev):
    doc = json.loads(dev.outputs["kubeconfigs"]["ml-training"])
    assert doc["users"][0]["user"] == {"token": token_for("ml-training-token")}
    assert doc["contexts"][0]["context"]["namespace"] == "kpo-ml-training"
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:26443"
    # The admin credential never leaks into a Deployment's kubeconfig.
    assert "admin-secret-token" not in json.dumps(dev.outputs)
    assert dev.outputs["kubeconfig"] == dev.outputs["kubeconfigs"]["analytics"]


def test_airflow_connection_wraps_the_same_kubeconfig(dev):
    connection = json.loads(dev.outputs["airflowConnections"]["analytics"])
    assert connection == {"conn_type": "kubernetes", "extra": {
        "kube_config": json.loads(dev.outputs["kubeconfigs"]["analytics"]),
        "namespace": "kpo-analytics", "in_cluster": False}}


def test_existing_server_overrides_the_endpoint_written_into_kubeconfigs(admin_kubeconfig):
    raw = stack_config("dev") | {"existing": {"server": "https://kpo.example.com:6443"}}
    run = run_program(raw)
    assert run.outputs["clusterEndpoint"] == "https://kpo.example.com:6443"
    assert json.loads(run.outputs["kubeconfig"])["clusters"][0]["cluster"]["server"] == "https://kpo.example.com:6443"


def test_inline_kubeconfig_content_is_passed_to_the_provider_as_a_secret(admin_kubeconfig, monkeypatch):
    monkeypatch.delenv("KUBECONFIG")
    run = run_program(stack_config("dev") | {"existing": {"kubeconfig": ADMIN_KUBECONFIG}})
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    # The mock monitor sees a secret as its wire form: the secret signature and the value.
    assert provider.inputs["kubeconfig"] == {rpc._special_sig_key: rpc._special_secret_sig, "value": ADMIN_KUBECONFIG}
    assert run.outputs["clusterEndpoint"] == "https://127.0.0.1:26443"


@pytest.mark.parametrize("existing, expected", [
    ({"kubeconfig": "/nonexistent/kubeconfig"},
     "remote-kpo:existing.kubeconfig: cannot read /nonexistent/kubeconfig: No such file or directory"),
    ({"context": "prod"}, "remote-kpo:existing.context: the kubeconfig has no context 'prod' (it has: admin)"),
])
def test_an_unusable_kubeconfig_stops_before_any_resource(admin_kubeconfig, existing, expected):
    with pytest.raises(pulumi.RunError) as caught:
        run_program(stack_config("dev") | {"existing": existing})
    assert str(caught.value) == expected


def test_bad_config_stops_the_program_with_the_named_key_and_registers_nothing(admin_kubeconfig):
    raw = stack_config("dev") | {"deployments": [{"name": "a"}, {"name": "a"}]}
    with pytest.raises(pulumi.RunError) as caught:
        run_program(raw)
    assert str(caught.value) == "remote-kpo:deployments[1].name: duplicate of deployments[0]"


def test_only_the_dev_stack_may_take_the_local_cluster_from_env_sh_without_a_word(tmp_path, monkeypatch):
    from config import ExistingConfig
    from stacks.existing import local_cluster_warning

    cluster = tmp_path / "cluster"
    cluster.mkdir()
    local = cluster / "admin.kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(local))
    env = {"REMOTE_KPO_CLUSTER_DIR": str(cluster)}
    warning = local_cluster_warning("prod", ExistingConfig(), env)
    assert warning is not None
    assert warning.startswith(f"stack prod sets no remote-kpo:existing.kubeconfig, so it uses KUBECONFIG={local}")
    assert "--stack prod" in warning
    assert local_cluster_warning("dev", ExistingConfig(), env) is None
    # Its own kubeconfig, another KUBECONFIG, or no scripts/env.sh: nothing to say.
    assert local_cluster_warning("prod", ExistingConfig(kubeconfig="/etc/prod.kubeconfig"), env) is None
    assert local_cluster_warning("prod", ExistingConfig(), {}) is None
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "prod.kubeconfig"))
    assert local_cluster_warning("prod", ExistingConfig(), env) is None
