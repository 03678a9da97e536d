"""What a KPO task needs to be admitted into a `podSecurity: restricted` namespace, one source of
truth for the `restrictedTask` output and for the XCom sidecar settings in the exported connection.

The restricted Pod Security Standard (https://kubernetes.io/docs/concepts/security/pod-security-standards/,
"Restricted") requires, beyond baseline: runAsNonRoot=true on the pod or every container, a
RuntimeDefault or Localhost seccomp profile on the pod or every container, and on every container
allowPrivilegeEscalation=false and capabilities dropping ALL (adding only NET_BIND_SERVICE).
"""

import copy
import json

from config import Deployment

RUNTIME_DEFAULT_SECCOMP = {"type": "RuntimeDefault"}
# Pod level: covers every container of the pod, the XCom sidecar too.
RESTRICTED_POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "seccompProfile": RUNTIME_DEFAULT_SECCOMP}
# Container level: the two rules restricted checks on each container only.
RESTRICTED_CONTAINER_SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# alpine's `nobody`: KPO's sidecar image runs as root by default, which runAsNonRoot makes the
# kubelet refuse to start; the sidecar only sleeps and reads /airflow/xcom/return.json.
SIDECAR_USER = 65534


def xcom_sidecar_security_context() -> dict:
    """The sidecar's container security context, restricted on its own: a task that sets no pod
    security context (`restrictedTask.securityContext`) still gets its sidecar admitted."""
    return {**copy.deepcopy(RESTRICTED_CONTAINER_SECURITY_CONTEXT), "runAsNonRoot": True,
            "runAsUser": SIDECAR_USER, "seccompProfile": dict(RUNTIME_DEFAULT_SECCOMP)}


def restricted_task() -> dict:
    """The `restrictedTask` output: what a task passes as KubernetesPodOperator's
    `security_context` and `container_security_context` (README: Restricted namespaces)."""
    return {"securityContext": copy.deepcopy(RESTRICTED_POD_SECURITY_CONTEXT),
            "containerSecurityContext": copy.deepcopy(RESTRICTED_CONTAINER_SECURITY_CONTEXT)}


def xcom_sidecar_extras(deployment: Deployment) -> dict[str, str]:
    """The Airflow connection extras KPO reads for its XCom sidecar, for a Deployment with `xcom`.

    apache-airflow-providers-cncf-kubernetes 10.25.0 (hooks/kubernetes.py) reads
    `xcom_sidecar_container_image` as a string and `xcom_sidecar_container_security_context`
    with json.loads: a JSON string, not an object; operators/pod.py build_pod_request_obj uses
    them unless the task passes its own.
    """
    if not deployment.xcom:
        return {}
    extras = {}
    if deployment.pod_security == "restricted":
        extras["xcom_sidecar_container_security_context"] = json.dumps(xcom_sidecar_security_context(),
                                                                       sort_keys=True)
    if deployment.xcom_sidecar_image:
        extras["xcom_sidecar_container_image"] = deployment.xcom_sidecar_image
    return extras
