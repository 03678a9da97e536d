"""Which stack a namespace belongs to: a stack never takes over another's (issue 19).

pulumi-kubernetes 4.25 creates an object with a server-side apply PATCH, never a POST, so an
object that already exists under the same name is adopted, not refused ("we always send a PATCH
request during creates with SSA enabled. This means that we currently always upsert the
object": provider/pkg/await/await.go, Creation), and the adopting stack's `destroy` deletes it.
Every object the program makes carries STACK_ANNOTATION (components/access.py), so:

- on `existing`, where the program can read the cluster before it registers anything, the
  namespaces the config names are checked first (stacks/existing.py): one another stack's
  annotation names, or one remote-kpo did not make, stops the program with the key;
- on every cloud, server-side apply backs this up at the first such object: each resource
  applies as a field manager of its own (`pulumi-kubernetes-<random>`, kept in state:
  provider/pkg/provider/provider.go, fieldManagerName) without force (await.go, patchForce:
  only `pulumi.com/patchForce`, PULUMI_K8S_ENABLE_PATCH_FORCE or a preview force), and applying
  another value to an annotation another manager set is a conflict the API server refuses.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from components.metadata import MANAGED_BY, STACK_ANNOTATION
from config import NAMESPACE, ConfigError, Deployment


@dataclass(frozen=True)
class LiveNamespace:
    """What the cluster says about a namespace of the same name."""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def claim_namespaces(deployments: list[Deployment], live: Mapping[str, LiveNamespace], stack: str) -> list[str]:
    """Check the Deployments' namespaces against those the cluster has. Returns a warning for
    each one remote-kpo made before namespaces recorded their stack (this stack claims it: see
    README, "Several stacks on one cluster"); raises ConfigError, one line per Deployment, when
    a namespace belongs to another stack or was not made by remote-kpo."""
    refusals, warnings = [], []
    for i, deployment in enumerate(deployments):
        namespace = deployment.namespace_name
        found = live.get(namespace)
        if found is None:
            continue
        key = f"{NAMESPACE}:deployments[{i}].namespace"
        owner = found.annotations.get(STACK_ANNOTATION)
        if owner == stack:
            continue  # this stack's own, e.g. made by an `up` that was killed before it recorded it
        if owner:
            refusals.append(f"{key}: namespace {namespace} belongs to stack {owner} on this cluster; give this "
                            "Deployment another `namespace`, or destroy that stack first")
        elif not MANAGED_BY.items() <= found.labels.items():
            refusals.append(f"{key}: namespace {namespace} exists and was not made by remote-kpo; give this "
                            "Deployment another `namespace` (a stack's `destroy` deletes its namespaces)")
        else:
            warnings.append(f"{key}: namespace {namespace} was made by remote-kpo before namespaces named their "
                            f"stack; this stack now claims it ({STACK_ANNOTATION}: {stack}). If another stack "
                            "lists it too, that stack will be refused: give one of them another `namespace`")
    if refusals:
        raise ConfigError("\n".join(refusals))
    return warnings
