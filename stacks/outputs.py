"""The stack outputs every cloud exports (design: Outputs), from per-Deployment parts."""

from dataclasses import dataclass, field

import pulumi

from components import disruption, gpu, janitor
from components import kubeconfig as kc
from components import pod_security, queueing
from config import Deployment, StackConfig


@dataclass
class DeploymentEndpoint:
    """What one Deployment's kubeconfig needs that only the cloud builder knows."""

    deployment: Deployment
    namespace: pulumi.Input[str]
    user: pulumi.Input[dict]  # kubeconfig users[].user: an exec plugin or a token
    # Cloud-specific public values added to its `deployments` entry (e.g. awsAccessRoleArn).
    details: dict[str, pulumi.Input[str]] = field(default_factory=dict)


def stack_outputs(cfg: StackConfig, cluster_name: str, endpoint: pulumi.Input[str],
                  ca_data: pulumi.Input[str], endpoints: list[DeploymentEndpoint]) -> dict:
    kubeconfigs: dict[str, pulumi.Output[str]] = {}
    connections: dict[str, pulumi.Output[str]] = {}
    deployments: dict[str, dict] = {}
    for item in endpoints:
        d = item.deployment
        doc = pulumi.Output.all(endpoint, ca_data, item.namespace, item.user).apply(
            lambda args, d=d: kc.kubeconfig(
                cluster_name=cluster_name, server=args[0], ca_data=args[1], namespace=args[2],
                user_name=f"{cluster_name}-{d.name}", user=args[3]))
        kubeconfigs[d.name] = pulumi.Output.secret(doc.apply(kc.to_json))
        extras = pod_security.xcom_sidecar_extras(d)
        connections[d.name] = pulumi.Output.secret(pulumi.Output.all(doc, item.namespace).apply(
            lambda args, extras=extras: kc.to_json(kc.airflow_connection(args[0], args[1], extras))))
        deployments[d.name] = {"namespace": item.namespace, "connectionId": d.airflow_conn_id,
                               "envVar": d.env_var, "janitor": janitor.janitor_settings(cfg, d),
                               **queueing.queue_details(cfg, d), **item.details}
    outputs = {
        "cloud": cfg.cloud,
        "clusterName": cluster_name,
        "clusterEndpoint": endpoint,
        "clusterCaCertificate": ca_data,
        "deployments": deployments,
        "kubeconfigs": pulumi.Output.secret(kubeconfigs),
        "airflowConnections": pulumi.Output.secret(connections),
        "kubeconfig": kubeconfigs[cfg.deployments[0].name],
        "dockerfile": kc.DOCKERFILE[cfg.cloud],
    }
    # Public: what every task passes to keep its node while it runs (README, Tasks that outlive
    # their node's plans), and what a GPU task passes (README, GPU tasks); with queueing, both
    # name the queue and wait in line (README, Queueing).
    task, gpu_task = queueing.task_shapes(
        cfg, disruption.task_shape(cfg.cloud), gpu.gpu_task(cfg.cloud, cfg.gpu_pool) if cfg.gpu_pool.enabled else None)
    outputs["task"] = task
    if gpu_task is not None:
        outputs["gpuTask"] = gpu_task
    if any(d.pod_security == "restricted" for d in cfg.deployments):
        # Public: what a task passes to be admitted under restricted (README, Restricted namespaces).
        outputs["restrictedTask"] = pod_security.restricted_task()
    return outputs
