"""DeploymentAccess: one Astro Deployment's namespace, exactly the RBAC its KPO tasks need, and the
bounds on what its pods may use and say."""

from collections.abc import Mapping
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import LimitRangeSpecArgsDict
from pulumi_kubernetes.meta.v1 import ObjectMetaArgsDict
from pulumi_kubernetes.rbac.v1 import SubjectArgsDict

from components.admission import TenantAdmission
from components.gpu import GPU_RESOURCE
from components.metadata import DEPLOYMENT_LABEL, MANAGED_BY, object_metadata
from components.permissions import kpo_role_rules
from components.queueing import QUEUEING_NAMESPACE_LABEL, DeploymentQueue, QueueSettings
from config import Deployment

ROLE_NAME = "remote-kpo"
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


def pod_security_labels(level: str) -> dict[str, str]:
    """Namespace labels that enforce `level` and warn and audit at `restricted`."""
    return {f"{POD_SECURITY_PREFIX}enforce": level,
            f"{POD_SECURITY_PREFIX}warn": "restricted",
            f"{POD_SECURITY_PREFIX}audit": "restricted"}


def limit_range_spec(deployment: Deployment) -> LimitRangeSpecArgsDict:
    """Per container: requests and limits for what it leaves unset, and the most it may ask
    (LimitRanger refuses a container whose limit or request is above `max`)."""
    defaults = deployment.pod_defaults
    return {"limits": [{"type": "Container",
                        "default_request": defaults.requests.model_dump(),
                        "default": defaults.limits.model_dump(),
                        "max": defaults.max.model_dump()}]}


def resource_quota_hard(deployment: Deployment, queued: bool = False) -> dict[str, str]:
    """The ResourceQuota's hard limits. Queued (components/queueing.py), the Deployment's
    ClusterQueue holds cpu, memory and GPUs instead, and the quota keeps the pod counts."""
    quota = deployment.quota
    compute = {} if queued else {
        "requests.cpu": quota.cpu,
        "requests.memory": quota.memory,
        # Extended resources are quota'd by request only.
        f"requests.{GPU_RESOURCE}": str(quota.gpu),
    }
    return {
        **compute,
        # Pods that have not finished, and (count/pods) every stored pod: Kubernetes' `pods`
        # does not count Succeeded and Failed ones (pkg/quota/v1/evaluator/core/pods.go).
        "pods": str(quota.pods),
        "count/pods": str(quota.total_pods),
    }


class DeploymentAccess(pulumi.ComponentResource):
    """Namespace, Role from the permission table, RoleBinding to `subject`, and what bounds the
    Deployment's pods (LimitRange, ResourceQuota, TenantAdmission), for one Deployment."""

    def __init__(self, name: str, deployment: Deployment, subject: SubjectArgsDict,
                 opts: Optional[pulumi.ResourceOptions] = None, queue: Optional[QueueSettings] = None):
        super().__init__("remote-kpo:index:DeploymentAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = str(deployment.namespace)  # config sets the default

        queueing_labels = {QUEUEING_NAMESPACE_LABEL: "true"} if queue else {}
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=object_metadata(namespace, deployment=deployment.name,
                                     labels={**pod_security_labels(deployment.pod_security), **queueing_labels}),
            opts=child,
        )
        # The name as an output of the Namespace, so what is made in it waits for it.
        namespace_name = self.namespace.metadata.apply(lambda _: namespace)
        in_namespace = object_metadata(ROLE_NAME, namespace_name, deployment=deployment.name)
        self.role = k8s.rbac.v1.Role(
            f"{name}-role",
            metadata=object_metadata(ROLE_NAME, namespace_name, deployment=deployment.name,
                                     labels={XCOM_LABEL: "true" if deployment.xcom else "false"}),
            rules=kpo_role_rules(deployment.xcom, queueing=queue is not None),
            opts=child,
        )
        # What bounds the Deployment's pods exists before the RoleBinding lets it make any (and
        # on destroy, outlives it).
        guards: list[pulumi.Resource] = [
            k8s.core.v1.LimitRange(
                f"{name}-limitrange",
                metadata={**in_namespace, "name": "remote-kpo-pod-defaults"},
                spec=limit_range_spec(deployment),
                opts=child,
            ),
            k8s.core.v1.ResourceQuota(
                f"{name}-quota",
                metadata={**in_namespace, "name": "remote-kpo-quota"},
                spec={"hard": resource_quota_hard(deployment, queued=queue is not None)},
                opts=child,
            ),
            TenantAdmission(f"{name}-admission", deployment, subject, namespace_name, in_namespace, opts=child),
        ]
        if queue is not None:
            # Its pods are queued (and so bounded) only once the LocalQueue exists.
            guards.append(DeploymentQueue(f"{name}-queue", deployment, namespace_name, queue, opts=child))
        self.role_binding = k8s.rbac.v1.RoleBinding(
            f"{name}-rolebinding",
            metadata=in_namespace,
            role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE_NAME},
            subjects=[subject],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role, *guards]),
        )

        self.namespace_name = namespace_name
        self.register_outputs({"namespace": self.namespace_name})
