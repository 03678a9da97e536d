"""Violating resources for the policy rule task-identity-one-service-account (issue 16): each a
task identity bound wider than one namespace's remote-kpo-task. Builders take the example
resources like the others in test_policy.VIOLATIONS, and make their own (the example stacks have
no task identity)."""

import json

WIU = "roles/iam.workloadIdentityUser"
TASK_GSA_ID = "projects/acme-data/serviceAccounts/etl-tasks@acme-data.iam.gserviceaccount.com"
POOL = "acme-platform.svc.id.goog"
TASK_MEMBER = f"serviceAccount:{POOL}[kpo-etl/remote-kpo-task]"
ISSUER = "https://westeurope.oic.prod-aks.azure.com/tenant/cluster-guid/"


def _sa_member(member: str):
    return lambda ex: ("gcp:serviceaccount/iAMMember:IAMMember",
                       {"serviceAccountId": TASK_GSA_ID, "role": WIU, "member": member})


def _federated(subject: str, name: str = "remote-kpo-task-kpo-tasks-kpo-etl", **extra):
    return lambda ex: ("azure-native:managedidentity:FederatedIdentityCredential", {
        "resourceGroupName": "rg", "resourceName": "etl-task", "federatedIdentityCredentialResourceName": name,
        "issuer": ISSUER, "subject": subject, "audiences": ["api://AzureADTokenExchange"], **extra})


def _annotated(typ: str, name: str, annotation: str):
    return lambda ex: (typ, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
        "name": name, "namespace": "kpo-etl", "annotations": {annotation: "etl-tasks@acme-data.iam.gserviceaccount.com"}}})


TASK_IDENTITY_VIOLATIONS = {
    "gke-member-default-service-account": _sa_member(f"serviceAccount:{POOL}[kpo-etl/default]"),
    "gke-member-whole-namespace": _sa_member(
        f"principalSet://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/{POOL}/namespace/kpo-etl"),
    "gke-member-a-user": _sa_member("user:someone@acme.example"),
    "gke-binding-with-a-second-account": lambda ex: ("gcp:serviceaccount/iAMBinding:IAMBinding", {
        "serviceAccountId": TASK_GSA_ID, "role": WIU,
        "members": [TASK_MEMBER, f"serviceAccount:{POOL}[kpo-etl/airflow]"]}),
    "gke-account-policy": lambda ex: ("gcp:serviceaccount/iAMPolicy:IAMPolicy", {
        "serviceAccountId": TASK_GSA_ID,
        "policyData": json.dumps({"bindings": [{"role": WIU, "members": [f"serviceAccount:{POOL}[kpo-etl/default]"]}]})}),
    "gke-project-level-grant": lambda ex: ("gcp:projects/iAMMember:IAMMember",
                                           {"project": "acme-data", "role": WIU, "member": TASK_MEMBER}),
    "eks-association-for-default": lambda ex: ("aws:eks/podIdentityAssociation:PodIdentityAssociation", {
        "clusterName": "kpo-tasks", "namespace": "kpo-etl", "serviceAccount": "default",
        "roleArn": "arn:aws:iam::123456789012:role/kpo-etl-task"}),
    "aks-task-credential-for-default": _federated("system:serviceaccount:kpo-etl:default"),
    "aks-subject-wildcard": _federated("system:serviceaccount:kpo-etl:*", name="astro-deployment"),
    "aks-claims-matching-expression": _federated(
        "system:serviceaccount:kpo-etl:remote-kpo-task",
        claimsMatchingExpression={"value": "claims['sub'] startswith 'system:serviceaccount:kpo-etl:'",
                                  "languageVersion": 1}),
    "k8s-default-patched-with-gke-identity": _annotated(
        "kubernetes:core/v1:ServiceAccountPatch", "default", "iam.gke.io/gcp-service-account"),
    "k8s-other-account-with-azure-identity": _annotated(
        "kubernetes:core/v1:ServiceAccount", "airflow", "azure.workload.identity/client-id"),
}
