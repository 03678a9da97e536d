"""The access matrix every Deployment identity must pass, asked of the API server's authorizer.

The allowed side is the design's permission table written out, not read from the code, so a
wrong row in components/permissions.py fails here. The denied side is the list scripts/verify
asks too (components/permissions.py MUST_DENY_*): one list of what must never be allowed.
"""

import re
from pathlib import Path

from components.permissions import MUST_DENY_CLUSTER_WIDE, MUST_DENY_IN_NAMESPACE
from realenv import can_i

ALLOWED = [("list", "pods"), ("create", "pods"), ("get", "pods"), ("patch", "pods"),
           ("delete", "pods"), ("get", "pods/log"), ("list", "events"), ("watch", "events"),
           ("list", "resourcequotas")]
XCOM = [("create", "pods/exec"), ("get", "pods/exec")]


def matrix_failures(kubectl, kubeconfig: Path, namespace: str, other_namespaces: list[str],
                    xcom: bool, env: dict | None = None) -> list[str]:
    """Every way the identity's access differs from the table (empty when it matches)."""
    failures = []

    def expect(verb, resource, ns, allowed):
        if can_i(kubectl, kubeconfig, verb, resource, ns, env) != allowed:
            failures.append(f"{'denied' if allowed else 'allowed'}: {verb} {resource} in {ns or 'cluster scope'}")

    for verb, resource in ALLOWED:
        expect(verb, resource, namespace, True)
    for verb, resource in XCOM:
        expect(verb, resource, namespace, xcom)
    for verb, resource in MUST_DENY_IN_NAMESPACE:
        expect(verb, resource, namespace, False)
    for other in other_namespaces:
        for verb, resource in ALLOWED + XCOM:
            expect(verb, resource, other, False)
    for verb, resource in MUST_DENY_CLUSTER_WIDE:
        expect(verb, resource, None, False)
    # Pods across all namespaces are a cluster-scope request.
    result = kubectl("auth", "can-i", "list", "pods", "--all-namespaces", kubeconfig=kubeconfig, check=False, env=env)
    if result.stdout.strip() != "no":
        failures.append(f"allowed: list pods in all namespaces ({result.stdout.strip()})")
    return failures


# Rows every authenticated user has (system:basic-user, system:discovery): not the Deployment's.
_EVERYONE = re.compile(r"^selfsubject\w+\.authorization\.k8s\.io$|^selfsubjectreviews\.authentication\.k8s\.io$")


def namespace_grants(kubectl, kubeconfig: Path, namespace: str, env: dict | None = None) -> dict:
    """`kubectl auth can-i --list` in the namespace: resource -> sorted verbs, minus the rows
    every authenticated user has and the non-resource URLs."""
    listing = kubectl("auth", "can-i", "--list", "--namespace", namespace, kubeconfig=kubeconfig, env=env).stdout
    grants = {}
    for line in listing.splitlines()[1:]:
        match = re.match(r"^(\S+)\s+\[\]\s+\[\]\s+\[(.*)\]$", line.strip())
        if match and not _EVERYONE.match(match.group(1)):
            grants[match.group(1)] = sorted(match.group(2).split())
    return grants


def table_grants(xcom: bool) -> dict:
    grants = {"pods": ["create", "delete", "get", "list", "patch"], "pods/log": ["get"],
              "events": ["list", "watch"], "resourcequotas": ["list"]}
    if xcom:
        grants["pods/exec"] = ["create", "get"]
    return grants
