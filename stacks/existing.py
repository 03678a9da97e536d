"""cloud: existing — a cluster the platform team already runs (or the local control plane).

Each Deployment gets a ServiceAccount and a long-lived token Secret (filled by the cluster's
token controller); its exported kubeconfig carries that token, bound by namespace RBAC.
"""

import base64
import os
from collections.abc import Mapping
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import kubeconfig as kc
from components.access import DeploymentAccess, rbac_subject
from components.kube_client import client_settings
from components.task_pods import TaskPods, TaskPodsArgs, task_details, has_task_pods
from config import ConfigError, ExistingConfig, StackConfig, present
from stacks.outputs import DeploymentEndpoint, stack_outputs

SERVICE_ACCOUNT = "remote-kpo"
TOKEN_SECRET = "remote-kpo-token"


def _default_kubeconfig_path() -> str:
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return paths[0] if paths else os.path.expanduser("~/.kube/config")


def _looks_like_content(value: str) -> bool:
    return "\n" in value or value.lstrip().startswith(("{", "apiVersion"))


def read_admin_kubeconfig(existing: ExistingConfig) -> tuple[pulumi.Input[str], str, str]:
    """(provider kubeconfig input, server, CA data) from `existing.kubeconfig` and `.context`.

    Content is passed to the provider as a secret; a path is passed as the path, so no
    credential lands in state.
    """
    source = existing.kubeconfig or _default_kubeconfig_path()
    if _looks_like_content(source):
        text, provider_input = source, pulumi.Output.secret(source)
    else:
        path = os.path.expanduser(source)
        try:
            with open(path, encoding="utf-8") as kubeconfig_file:
                text = kubeconfig_file.read()
        except OSError as exc:
            raise ConfigError(f"remote-kpo:existing.kubeconfig: cannot read {path}: {exc.strerror}") from None
        provider_input = path
    try:
        document = yaml.safe_load(text)
        if not isinstance(document, dict):
            raise ValueError("is not a kubeconfig document")
        server, ca_data = kc.cluster_of(document, existing.context)
    except (yaml.YAMLError, ValueError, OSError) as exc:
        key = "existing.context" if existing.context and "context" in str(exc) else "existing.kubeconfig"
        raise ConfigError(f"remote-kpo:{key}: the kubeconfig {exc}") from None
    return provider_input, existing.server or server, ca_data


def _token(data: Optional[Mapping[str, str]]) -> str:
    if not data or not data.get("token"):
        raise RuntimeError(
            "the ServiceAccount token Secret was not filled; the cluster's "
            "kube-controller-manager must run the serviceaccount-token controller")
    return base64.b64decode(data["token"]).decode()


def build(cfg: StackConfig, stack: str) -> dict:
    cluster_name = cfg.resolved_cluster_name(stack)
    existing = present(cfg.existing, "existing")
    provider_kubeconfig, server, ca_data = read_admin_kubeconfig(existing)
    provider = k8s.Provider(
        "existing-cluster",
        kubeconfig=provider_kubeconfig,
        context=existing.context,
        # A changed kubeconfig (new path, rotated admin credential) must not replace every
        # namespaced object: the cluster is identified by name.
        cluster_identifier=cluster_name,
        kube_client_settings=client_settings(cfg.kube_client),
    )
    endpoints = []
    for deployment in cfg.deployments:
        access = DeploymentAccess(
            deployment.name, deployment,
            subject=rbac_subject("ServiceAccount", SERVICE_ACCOUNT, deployment.namespace),
            opts=pulumi.ResourceOptions(providers=[provider]),
        )
        service_account = k8s.core.v1.ServiceAccount(
            f"{deployment.name}-serviceaccount",
            metadata={"name": SERVICE_ACCOUNT, "namespace": access.namespace_name},
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=access),
        )
        token_secret = k8s.core.v1.Secret(
            f"{deployment.name}-token",
            metadata={"name": TOKEN_SECRET, "namespace": access.namespace_name,
                      "annotations": {"kubernetes.io/service-account.name": SERVICE_ACCOUNT}},
            type="kubernetes.io/service-account-token",
            opts=pulumi.ResourceOptions(parent=access, depends_on=[service_account]),
        )
        user = pulumi.Output.secret(token_secret.data.apply(_token)).apply(kc.token_user)
        if has_task_pods(deployment):
            TaskPods(f"{deployment.name}-tasks", TaskPodsArgs(deployment, access.namespace_name),
                     opts=pulumi.ResourceOptions(parent=access))
        endpoints.append(DeploymentEndpoint(deployment, access.namespace_name, user,
                                            details=dict(task_details(deployment))))
    return stack_outputs(cfg, cluster_name, server, ca_data, endpoints)
