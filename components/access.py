"""DeploymentAccess: one Astro Deployment's namespace and exactly the RBAC its KPO tasks need."""

from collections.abc import Mapping
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import LimitRangeItemArgsDict, LimitRangeSpecArgsDict
from pulumi_kubernetes.meta.v1 import ObjectMetaArgsDict
from pulumi_kubernetes.rbac.v1 import SubjectArgsDict

from components.permissions import kpo_role_rules
from config import Deployment

ROLE_NAME = "remote-kpo"
MANAGED_BY = {"app.kubernetes.io/managed-by": "remote-kpo"}
DEPLOYMENT_LABEL = "remote-kpo/deployment"
# Which stack made an object, `<organization>/<project>/<stack>`: on `existing`, `up` refuses a
# namespace another stack's annotation names before it changes anything (components/ownership.py).
STACK_ANNOTATION = "remote-kpo/stack"
# On the Role: whether the Deployment pushes XComs, so the policy pack (policy/rules.py), which
# sees resources and not config, can check that only such a Role grants pods/exec.
XCOM_LABEL = "remote-kpo/xcom"
# Pod Security admission (built into kube-apiserver since 1.25): `enforce` refuses pods above the
# Deployment's level; `warn` and `audit` report what `restricted` would refuse, so a Deployment
# on baseline sees what moving up would take. https://kubernetes.io/docs/concepts/security/pod-security-admission/
POD_SECURITY_PREFIX = "pod-security.kubernetes.io/"


def rbac_subject(kind: str, name: pulumi.Input[str], namespace: Optional[str] = None) -> SubjectArgsDict:
    """A RoleBinding subject: a User or Group (cloud identities) or a ServiceAccount."""
    if kind == "ServiceAccount":
        if namespace is None:
            raise ValueError("a ServiceAccount subject needs its namespace")
        return {"kind": kind, "name": name, "namespace": namespace}
    if kind in ("User", "Group"):
        return {"kind": kind, "name": name, "api_group": "rbac.authorization.k8s.io"}
    raise ValueError(f"unknown RBAC subject kind {kind}")


def stack_id() -> str:
    """This stack's full name, as `pulumi stack ls --all` and StackReference spell it."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


def stack_annotations() -> dict[str, str]:
    return {STACK_ANNOTATION: stack_id()}


def object_metadata(name: str, namespace: Optional[pulumi.Input[str]] = None, *, deployment: Optional[str] = None,
                    labels: Optional[Mapping[str, str]] = None,
                    annotations: Optional[Mapping[str, pulumi.Input[str]]] = None) -> ObjectMetaArgsDict:
    """The metadata of every object the program makes: ours by label (MANAGED_BY, the Deployment),
    this stack's by annotation (STACK_ANNOTATION)."""
    metadata: ObjectMetaArgsDict = {
        "name": name,
        "labels": {**MANAGED_BY, **({DEPLOYMENT_LABEL: deployment} if deployment else {}), **(labels or {})},
        "annotations": {**(annotations or {}), **stack_annotations()},
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata


def pod_security_labels(level: str) -> dict[str, str]:
    """Namespace labels that enforce `level` and warn and audit at `restricted`."""
    return {f"{POD_SECURITY_PREFIX}enforce": level,
            f"{POD_SECURITY_PREFIX}warn": "restricted",
            f"{POD_SECURITY_PREFIX}audit": "restricted"}


def limit_range_spec(deployment: Deployment) -> Optional[LimitRangeSpecArgsDict]:
    defaults = deployment.pod_defaults
    if defaults is None:
        return None
    limit: LimitRangeItemArgsDict = {"type": "Container"}
    if defaults.requests:
        limit["default_request"] = defaults.requests.model_dump(exclude_none=True)
    if defaults.limits:
        limit["default"] = defaults.limits.model_dump(exclude_none=True)
    return {"limits": [limit]}


def resource_quota_hard(deployment: Deployment) -> Optional[dict[str, str]]:
    quota = deployment.quota
    if quota is None:
        return None
    hard = {
        "requests.cpu": quota.cpu,
        "requests.memory": quota.memory,
        # Extended resources are quota'd by request only.
        "requests.nvidia.com/gpu": None if quota.gpu is None else str(quota.gpu),
        "pods": None if quota.pods is None else str(quota.pods),
    }
    return {key: value for key, value in hard.items() if value is not None} or None


class DeploymentAccess(pulumi.ComponentResource):
    """Namespace, Role from the permission table, RoleBinding to `subject`, and optional
    LimitRange and ResourceQuota, for one Deployment."""

    def __init__(self, name: str, deployment: Deployment, subject: SubjectArgsDict,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:DeploymentAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = str(deployment.namespace)  # config sets the default

        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=object_metadata(namespace, deployment=deployment.name,
                                     labels=pod_security_labels(deployment.pod_security)),
            opts=child,
        )
        # The name as an output of the Namespace, so what is made in it waits for it.
        namespace_name = self.namespace.metadata.apply(lambda _: namespace)
        in_namespace = object_metadata(ROLE_NAME, namespace_name, deployment=deployment.name)
        self.role = k8s.rbac.v1.Role(
            f"{name}-role",
            metadata=object_metadata(ROLE_NAME, namespace_name, deployment=deployment.name,
                                     labels={XCOM_LABEL: "true" if deployment.xcom else "false"}),
            rules=kpo_role_rules(deployment.xcom),
            opts=child,
        )
        self.role_binding = k8s.rbac.v1.RoleBinding(
            f"{name}-rolebinding",
            metadata=in_namespace,
            role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE_NAME},
            subjects=[subject],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role]),
        )

        limits = limit_range_spec(deployment)
        if limits:
            k8s.core.v1.LimitRange(
                f"{name}-limitrange",
                metadata={**in_namespace, "name": "remote-kpo-pod-defaults"},
                spec=limits,
                opts=child,
            )
        hard = resource_quota_hard(deployment)
        if hard:
            k8s.core.v1.ResourceQuota(
                f"{name}-quota",
                metadata={**in_namespace, "name": "remote-kpo-quota"},
                spec={"hard": hard},
                opts=child,
            )

        self.namespace_name = namespace_name
        self.register_outputs({"namespace": self.namespace_name})
