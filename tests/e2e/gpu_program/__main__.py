"""Applies the node pools' Kubernetes objects with the components the cloud stacks use, through the
real engine to the local cluster: the EKS stack's `TaskNodePool` and `GpuNodePool` (karpenter.sh/v1
NodePools) and the AKS stack's `NvidiaDevicePlugin` (a DaemonSet), for the `taskPool` and
`gpuPool` of a stack file.

Config:
  gpuPool           the stack config's gpuPool object (camelCase keys, as in Pulumi.<stack>.yaml)
  taskPool          the stack config's taskPool object; without it no task NodePool (the GPU
                    proof's pods then meet the GPU pool alone, as Karpenter words its events)
  nodeClassRef      the NodeClass the NodePools name; locally the KWOKNodeClass `default` that
                    scripts/local-cluster creates (EKS: the Auto Mode NodeClass)
  consolidateAfter  replaces the NodePools' disruption.consolidateAfter, so that a test sees an
                    emptied node go in seconds rather than the components' cloud values
REMOTE_KPO_ROOT points at the project.
"""

import os
import sys

import pulumi
import pulumi_kubernetes as k8s

sys.path.insert(0, os.environ["REMOTE_KPO_ROOT"])

from components.disruption import TaskNodePool  # noqa: E402
from components.gpu import GpuNodePool, NvidiaDevicePlugin  # noqa: E402
from config import GpuPool, TaskPool  # noqa: E402

config = pulumi.Config()
pool = GpuPool.model_validate(config.require_object("gpuPool"))
task_pool = config.get_object("taskPool")
consolidate_after = config.require("consolidateAfter")


def shorten_consolidation(args: pulumi.ResourceTransformArgs):
    if args.type_ != "kubernetes:karpenter.sh/v1:NodePool":
        return None
    props = dict(args.props)
    props["spec"] = {**props["spec"],
                     "disruption": {**props["spec"]["disruption"], "consolidateAfter": consolidate_after}}
    return pulumi.ResourceTransformResult(props, args.opts)


provider = k8s.Provider("local-cluster", cluster_identifier="remote-kpo-local")
GpuNodePool("gpu", pool, config.require_object("nodeClassRef"), pool.gpus_per_node,
            opts=pulumi.ResourceOptions(providers=[provider], transforms=[shorten_consolidation]))
if task_pool is not None:
    TaskNodePool("tasks", TaskPool.model_validate(task_pool), config.require_object("nodeClassRef"),
                 opts=pulumi.ResourceOptions(providers=[provider], transforms=[shorten_consolidation]))
# As the AKS stack applies it: on nodes labelled as GPU nodes, tolerating the GPU and spot taints.
NvidiaDevicePlugin("gpu", opts=pulumi.ResourceOptions(providers=[provider]))
