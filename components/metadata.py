"""The metadata every Kubernetes object of the program carries: remote-kpo's by label, this
stack's by annotation. A leaf module, so every component can import it."""

from collections.abc import Mapping
from typing import Optional

import pulumi
from pulumi_kubernetes.meta.v1 import ObjectMetaArgsDict

MANAGED_BY = {"app.kubernetes.io/managed-by": "remote-kpo"}
DEPLOYMENT_LABEL = "remote-kpo/deployment"
# Which stack made an object, `<organization>/<project>/<stack>`: on `existing`, `up` refuses a
# namespace another stack's annotation names before it changes anything (components/ownership.py).
STACK_ANNOTATION = "remote-kpo/stack"


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
