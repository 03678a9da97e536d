"""The restricted task shape and the XCom sidecar settings the exported connection carries."""

import json

import pytest

import config
from components import pod_security
from harness import ADMIN_KUBECONFIG, run_program, stack_config

MIRROR = "registry.example.com/mirror/alpine:3.24.2"


def deployment(**keys) -> config.Deployment:
    (d,) = config.load({"cloud": "existing", "deployments": [{"name": "a", **keys}]}).deployments
    return d


def test_a_restricted_xcom_deployment_gets_a_sidecar_security_context_as_the_json_string_the_provider_parses():
    extras = pod_security.xcom_sidecar_extras(deployment(podSecurity="restricted"))
    assert set(extras) == {"xcom_sidecar_container_security_context"}
    # KubernetesHook.get_xcom_sidecar_container_security_context() json.loads the extra.
    context = json.loads(extras["xcom_sidecar_container_security_context"])
    # Each rule of the restricted standard, on the sidecar itself (the task may set no pod context).
    assert context["runAsNonRoot"] is True and context["runAsUser"] > 0
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_a_baseline_deployment_keeps_the_providers_sidecar_defaults_unless_it_names_an_image():
    assert pod_security.xcom_sidecar_extras(deployment()) == {}
    assert pod_security.xcom_sidecar_extras(deployment(xcomSidecarImage=MIRROR)) == {
        "xcom_sidecar_container_image": MIRROR}


def test_a_deployment_without_xcom_gets_no_sidecar_settings():
    assert pod_security.xcom_sidecar_extras(deployment(podSecurity="restricted", xcom=False)) == {}


def test_the_restricted_task_shape_sets_what_restricted_checks_on_the_pod_and_the_container():
    shape = pod_security.restricted_task()
    assert shape["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert shape["containerSecurityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    # A copy: a DAG that edits its shape cannot change the next one.
    shape["securityContext"]["runAsNonRoot"] = False
    assert pod_security.restricted_task()["securityContext"]["runAsNonRoot"] is True


@pytest.fixture
def restricted_stack(tmp_path, monkeypatch):
    path = tmp_path / "admin.kubeconfig"
    path.write_text(ADMIN_KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    return run_program(stack_config("dev") | {"deployments": [
        {"name": "analytics"}, {"name": "strict", "podSecurity": "restricted", "xcomSidecarImage": MIRROR}]})


def test_a_stack_with_a_restricted_deployment_exports_the_task_shape_publicly(restricted_stack):
    assert restricted_stack.outputs["restrictedTask"] == pod_security.restricted_task()
    assert restricted_stack.secret["restrictedTask"] is False


def test_only_the_restricted_deployments_connection_carries_the_sidecar_settings(restricted_stack):
    connections = {name: json.loads(text)["extra"] for name, text in
                   restricted_stack.outputs["airflowConnections"].items()}
    assert "xcom_sidecar_container_security_context" not in connections["analytics"]
    assert "xcom_sidecar_container_image" not in connections["analytics"]
    strict = connections["strict"]
    assert json.loads(strict["xcom_sidecar_container_security_context"])["runAsNonRoot"] is True
    assert strict["xcom_sidecar_container_image"] == MIRROR
    assert strict["kube_config"]["contexts"][0]["context"]["namespace"] == "kpo-strict"
