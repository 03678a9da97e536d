"""Applies the GPU pool's Kubernetes objects with the components the cloud stacks use, through the
real engine to the local cluster: the EKS stack's `GpuNodePool` (a karpenter.sh/v1 NodePool) and
the AKS stack's `NvidiaDevicePlugin` (a DaemonSet), for the `gpuPool` of a stack file.

Config:
  gpuPool           the stack config's gpuPool object (camelCase keys, as in Pulumi.<stack>.yaml)
  nodeClassRef      the NodeClass the NodePool names; locally the KWOKNodeClass `default` that
                    scripts/local-cluster creates (EKS: the Auto Mode NodeClass)
  consolidateAfter  replaces the NodePool's disruption.consolidateAfter, so that a test sees an
                    emptied node go in seconds rather than the component's cloud value
REMOTE_KPO_ROOT points at the project.
"""

import os
import sys

import pulumi
import pulumi_kubernetes as k8s

sys.path.insert(0, os.environ["REMOTE_KPO_ROOT"])

from components.gpu import GpuNodePool, NvidiaDevicePlugin  # noqa: E402
from config import GpuPool  # noqa: E402

config = pulumi.Config()
pool = GpuPool.model_validate(config.require_object("gpuPool"))
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
# As the AKS stack applies it: on nodes labelled as GPU nodes, tolerating the GPU and spot taints.
NvidiaDevicePlugin("gpu", opts=pulumi.ResourceOptions(providers=[provider]))
