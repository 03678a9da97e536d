"""The client settings every Kubernetes provider of this program gets (`remote-kpo:kubeClient`).

pulumi-kubernetes v4.25.0 (provider/pkg/provider/provider.go, Configure) puts the provider's
`kubeClientSettings` on the client-go config behind every request it makes: one dynamic client,
so one token bucket, for all its reads and writes (provider/pkg/clients/clients.go). Unset, it
takes PULUMI_K8S_CLIENT_QPS/BURST from the environment, else 50 QPS and a burst of 120 (not the
5 and 10 of its schema's description); set here, those variables no longer apply. A refresh
reads every object: at 50 QPS a stack of 2,000 objects waits on the bucket, not the API server
(bench/README.md, "Growth with the stack (issue 25)").
"""

import pulumi_kubernetes as k8s

from config import KubeClient


def client_settings(client: KubeClient) -> k8s.KubeClientSettingsArgsDict:
    return {"qps": client.qps, "burst": client.burst}
