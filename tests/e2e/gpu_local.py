"""The local GPU pool (test_gpu_real.py, bench/gpu.py): the GPU objects of components/gpu.py applied
by the real engine (gpu_program/) to a local cluster running Karpenter's kwok provider
(`REMOTE_KPO_KARPENTER=1 scripts/local-cluster up`), for the `gpuPool` of Pulumi.eks.yaml.
"""

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from components.gpu import NODE_POOL_NAME
from config import GpuPool
from realenv import ROOT, Pulumi

# The KWOKNodeClass scripts/local-cluster creates, in place of EKS Auto Mode's NodeClass.
KWOK_NODE_CLASS_REF = {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"}
POOL_LABEL = "karpenter.sh/nodepool"        # Karpenter labels each node with its NodePool
PROGRAM_NAMESPACE = "remote-kpo-gpu-check"  # gpu_program/Pulumi.yaml's name


def eks_gpu_pool_config() -> dict:
    """The gpuPool of the example EKS stack, as its stack file spells it."""
    return yaml.safe_load((ROOT / "Pulumi.eks.yaml").read_text())["config"]["remote-kpo:gpuPool"]


def eks_gpu_pool() -> GpuPool:
    return GpuPool.model_validate(eks_gpu_pool_config())


def start_karpenter(cluster_env: dict) -> None:
    """Karpenter on the session cluster (opt-in: the other tests run without it)."""
    subprocess.run([str(ROOT / "scripts/local-cluster"), "up"], env={**cluster_env, "REMOTE_KPO_KARPENTER": "1"},
                   check=True, stdout=subprocess.DEVNULL)


def up_gpu_program(env: dict, work: Path, consolidate_after: str, pool_overrides: dict | None = None,
                   task_pool: dict | None = None) -> Pulumi:
    """`pulumi up` of gpu_program/ (stack `gpu`, its own state in `work`), ready to destroy; the
    gpuPool of Pulumi.eks.yaml with `pool_overrides` (camelCase keys) on top, and with `task_pool`
    the task NodePool for that taskPool."""
    project = work / "gpu-program"
    shutil.copytree(ROOT / "tests/e2e/gpu_program", project)
    (project / ".venv").symlink_to(ROOT / ".venv")
    (work / "gpu-state").mkdir()
    cli = Pulumi(project, {**env, "PULUMI_BACKEND_URL": f"file://{work / 'gpu-state'}", "REMOTE_KPO_ROOT": str(ROOT)})
    config = {f"{PROGRAM_NAMESPACE}:gpuPool": {**eks_gpu_pool_config(), **(pool_overrides or {})},
              f"{PROGRAM_NAMESPACE}:nodeClassRef": KWOK_NODE_CLASS_REF,
              f"{PROGRAM_NAMESPACE}:consolidateAfter": consolidate_after}
    if task_pool is not None:
        config[f"{PROGRAM_NAMESPACE}:taskPool"] = task_pool
    (project / "Pulumi.gpu.yaml").write_text(json.dumps({"config": config}))
    cli.run("stack", "init", "gpu")
    cli.run("up", "--yes", "--stack", "gpu")
    return cli


def is_pool_node(node: dict, pool: str = NODE_POOL_NAME) -> bool:
    return node["metadata"].get("labels", {}).get(POOL_LABEL) == pool


def pod_phase(pod: dict) -> str | None:
    return pod.get("status", {}).get("phase")
