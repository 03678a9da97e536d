import base64

import pytest

from components import kubeconfig as kc


def test_gke_user_is_the_seed_exec_plugin_with_cluster_info():
    assert kc.gke_user() == {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": "gke-gcloud-auth-plugin", "args": [],
        "provideClusterInfo": True, "interactiveMode": "Never"}}


def test_eks_user_runs_aws_eks_get_token_as_the_access_role():
    user = kc.eks_user("eu-west-1", "gpu-cluster", "arn:aws:iam::123456789012:role/kpo-analytics")
    assert user["exec"]["command"] == "aws"
    assert user["exec"]["args"] == ["--region", "eu-west-1", "eks", "get-token",
                                    "--cluster-name", "gpu-cluster",
                                    "--role-arn", "arn:aws:iam::123456789012:role/kpo-analytics"]
    assert user["exec"]["apiVersion"] == "client.authentication.k8s.io/v1beta1"


def test_aks_user_runs_kubelogin_workload_identity_with_the_aks_server_id():
    user = kc.aks_user("11111111-2222-3333-4444-555555555555", "99999999-8888-7777-6666-555555555555")
    assert user["exec"]["command"] == "kubelogin"
    assert user["exec"]["args"] == [
        "get-token", "--login", "workloadidentity",
        "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630",
        "--client-id", "11111111-2222-3333-4444-555555555555",
        "--tenant-id", "99999999-8888-7777-6666-555555555555",
        "--environment", "AzurePublicCloud",
        "--federated-token-file", "/var/run/secrets/azure/tokens/azure-identity-token",
        # The pod's AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE cannot replace them.
        "--disable-environment-override"]


def test_kubeconfig_current_context_runs_in_the_deployments_namespace():
    doc = kc.kubeconfig(cluster_name="c1", server="https://k.example:443", ca_data="Q0E=",
                        namespace="kpo-a", user_name="c1-a", user=kc.token_user("t"))
    (context,) = doc["contexts"]
    assert doc["current-context"] == context["name"] == "c1"
    assert context["context"] == {"cluster": "c1", "user": "c1-a", "namespace": "kpo-a"}
    assert doc["clusters"][0]["cluster"] == {"server": "https://k.example:443", "certificate-authority-data": "Q0E="}
    assert doc["users"] == [{"name": "c1-a", "user": {"token": "t"}}]


def test_airflow_connection_holds_the_kubeconfig_object_and_namespace():
    doc = {"kind": "Config"}
    assert kc.airflow_connection(doc, "kpo-a") == {
        "conn_type": "kubernetes",
        "extra": {"kube_config": {"kind": "Config"}, "namespace": "kpo-a", "in_cluster": False}}


def test_airflow_connection_adds_extras_beside_the_kubeconfig():
    extras = {"xcom_sidecar_container_image": "registry.example.com/alpine:3"}
    assert kc.airflow_connection({"kind": "Config"}, "kpo-a", extras)["extra"] == {
        "kube_config": {"kind": "Config"}, "namespace": "kpo-a", "in_cluster": False,
        "xcom_sidecar_container_image": "registry.example.com/alpine:3"}


@pytest.mark.parametrize("cloud, binary", [("gke", "gke-gcloud-auth-plugin"), ("eks", "aws/install"),
                                           ("aks", "az aks install-cli")])
def test_dockerfile_installs_the_exec_plugin_as_root_and_returns_to_astro(cloud, binary):
    lines = kc.DOCKERFILE[cloud].splitlines()
    assert lines[0] == "USER root" and lines[-1] == "USER astro"
    assert binary in kc.DOCKERFILE[cloud]


def _doc(cluster):
    return {"current-context": "ctx", "contexts": [{"name": "ctx", "context": {"cluster": "cl"}}],
            "clusters": [{"name": "cl", "cluster": cluster}]}


def test_cluster_of_reads_server_and_ca_data():
    assert kc.cluster_of(_doc({"server": "https://s", "certificate-authority-data": "Q0E="}), None) == ("https://s", "Q0E=")


def test_cluster_of_encodes_a_ca_file(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    _, ca_data = kc.cluster_of(_doc({"server": "https://s", "certificate-authority": str(ca)}), "ctx")
    assert base64.b64decode(ca_data) == b"-----BEGIN CERTIFICATE-----\n"


def test_cluster_of_names_a_missing_context():
    with pytest.raises(ValueError, match="has no context 'other' \\(it has: ctx\\)"):
        kc.cluster_of(_doc({"server": "https://s", "certificate-authority-data": "Q0E="}), "other")
