"""What a hand-written stack might do wrong: a cluster-wide wildcard role for a Deployment."""

import pulumi
import pulumi_kubernetes as k8s

provider = k8s.Provider("local-cluster", cluster_identifier="remote-kpo-local")
k8s.rbac.v1.ClusterRole(
    "kpo-everything",
    rules=[{"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}],
    opts=pulumi.ResourceOptions(provider=provider),
)
