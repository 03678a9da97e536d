"""EKS task identity (issue 16): an EKS Pod Identity association for the namespace's
`remote-kpo-task`.

The role is the user's (`taskIdentity.awsRoleArn`). Its trust policy must let the Pod Identity
service assume and tag it: principal `pods.eks.amazonaws.com`, actions `sts:AssumeRole` and
`sts:TagSession` (EKS user guide, "Create IAM role with trust policy required by EKS Pod
Identity", https://docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html). EKS Auto Mode
runs the Pod Identity Agent itself ("Set up the Amazon EKS Pod Identity Agent": not needed on
Auto Mode clusters, https://docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html);
node groups a DAG makes (ephemeralNodePools) have it from the eks-pod-identity-agent add-on, which
EksNodeGroupSupport adds. The role must be in the cluster's account (config.check_task_role_accounts).
Creating the association needs iam:PassRole on the role for whoever runs `pulumi up`.
"""

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.permissions import TASK_SERVICE_ACCOUNT

POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"


def pod_identity_trust_policy() -> dict:
    """The trust policy a task role needs (documentation and tests; the role is the user's)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": POD_IDENTITY_SERVICE},
        "Action": ["sts:AssumeRole", "sts:TagSession"]}]}


@dataclass
class EksTaskIdentityArgs:
    cluster_name: pulumi.Input[str]
    namespace: str
    role_arn: str


class EksTaskIdentity(pulumi.ComponentResource):
    """One Pod Identity association: this namespace's remote-kpo-task, this role, nothing else."""

    def __init__(self, name: str, args: EksTaskIdentityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:EksTaskIdentity", name, None, opts)
        self.association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=args.cluster_name,
            namespace=args.namespace,
            service_account=TASK_SERVICE_ACCOUNT,
            role_arn=args.role_arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"associationArn": self.association.association_arn})
