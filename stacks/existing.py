"""cloud: existing — a cluster the platform team already runs (or the local control plane).

Each Deployment gets a ServiceAccount and a long-lived token Secret (filled by the cluster's
token controller); its exported kubeconfig carries that token, bound by namespace RBAC.
"""

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional, cast

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import kubeconfig as kc
from components import kueue, queueing
from components.access import DeploymentAccess, rbac_subject
from components.kube_client import client_settings
from components.metadata import object_metadata, stack_id
from components.ownership import LiveNamespace, claim_namespaces
from components.permissions import DEPLOYMENT_SERVICE_ACCOUNT as SERVICE_ACCOUNT
from components.permissions import DEPLOYMENT_TOKEN_SECRET as TOKEN_SECRET
from components.task_pods import TaskPods, TaskPodsArgs, task_details, has_task_pods
from config import ConfigError, Deployment, ExistingConfig, StackConfig, present
from stacks.outputs import DeploymentEndpoint, stack_outputs

# The one stack meant for the local cluster (Pulumi.dev.yaml, `make dev`).
LOCAL_STACK = "dev"


def _default_kubeconfig_path() -> str:
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return paths[0] if paths else os.path.expanduser("~/.kube/config")


def _looks_like_content(value: str) -> bool:
    return "\n" in value or value.lstrip().startswith(("{", "apiVersion"))


@dataclass
class AdminKubeconfig:
    provider_input: pulumi.Input[str]  # content as a secret, or the path: no credential lands in state
    server: str  # the API URL the exported kubeconfigs name
    ca_data: str
    # For the program's own read of the cluster: the file (its relative paths resolve from its
    # folder), else the parsed content; and the API URL it names.
    path: Optional[str]
    document: dict
    admin_server: str


def read_admin_kubeconfig(existing: ExistingConfig) -> AdminKubeconfig:
    """The admin kubeconfig of `existing.kubeconfig` and `.context`."""
    source = existing.kubeconfig or _default_kubeconfig_path()
    path = None
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
    return AdminKubeconfig(provider_input, existing.server or server, ca_data, path, document, server)


@dataclass
class LiveCluster:
    namespaces: dict[str, LiveNamespace]
    with_token: set[str]  # the namespaces that hold a TOKEN_SECRET
    # Kueue's CustomResourceDefinitions the program needs -> the versions each serves (read only
    # with queueing on).
    kueue_crds: dict[str, list[str]] = field(default_factory=dict)


