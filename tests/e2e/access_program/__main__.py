"""Applies DeploymentAccess, the component every cloud stack uses, with the RBAC subject each
cloud binds (GKE: the service account email as a User; EKS: the access entry's group; AKS: the
managed identity's principal id as a User), through the real engine to the local cluster.

Config `subjects`: [{name, namespace, kind, subject, xcom}]. REMOTE_KPO_ROOT points at the project.
"""

import os
import sys

import pulumi
import pulumi_kubernetes as k8s

sys.path.insert(0, os.environ["REMOTE_KPO_ROOT"])

from components.access import DeploymentAccess, rbac_subject  # noqa: E402
from config import Deployment  # noqa: E402

provider = k8s.Provider("local-cluster", cluster_identifier="remote-kpo-local")
for entry in pulumi.Config().require_object("subjects"):
    deployment = Deployment(name=entry["name"], namespace=entry["namespace"], xcom=entry["xcom"])
    DeploymentAccess(entry["namespace"], deployment, rbac_subject(entry["kind"], entry["subject"]),
                     opts=pulumi.ResourceOptions(providers=[provider]))
