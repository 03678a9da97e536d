"""Pure builders: the kubeconfig and Airflow connection documents per cloud, and the
Dockerfile lines each cloud's exec plugin needs in the Astro Runtime image.

Exported kubeconfigs authenticate with an exec plugin (gke, eks, aks) so no short-lived token
can expire mid-task; only `existing` carries a long-lived ServiceAccount token.
"""

import base64
import json

EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"

# The static application id of the AKS AAD server (seed 002).
AKS_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
# Where the Astro Deployment's workload identity token is projected (seed 002).
AZURE_FEDERATED_TOKEN_FILE = "/var/run/secrets/azure/tokens/azure-identity-token"
# The exec credential plugin each cloud's kubeconfig runs; DOCKERFILE below installs it.
EXEC_PLUGINS = {"gke": "gke-gcloud-auth-plugin", "eks": "aws", "aks": "kubelogin"}


def exec_user(command: str, args: list[str], provide_cluster_info: bool) -> dict:
    """A kubeconfig user that runs an exec credential plugin."""
    return {
        "exec": {
            "apiVersion": EXEC_API_VERSION,
            "command": command,
            "args": args,
            "provideClusterInfo": provide_cluster_info,
            # Airflow workers and triggerers have no terminal to prompt on.
            "interactiveMode": "Never",
        }
    }


def gke_user() -> dict:
    """Seed 001: gke-gcloud-auth-plugin with the Deployment's Google identity."""
    return exec_user(EXEC_PLUGINS["gke"], [], provide_cluster_info=True)


def eks_user(region: str, cluster_name: str, access_role_arn: str) -> dict:
    """Seed 004: the AWS CLI mints a token as the access role the Deployment's role assumes."""
    args = ["--region", region, "eks", "get-token", "--cluster-name", cluster_name,
            "--role-arn", access_role_arn]
    return exec_user(EXEC_PLUGINS["eks"], args, provide_cluster_info=False)


def aks_user(client_id: str, tenant_id: str) -> dict:
    """Seed 002: kubelogin exchanges the projected federated token for an Entra ID token.

    --disable-environment-override: without it, `get-token` lets AZURE_CLIENT_ID,
    AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE (and AAD_LOGIN_METHOD) in the environment replace
    these flags (kubelogin pkg/internal/token/options.go, UpdateFromEnv, run after flag parsing),
    and the workload-identity webhook sets them in Astro's pods: the exchange could run as
    another identity than the one the RoleBinding names. Flag since kubelogin v0.1.7.
    """
    args = ["get-token", "--login", "workloadidentity", "--server-id", AKS_SERVER_ID,
            "--client-id", client_id, "--tenant-id", tenant_id,
            "--environment", "AzurePublicCloud",
            "--federated-token-file", AZURE_FEDERATED_TOKEN_FILE,
            "--disable-environment-override"]
    return exec_user(EXEC_PLUGINS["aks"], args, provide_cluster_info=False)


def token_user(token: str) -> dict:
    """`existing`: a long-lived ServiceAccount token (no cloud identity to exchange)."""
    return {"token": token}


def kubeconfig(*, cluster_name: str, server: str, ca_data: str, namespace: str,
               user_name: str, user: dict) -> dict:
    """A one-context kubeconfig whose current context runs in the Deployment's namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": cluster_name,
                      "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": cluster_name,
                      "context": {"cluster": cluster_name, "user": user_name, "namespace": namespace}}],
        "current-context": cluster_name,
    }


def airflow_connection(kubeconfig_doc: dict, namespace: str, extras: dict[str, str] | None = None) -> dict:
    """The Airflow Kubernetes connection with the kubeconfig inline as JSON (seed 001), plus
    `extras` (the XCom sidecar's: components/pod_security.py)."""
    return {
        "conn_type": "kubernetes",
        "extra": {"kube_config": kubeconfig_doc, "namespace": namespace, "in_cluster": False, **(extras or {})},
    }


def to_json(document: dict) -> str:
    return json.dumps(document, sort_keys=True)


_GCLOUD = """\
USER root
RUN apt-get update && apt-get install -y apt-transport-https ca-certificates gnupg curl \\
 && curl -sL https://packages.cloud.google.com/apt/doc/apt-key.gpg \\
  | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg \\
 && echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \\
  > /etc/apt/sources.list.d/google-cloud-sdk.list \\
 && apt-get update \\
 && apt-get install -y google-cloud-cli google-cloud-cli-gke-gcloud-auth-plugin \\
 && rm -rf /var/lib/apt/lists/*
USER astro
"""

_AWS_CLI = """\
USER root
RUN apt-get update && apt-get install -y curl unzip \\
 && curl -sSL "https://awscli.amazonaws.com/awscli-exe-linux-$(uname -m).zip" -o /tmp/awscliv2.zip \\
 && unzip -q /tmp/awscliv2.zip -d /tmp && /tmp/aws/install \\
 && rm -rf /tmp/aws /tmp/awscliv2.zip /var/lib/apt/lists/*
USER astro
"""

# `az aks install-cli` installs kubectl and kubelogin.
_AZURE_CLI = """\
USER root
RUN curl -sL https://aka.ms/InstallAzureCLIDeb | bash
RUN az aks install-cli
USER astro
"""

_NO_PLUGIN = "# Nothing to add: the kubeconfig authenticates with a ServiceAccount token.\n"

DOCKERFILE = {"gke": _GCLOUD, "eks": _AWS_CLI, "aks": _AZURE_CLI, "existing": _NO_PLUGIN}


def cluster_of(kubeconfig_doc: dict, context: str | None) -> tuple[str, str]:
    """(server, base64 CA) of `context` (default: current-context) in a parsed kubeconfig.

    Raises ValueError naming what is missing. A CA given as a file path is read and encoded.
    """
    name = context or kubeconfig_doc.get("current-context")
    if not name:
        raise ValueError("has no current-context; set existing.context")
    contexts = {c.get("name"): c.get("context", {}) for c in kubeconfig_doc.get("contexts") or []}
    if name not in contexts:
        raise ValueError(f"has no context {name!r} (it has: {', '.join(map(str, contexts)) or 'none'})")
    clusters = {c.get("name"): c.get("cluster", {}) for c in kubeconfig_doc.get("clusters") or []}
    cluster = clusters.get(contexts[name].get("cluster"))
    if not cluster or not cluster.get("server"):
        raise ValueError(f"context {name!r} names no cluster with a server")
    ca_data = cluster.get("certificate-authority-data")
    if not ca_data and cluster.get("certificate-authority"):
        with open(cluster["certificate-authority"], "rb") as ca_file:
            ca_data = base64.b64encode(ca_file.read()).decode()
    if not ca_data:
        raise ValueError(f"cluster of context {name!r} has no certificate authority")
    return cluster["server"], ca_data
