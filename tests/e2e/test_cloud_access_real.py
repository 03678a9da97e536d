"""The RBAC each cloud path creates, reached through that cloud's exported kubeconfig shape.

The real engine applies DeploymentAccess with the subject each cloud stack binds; kubectl then
runs the kubeconfig's exec plugin, here a stand-in on PATH that returns an ExecCredential for
the matching identity of the local API server's token file, and the authorizer answers.
"""

import base64
import json
import os
import stat
import time
from pathlib import Path

import pytest

from components import kubeconfig as kc
from components.eks import kubernetes_group
from realenv import API_URL, up_access_program
from matrix import matrix_failures, namespace_grants, table_grants

GOOGLE_SA = "kpo-analytics@my-project.iam.gserviceaccount.com"
AZURE_PRINCIPAL = "00000000-0000-0000-0000-0000000000a1"
ACCESS_ROLE = "arn:aws:iam::123456789012:role/remote-kpo-analytics"
CLIENT_ID, TENANT_ID = "11111111-2222-3333-4444-555555555555", "99999999-8888-7777-6666-555555555555"

# cloud -> (namespace, RBAC subject kind, subject, xcom, exec plugin, stand-in identity, user)
CLOUDS = {
    "gke": ("kpo-gke", "User", GOOGLE_SA, True, "gke-gcloud-auth-plugin", "gcp-analytics", kc.gke_user()),
    "eks": ("kpo-eks", "Group", kubernetes_group("analytics"), False, "aws", "aws-analytics",
            kc.eks_user("us-east-1", "remote-kpo-local", ACCESS_ROLE)),
    "aks": ("kpo-aks", "User", AZURE_PRINCIPAL, True, "kubelogin", "azure-analytics",
            kc.aks_user(CLIENT_ID, TENANT_ID)),
}


@pytest.fixture(scope="module")
def applied(cluster_env, tmp_path_factory):
    subjects = [{"name": "analytics", "namespace": ns, "kind": kind, "subject": subject, "xcom": xcom}
                for ns, kind, subject, xcom, *_ in CLOUDS.values()]
    cli = up_access_program(cluster_env, tmp_path_factory.mktemp("access"), subjects)
    yield cli
    cli.run("destroy", "--yes", "--stack", "check")


@pytest.fixture(scope="module")
def stand_ins(cluster_env, identities, tmp_path_factory) -> tuple[dict, Path]:
    """Exec plugins that record their arguments and return the identity's token."""
    folder = tmp_path_factory.mktemp("stand-ins")
    for _, _, _, _, plugin, identity, _ in CLOUDS.values():
        script = folder / plugin
        script.write_text(
            "#!/bin/sh\n"
            f"for arg in \"$@\"; do printf '%s\\n' \"$arg\"; done > '{folder}/{plugin}.args'\n"
            "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\","
            f"\"status\":{{\"token\":\"%s\"}}}}' \"$(cat '{identities[identity]['token_file']}')\"\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {**cluster_env, "PATH": f"{folder}{os.pathsep}{cluster_env['PATH']}"}, folder


def cloud_kubeconfig(cloud: str, local_cluster_dir: Path, folder: Path) -> Path:
    namespace, *_, user = CLOUDS[cloud]
    ca_data = base64.b64encode((local_cluster_dir / "pki/ca.crt").read_bytes()).decode()
    document = kc.kubeconfig(cluster_name="remote-kpo-local", server=API_URL,
                             ca_data=ca_data, namespace=namespace, user_name=f"{cloud}-analytics", user=user)
    path = folder / f"{cloud}.kubeconfig.json"
    path.write_text(kc.to_json(document))
    return path


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_cloud_kubeconfig_shape_reaches_exactly_the_permission_table(applied, stand_ins, kubectl,
                                                                     local_cluster_dir, cloud):
    env, folder = stand_ins
    namespace, _, _, xcom, plugin, *_ = CLOUDS[cloud]
    kubeconfig = cloud_kubeconfig(cloud, local_cluster_dir, folder)
    others = [ns for ns, *_ in CLOUDS.values() if ns != namespace] + ["default"]
    assert matrix_failures(kubectl, kubeconfig, namespace, others, xcom, env) == []
    assert namespace_grants(kubectl, kubeconfig, namespace, env) == table_grants(xcom)
    # kubectl ran the kubeconfig's exec plugin with exactly the exported arguments.
    assert (folder / f"{plugin}.args").read_text().splitlines() == CLOUDS[cloud][-1]["exec"]["args"]


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_the_admission_policy_holds_each_clouds_identity_as_its_rolebinding_names_it(applied, stand_ins, kubectl,
                                                                                     local_cluster_dir, cloud):
    """The policy's match condition (a User's username, an EKS Group) matches the identity the
    authorizer sees, so the Deployment's own requests meet its rules (test_tenancy_real.py has
    them all, for the ServiceAccount of `existing`)."""
    env, folder = stand_ins
    kubeconfig = cloud_kubeconfig(cloud, local_cluster_dir, folder)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "placed"},
           "spec": {"nodeName": "kwok-node-0", "containers": [{"name": "base", "image": "busybox:1.36"}]}}
    deadline = time.monotonic() + 60
    while True:  # a new policy takes a moment to load, a new quota to get its status
        result = kubectl("create", "--dry-run=server", "-f", "-", kubeconfig=kubeconfig, stdin=json.dumps(pod),
                         env=env, check=False)
        if "denied request" in result.stderr or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert f"ValidatingAdmissionPolicy 'remote-kpo-check-{CLOUDS[cloud][0]}'" in result.stderr, result.stderr
    assert "remote-kpo: spec.nodeName is not allowed" in result.stderr
