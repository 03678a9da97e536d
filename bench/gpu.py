"""Benchmark and the local GPU demo: a GPU KPO task on a pool at zero, from submission to its pod
Running, and from the task's end to its node's removal.

    .venv/bin/python bench/gpu.py [--repeat 3] [--consolidate-after 5s]

Brings up a private local cluster with Karpenter's kwok provider (REMOTE_KPO_KARPENTER=1; ports from
REMOTE_KPO_APISERVER_PORT, REMOTE_KPO_ETCD_PORT, REMOTE_KPO_ETCD_PEER_PORT, default
27443/27379/27380, never the dev, test or bench/kpo.py cluster's), applies the dev stack and the GPU
program of test_gpu_real.py (tests/e2e/gpu_program: the components' NodePool and device plugin for
Pulumi.eks.yaml's gpuPool) with the real Pulumi engine, then runs the README's GPU task (`gpuTask`
shape) in Airflow (`dag.test()`) through the ml-training Deployment's exported connection, --repeat
times, each on a pool back at zero. Prints each step as it starts (stderr), then a table; stops and
wipes the cluster at the end. Not part of `make test`.

The intervals that set these numbers, shortened locally (the cloud's are in brackets):
  Karpenter BATCH_IDLE_DURATION 1s, BATCH_MAX_DURATION 2s (scripts/local-cluster) [1s, 10s]
  NodePool consolidateAfter      --consolidate-after (components/gpu.py: CONSOLIDATE_AFTER)
  kwok node start-up             none: a fake node is Ready at once [a GPU node boots in minutes]
  kwok pod runtime               1s (scripts/go/kwok/stages.yaml)
So the numbers measure Airflow, KPO, the scheduler and Karpenter's own decisions, not a cloud.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from airflow_runner import Runner, migrated_airflow_env  # noqa: E402
from bench.tables import print_table  # noqa: E402
from components.gpu import CONSOLIDATE_AFTER, gpu_task  # noqa: E402
from gpu_local import eks_gpu_pool, is_pool_node, pod_phase, up_gpu_program  # noqa: E402
from realenv import bench_cluster_base, dev_stack_outputs, script_env  # noqa: E402
from watch import Watch  # noqa: E402

DEPLOYMENT = "ml-training"
GPU_DAG = "kpo_gpu__kpo_ml_training"
LIMIT = 300


# Below the ephemeral range and apart from every other cluster's (tests/test_ports.py); Karpenter
# and kwok take the API server's port + 1 to + 4.
PORTS = (27443, 27379, 27380)
STARTED = time.monotonic()


def say(step: str) -> None:
    """A progress line on stderr (the table goes to stdout): the run takes minutes."""
    print(f"bench/gpu.py: {step} ({time.monotonic() - STARTED:.0f}s)", file=sys.stderr, flush=True)


def one_run(runner: Runner, barrier: str, pods: Watch, nodes: Watch) -> dict:
    """Release one GPU task on a pool at zero; wait for its node to go. Seconds per step."""
    runner.reach(barrier)
    known = {e.name for e in pods.events()}
    runner.go(barrier)
    created = pods.wait_for(lambda e: e.name not in known and e.type == "ADDED", LIMIT, "the GPU task's pod")
    pod = created.name
    running = pods.wait_for(lambda e: e.name == pod and pod_phase(e.object) == "Running", LIMIT, "pod Running")
    node = running.object["spec"]["nodeName"]
    node_added = nodes.wait_for(lambda e: e.name == node and e.type == "ADDED", LIMIT, "the pod's node")
    pod_gone = pods.wait_for(lambda e: e.name == pod and e.type == "DELETED", LIMIT, "pod deleted")
    node_gone = nodes.wait_for(lambda e: e.name == node and e.type == "DELETED", LIMIT, "node removed")
    assert is_pool_node(node_added.object), node_added.object["metadata"]
    return {"pod": pod, "created": created.at, "node": node_added.at, "running": running.at,
            "pod_gone": pod_gone.at, "node_gone": node_gone.at}


def row(what: str, values: list[float]) -> list[str]:
    values = sorted(values)
    return [what, str(len(values)), f"{values[0]:.1f}", f"{statistics.median(values):.1f}", f"{values[-1]:.1f}"]


TABLE_HEADER = ["what is timed", "n", "min s", "median s", "max s"]


def bench(env: dict, work: Path, repeat: int, consolidate_after: str) -> list[list[str]]:
    say("pulumi up: the dev stack")
    outputs = dev_stack_outputs(env, work)
    say("pulumi up: the GPU program (Karpenter NodePool, device plugin)")
    up_gpu_program(env, work, consolidate_after)
    say("Airflow: a migrated database, then a warm-up task")
    namespace = outputs["deployments"][DEPLOYMENT]["namespace"]
    airflow = migrated_airflow_env(outputs, [DEPLOYMENT], env["PATH"], work / "airflow",
                                   REMOTE_KPO_E2E_GPU_TASK=json.dumps(gpu_task("eks", eks_gpu_pool())))
    steps = ["kpo_warmup"] + [s for i in range(repeat) for s in (f"@run{i}", GPU_DAG)]
    runner = Runner(airflow, work, steps)
    with Watch(env, "pods", "-n", namespace) as pods, Watch(env, "nodes") as nodes:
        timings = []
        for i in range(repeat):
            say(f"run {i + 1} of {repeat}: a GPU task on the pool at zero, until its node is removed")
            timings.append(one_run(runner, f"run{i}", pods, nodes))
        runs = [run for run in runner.finish() if run["dag_id"] == GPU_DAG]
    # Airflow's own record of each task: when it started (submission) and ended.
    tasks = {run["tasks"]["run_pod"]["xcom"]["pod_name"]: run["tasks"]["run_pod"] for run in runs}
    assert all(task["state"] == "success" for task in tasks.values()), tasks
    return [
        row("task start -> pod Running", [t["running"] - tasks[t["pod"]]["start"] for t in timings]),
        row("  pod created -> Karpenter's GPU node created", [t["node"] - t["created"] for t in timings]),
        row("  pod created -> pod Running on that node", [t["running"] - t["created"] for t in timings]),
        row("task end -> node removed", [t["node_gone"] - tasks[t["pod"]]["end"] for t in timings]),
        row("  pod deleted -> node removed", [t["node_gone"] - t["pod_gone"] for t in timings]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--consolidate-after", default="5s")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    (work / "airflow").mkdir()
    base = bench_cluster_base(work, PORTS, REMOTE_KPO_KARPENTER="1")
    say(f"toolchain, then a local cluster with Karpenter in {work}")
    subprocess.run([str(ROOT / "scripts/toolchain")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(ROOT / "scripts/local-cluster"), "up"], env=base, check=True, stdout=subprocess.DEVNULL)
    try:
        rows = bench(script_env(base), work, args.repeat, args.consolidate_after)
    finally:
        say("stopping and wiping the cluster")
        subprocess.run([str(ROOT / "scripts/local-cluster"), "down"], env=base, check=True,
                       stdout=subprocess.DEVNULL)
    print(f"GPU KPO task on a pool at zero (Karpenter v1.15.0 kwok provider); {os.cpu_count()} cores")
    print(f"intervals: BATCH_IDLE_DURATION=1s BATCH_MAX_DURATION=2s, consolidateAfter={args.consolidate_after} "
          f"(cloud: {CONSOLIDATE_AFTER}), kwok pod runtime 1s, no node boot time")
    print_table(TABLE_HEADER, rows)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
