"""GKE task identity (issue 16): Workload Identity for the namespace's `remote-kpo-task`.

The task's Google service account lets exactly that Kubernetes ServiceAccount act as it
(`roles/iam.workloadIdentityUser` on the account, for the member
`serviceAccount:<workload pool>[<namespace>/remote-kpo-task]`, the pool taken from the created
cluster so the binding waits for it), and the ServiceAccount is
annotated `iam.gke.io/gcp-service-account` with its email (GKE, "Authenticate to Google Cloud
APIs from GKE workloads": link Kubernetes ServiceAccounts to IAM,
https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity). Pods reach it
through the GKE metadata server every node runs (nodeConfig.workloadMetadataConfig GKE_METADATA).
What the account may read (a bucket, a dataset) is the user's to grant.
"""

from typing import Optional

import pulumi
import pulumi_gcp as gcp

from components.permissions import TASK_IDENTITY_BINDINGS, task_identity_subject

GKE_SERVICE_ACCOUNT_ANNOTATION = "iam.gke.io/gcp-service-account"


def service_account_resource(email: str) -> str:
    """projects/<project>/serviceAccounts/<email>: the account's own IAM policy, in the project
    its email names (config allows user-managed accounts only: name@project.iam...)."""
    project = email.split("@", 1)[1].split(".", 1)[0]
    return f"projects/{project}/serviceAccounts/{email}"


class GkeTaskIdentity(pulumi.ComponentResource):
    """workloadIdentityUser on the task's Google service account, for one ServiceAccount."""

    def __init__(self, name: str, *, email: str, workload_pool: pulumi.Input[str], namespace: str,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("remote-kpo:index:GkeTaskIdentity", name, None, opts)
        binding = TASK_IDENTITY_BINDINGS["gke"]
        # The workload pool is the cluster's (its project's), wherever the account lives.
        self.member = pulumi.Output.from_input(workload_pool).apply(
            lambda pool: task_identity_subject("gke", namespace, workload_pool=pool))
        gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity-user",
            service_account_id=service_account_resource(email),
            role=binding.grant,
            member=self.member,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.annotations = {GKE_SERVICE_ACCOUNT_ANNOTATION: email}
        self.register_outputs({"member": self.member})
