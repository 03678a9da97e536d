"""TaskPods: what a Deployment's KPO task pods run as, in its namespace (issue 16).

- `registries`: a `kubernetes.io/dockerconfigjson` Secret, added to the `imagePullSecrets` of the
  ServiceAccounts task pods run as, so the ServiceAccount admission plugin puts it on every task
  pod and no DAG has to name it (`image_pull_secrets`). The namespace's `default` ServiceAccount
  belongs to the cluster's ServiceAccount controller: it is patched with server-side apply
  (`ServiceAccountPatch`), so the program owns only that one field, and deleting the patch
  (registries removed, or `destroy`) gives the field up and leaves the account as the controller
  made it.
- `taskIdentity`: the `remote-kpo-task` ServiceAccount, annotated by the cloud's binding
  (components/<cloud>_tasks.py) with the identity it acts as.

The Deployment's Role is unchanged: it can neither read the pull Secret nor mint the task
ServiceAccount's tokens; creating a pod that runs as it needs no extra right. Its admission policy
(components/admission.py) keeps its pods from mounting the pull Secret.
"""

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.metadata import object_metadata
from components.permissions import PULL_SECRET, TASK_SERVICE_ACCOUNT
from config import Deployment, Registry

DEFAULT_SERVICE_ACCOUNT = "default"
# The stack config key registries live under: secret as a whole once one value in it is.
DEPLOYMENTS_KEY = "remote-kpo:deployments"


# ---- pure functions -------------------------------------------------------------------

def docker_config_json(registries: list[Registry]) -> str:
    """The `.dockerconfigjson` document: the given one as it is, or one `auths` entry per login
    (what `kubectl create secret docker-registry` writes)."""
    if registries[0].docker_config_json is not None:
        return registries[0].docker_config_json
    auths = {}
    for registry in registries:
        login = f"{registry.username}:{registry.password}"
        auths[registry.server] = {"username": registry.username, "password": registry.password,
                                  "auth": base64.b64encode(login.encode()).decode()}
    return json.dumps({"auths": auths}, sort_keys=True)


def pull_secret_data(registries: list[Registry]) -> dict[str, str]:
    return {".dockerconfigjson": base64.b64encode(docker_config_json(registries).encode()).decode()}


def plain_text_warning(deployment_name: str) -> str:
    return (f"{DEPLOYMENTS_KEY}: the registries of {deployment_name} are plain text in the stack file; set "
            "each password (or dockerConfigJson) with `pulumi config set --secret --path "
            "'deployments[<i>].registries[<j>].password' ...` (the program keeps it secret in state either way)")


def config_is_secret(key: str) -> bool:
    """Whether the engine passed `key` as a secret (`secure:` in the stack file)."""
    from pulumi.runtime import config as runtime_config

    return runtime_config.is_config_secret(key) or key in runtime_config.get_config_secret_keys_env()


def has_task_pods(deployment: Deployment) -> bool:
    """Whether the Deployment has anything for TaskPods to make (nothing new otherwise)."""
    return bool(deployment.registries) or deployment.task_identity is not None


def task_details(deployment: Deployment) -> dict[str, str]:
    """Public entries of the Deployment's `deployments` output: what a DAG names."""
    details = {}
    if deployment.task_identity is not None:
        details["taskServiceAccount"] = TASK_SERVICE_ACCOUNT
    if deployment.registries:
        details["imagePullSecret"] = PULL_SECRET
    return details


# ---- component ------------------------------------------------------------------------

@dataclass
class TaskPodsArgs:
    deployment: Deployment
    namespace: pulumi.Input[str]
    # Annotations that bind remote-kpo-task to its cloud identity (GKE, AKS workload identity).
    task_annotations: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


class TaskPods(pulumi.ComponentResource):
    """The pull Secret on `default` (and `remote-kpo-task`), and the task ServiceAccount."""

    def __init__(self, name: str, args: TaskPodsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:TaskPods", name, None, opts)
        deployment = args.deployment
        child = pulumi.ResourceOptions(parent=self)

        pull_secrets: Optional[list[k8s.core.v1.LocalObjectReferenceArgsDict]] = None
        after_secret = child
        if deployment.registries:
            if not config_is_secret(DEPLOYMENTS_KEY):
                pulumi.log.warn(plain_text_warning(deployment.name), resource=self)
            secret = k8s.core.v1.Secret(
                f"{name}-registries",
                metadata=object_metadata(PULL_SECRET, args.namespace, deployment=deployment.name),
                type="kubernetes.io/dockerconfigjson",
                # A secret whatever the stack file says: encrypted in state, never in outputs.
                data=pulumi.Output.secret(pull_secret_data(deployment.registries)),
                opts=child,
            )
            pull_secrets = [{"name": PULL_SECRET}]
            after_secret = pulumi.ResourceOptions(parent=self, depends_on=[secret])
            # Only imagePullSecrets is applied (its own field manager); no label or stack
            # annotation, since the account is not the program's.
            k8s.core.v1.ServiceAccountPatch(
                f"{name}-default-pull-secret",
                metadata={"name": DEFAULT_SERVICE_ACCOUNT, "namespace": args.namespace},
                image_pull_secrets=pull_secrets,
                opts=after_secret,
            )

        self.service_account_name: Optional[str] = None
        if deployment.task_identity is not None:
            k8s.core.v1.ServiceAccount(
                f"{name}-task-serviceaccount",
                metadata=object_metadata(TASK_SERVICE_ACCOUNT, args.namespace, deployment=deployment.name,
                                         annotations=args.task_annotations),
                image_pull_secrets=pull_secrets,
                opts=after_secret,
            )
            self.service_account_name = TASK_SERVICE_ACCOUNT
        self.register_outputs({"serviceAccountName": self.service_account_name})
