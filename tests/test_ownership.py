"""Which stack owns an object: every object names its stack, and on `existing` a namespace of
another stack, or of no remote-kpo stack, stops the program before anything is registered.
The real cluster read and the two-stack case: tests/e2e/test_two_stacks_real.py."""

import socket

import pulumi
import pytest

import config
from components.ownership import LiveNamespace, claim_namespaces
from harness import ADMIN_KUBECONFIG, RecordingMocks, run_program, stack_config
from stacks import existing

STACK = "remote-kpo/stack"
MANAGED = {"app.kubernetes.io/managed-by": "remote-kpo"}
DEV = "organization/remote-kpo/dev"
PROD = "organization/remote-kpo/prod"


def deployments(*names: str) -> list:
    return config.load({"cloud": "existing", "deployments": [{"name": n} for n in names]}).deployments


def test_every_kubernetes_object_names_the_stack_that_made_it(admin_kubeconfig):
    raw = stack_config("dev") | {"deployments": [
        {"name": "analytics", "taskIdentity": {}, "registries": [{"server": "ghcr.io", "username": "u", "password": "p"}]},
        {"name": "ml-training", "podDefaults": {"requests": {"cpu": "1"}}, "quota": {"cpu": "2"}}]}
    run = run_program(raw, stack="prod")
    objects = [r for r in run.resources if r.typ.startswith("kubernetes:") and not r.typ.endswith("Patch")]
    kinds = {r.typ.rsplit(":", 1)[1] for r in objects}
    assert kinds == {"Namespace", "Role", "RoleBinding", "LimitRange", "ResourceQuota", "ServiceAccount", "Secret",
                     "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    assert {r.name: r.inputs["metadata"]["annotations"][STACK] for r in objects} == {r.name: PROD for r in objects}
    assert all(r.inputs["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "remote-kpo" for r in objects)


def test_the_default_service_account_patch_claims_only_its_pull_secrets_not_the_account(admin_kubeconfig):
    raw = stack_config("dev") | {"deployments": [
        {"name": "analytics", "registries": [{"server": "ghcr.io", "username": "u", "password": "p"}]}]}
    (patch,) = run_program(raw).of_type("kubernetes:core/v1:ServiceAccountPatch")
    assert "annotations" not in patch.inputs["metadata"]


def test_a_namespace_of_another_stack_is_refused_naming_that_stack_and_the_way_out():
    live = {"kpo-analytics": LiveNamespace(MANAGED, {STACK: DEV})}
    with pytest.raises(config.ConfigError) as error:
        claim_namespaces(deployments("analytics"), live, PROD)
    assert str(error.value) == (
        "remote-kpo:deployments[0].namespace: namespace kpo-analytics belongs to stack organization/remote-kpo/dev "
        "on this cluster; give this Deployment another `namespace`, or destroy that stack first")


def test_a_namespace_remote_kpo_did_not_make_is_refused():
    live = {"kpo-etl": LiveNamespace({"team": "data"}, {})}
    with pytest.raises(config.ConfigError) as error:
        claim_namespaces(deployments("analytics", "etl"), live, PROD)
    assert str(error.value) == (
        "remote-kpo:deployments[1].namespace: namespace kpo-etl exists and was not made by remote-kpo; give this "
        "Deployment another `namespace` (a stack's `destroy` deletes its namespaces)")


def test_every_refused_namespace_gets_its_own_line():
    live = {"kpo-a": LiveNamespace(MANAGED, {STACK: DEV}), "kpo-b": LiveNamespace({}, {})}
    with pytest.raises(config.ConfigError) as error:
        claim_namespaces(deployments("a", "b"), live, PROD)
    assert [line.split(":")[1] for line in str(error.value).splitlines()] == [
        "deployments[0].namespace", "deployments[1].namespace"]


def test_the_stacks_own_namespaces_and_absent_ones_pass_without_a_word():
    # Its own: what an `up` killed before it recorded its creates left behind (test_faults_real.py).
    live = {"kpo-analytics": LiveNamespace(MANAGED, {STACK: PROD}), "kube-system": LiveNamespace({}, {})}
    assert claim_namespaces(deployments("analytics", "ml-training"), live, PROD) == []


def test_a_remote_kpo_namespace_from_before_stacks_were_named_is_claimed_with_a_warning():
    live = {"kpo-analytics": LiveNamespace(MANAGED, {})}
    (warning,) = claim_namespaces(deployments("analytics"), live, PROD)
    assert warning.startswith("remote-kpo:deployments[0].namespace: namespace kpo-analytics was made by remote-kpo "
                              "before namespaces named their stack; this stack now claims it")


def test_a_refusal_stops_the_program_before_any_resource(admin_kubeconfig):
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as error:
        run_program(stack_config("dev"), stack="prod", mocks=mocks,
                    namespaces={"kpo-ml-training": LiveNamespace(MANAGED, {STACK: DEV})})
    assert str(error.value).startswith("remote-kpo:deployments[1].namespace: namespace kpo-ml-training belongs to "
                                       "stack organization/remote-kpo/dev")
    assert mocks.resources == []


def test_an_api_server_that_is_down_is_named_with_its_address_not_a_traceback(tmp_path):
    with socket.socket() as probe:  # a local port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "admin.kubeconfig"
    kubeconfig.write_text(ADMIN_KUBECONFIG.replace("https://127.0.0.1:26443", f"https://127.0.0.1:{port}"))
    admin = existing.read_admin_kubeconfig(config.ExistingConfig(kubeconfig=str(kubeconfig)))
    with pytest.raises(config.ConfigError) as error:
        existing.read_cluster(admin, None)
    assert str(error.value) == (
        f"remote-kpo:existing.kubeconfig: cannot list the namespaces of https://127.0.0.1:{port} (to check which "
        "stack owns them): connection refused; is the API server running and reachable from here?")


def test_a_line_names_the_deployments_whose_token_this_run_issues_anew():
    # ml-training's namespace holds no token Secret (new, or deleted out of band): a new connection.
    assert existing.new_tokens_warning(deployments("analytics", "ml-training"), {"kpo-analytics"}) == (
        "new ServiceAccount tokens for ml-training: their connections change with this update; hand them to "
        "Astro again once it is done (scripts/astro-env)")
    assert existing.new_tokens_warning(deployments("analytics"), {"kpo-analytics"}) is None