def read_cluster(admin: AdminKubeconfig, context: Optional[str], queueing: bool = False) -> LiveCluster:
    """The cluster's namespaces, and which hold a token Secret, listed as the admin kubeconfig's
    user when the program starts: what components/ownership.py checks before any resource is
    registered, and which tokens this run issues anew; with `queueing`, Kueue's CRDs."""
    # Imported here: only `existing` reads the cluster itself (the client takes ~0.4 s to import).
    from kubernetes import client, config as kube_config
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    configuration = client.Configuration()
    # One attempt: an API server that is down says so at once (the provider would fail next).
    # setattr: the client declares the attribute as None only.
    setattr(configuration, "retries", 0)
    where = (f"remote-kpo:existing.kubeconfig: cannot list the namespaces of {admin.admin_server} "
             "(to check which stack owns them)")
    # (connect, read) seconds per request.
    timeout = (10, 30)
    try:
        # persist_config=False: never write refreshed credentials back into the user's kubeconfig.
        if admin.path:
            kube_config.load_kube_config(admin.path, context=context, persist_config=False,
                                         client_configuration=configuration)
        else:
            kube_config.load_kube_config_from_dict(admin.document, context=context, persist_config=False,
                                                   client_configuration=configuration)
        api = client.CoreV1Api(client.ApiClient(configuration))
        # The client's types say any response shape, and `items` None: these return lists.
        namespaces = cast(client.V1NamespaceList, api.list_namespace(_request_timeout=timeout)).items or []
        tokens = cast(client.V1SecretList, api.list_secret_for_all_namespaces(
            field_selector=f"metadata.name={TOKEN_SECRET}", _request_timeout=timeout)).items or []
        crds = _kueue_crds(client.ApiextensionsV1Api(api.api_client), timeout) if queueing else {}
    except client.ApiException as exc:
        raise ConfigError(f"{where}: {exc.status} {exc.reason}; the kubeconfig must be a cluster admin's") from None
    except HTTPError as exc:
        raise ConfigError(f"{where}: {_connection_reason(exc)}; is the API server running and reachable from here?") from None
    except (ConfigException, OSError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return LiveCluster({item.metadata.name: LiveNamespace(item.metadata.labels or {}, item.metadata.annotations or {})
                        for item in namespaces}, {item.metadata.namespace for item in tokens}, crds)


def _kueue_crds(api, timeout) -> dict[str, list[str]]:
    """Kueue's CRDs the program needs that exist -> the versions each serves."""
    from kubernetes import client

    found = {}
    for name in queueing.KUEUE_CRDS:
        try:
            crd = cast(client.V1CustomResourceDefinition,
                       api.read_custom_resource_definition(name, _request_timeout=timeout))
        except client.ApiException as exc:
            if exc.status == 404:
                continue
            raise
        # The API server always returns a spec; the client types it as optional.
        versions = crd.spec.versions if crd.spec else []
        found[name] = [version.name for version in versions if version.served]
    return found


def missing_kueue(crds: Mapping[str, list[str]]) -> Optional[str]:
    """Why queueing cannot run on this cluster: Kueue is not installed (or too old to serve the
    API version the program writes). The program does not install Kueue on `existing`."""
    version = kueue.KUEUE_API_VERSION.split("/")[1]
    missing = [name for name in queueing.KUEUE_CRDS if version not in crds.get(name, [])]
    if not missing:
        return None
    return (f"remote-kpo:queueing.enabled: Kueue is not installed on this cluster: no CustomResourceDefinition "
            f"{', '.join(missing)} serving {kueue.KUEUE_API_VERSION}. Install Kueue "
            f"{kueue.KUEUE_VERSION} with the pod integration (README, Queueing), or set queueing.enabled: false")


def new_tokens_warning(deployments: list[Deployment], with_token: set[str]) -> Optional[str]:
    """The line that says which connections this run changes: a Deployment whose namespace holds
    no token Secret (new, or deleted out of band) gets a new token, so Astro's copy goes stale."""
    names = [d.name for d in deployments if d.namespace_name not in with_token]
    if not names:
        return None
    return (f"new ServiceAccount tokens for {', '.join(names)}: their connections change with this update; "
            "hand them to Astro again once it is done (scripts/astro-env)")


def _connection_reason(exc: Exception) -> str:
    """`connection refused` for urllib3's MaxRetryError(NewConnectionError(... [Errno 111] ...))."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return match.group(1).strip().lower() if match else text


def local_cluster_warning(stack: str, existing: ExistingConfig, environ: Mapping[str, str]) -> Optional[str]:
    """Why a stack other than dev, naming no kubeconfig, is about to use the local cluster: the
    shell's KUBECONFIG is the one scripts/env.sh points at REMOTE_KPO_CLUSTER_DIR."""
    cluster_dir = environ.get("REMOTE_KPO_CLUSTER_DIR")
    if stack == LOCAL_STACK or existing.kubeconfig or not cluster_dir:
        return None
    path = os.path.realpath(_default_kubeconfig_path())
    if os.path.commonpath([path, os.path.realpath(cluster_dir)]) != os.path.realpath(cluster_dir):
        return None
    return (f"stack {stack} sets no remote-kpo:existing.kubeconfig, so it uses KUBECONFIG={path}: the "
            "local cluster of scripts/env.sh, not a cluster of yours. If it is meant for another cluster, "
            f"`pulumi config set --path remote-kpo:existing.kubeconfig <path> --stack {stack}`, or run it "
            "from a shell without scripts/env.sh")


def _token(data: Optional[Mapping[str, str]]) -> str:
    if not data or not data.get("token"):
        raise RuntimeError(
            "the ServiceAccount token Secret was not filled; the cluster's "
            "kube-controller-manager must run the serviceaccount-token controller")
    return base64.b64decode(data["token"]).decode()


def build(cfg: StackConfig, stack: str) -> dict:
    cluster_name = cfg.resolved_cluster_name(stack)
    existing = present(cfg.existing, "existing")
    admin = read_admin_kubeconfig(existing)
    if warning := local_cluster_warning(stack, existing, os.environ):
        pulumi.log.warn(warning)
    # Before any resource is registered: a namespace of another stack stops the program here.
    live = read_cluster(admin, existing.context, queueing=cfg.queueing.enabled)
    if cfg.queueing.enabled and (problem := missing_kueue(live.kueue_crds)):
        raise ConfigError(problem)
    for warning in claim_namespaces(cfg.deployments, live.namespaces, stack_id()):
        pulumi.log.warn(warning)
    if new_tokens := new_tokens_warning(cfg.deployments, live.with_token):
        pulumi.log.warn(new_tokens)
    provider = k8s.Provider(
        "existing-cluster",
        kubeconfig=admin.provider_input,
        context=existing.context,
        # A changed kubeconfig (new path, rotated admin credential) must not replace every
        # namespaced object: the cluster is identified by name.
        cluster_identifier=cluster_name,
        kube_client_settings=client_settings(cfg.kube_client),
    )
    queue = queueing.stack_queueing(cfg, stack, opts=pulumi.ResourceOptions(providers=[provider]))
    endpoints = []
    for deployment in cfg.deployments:
        access = DeploymentAccess(
            deployment.name, deployment,
            subject=rbac_subject("ServiceAccount", SERVICE_ACCOUNT, deployment.namespace),
            opts=pulumi.ResourceOptions(providers=[provider]),
            queue=queue,
        )
        service_account = k8s.core.v1.ServiceAccount(
            f"{deployment.name}-serviceaccount",
            metadata=object_metadata(SERVICE_ACCOUNT, access.namespace_name, deployment=deployment.name),
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=access),
        )
        token_secret = k8s.core.v1.Secret(
            f"{deployment.name}-token",
            metadata=object_metadata(TOKEN_SECRET, access.namespace_name, deployment=deployment.name,
                                     annotations={"kubernetes.io/service-account.name": SERVICE_ACCOUNT}),
            type="kubernetes.io/service-account-token",
            opts=pulumi.ResourceOptions(parent=access, depends_on=[service_account]),
        )
        user = pulumi.Output.secret(token_secret.data.apply(_token)).apply(kc.token_user)
        if has_task_pods(deployment):
            TaskPods(f"{deployment.name}-tasks", TaskPodsArgs(deployment, access.namespace_name),
                     opts=pulumi.ResourceOptions(parent=access))
        endpoints.append(DeploymentEndpoint(deployment, access.namespace_name, user,
                                            details=dict(task_details(deployment))))
    return stack_outputs(cfg, cluster_name, admin.server, admin.ca_data, endpoints)
