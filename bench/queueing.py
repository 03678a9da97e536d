"""Benchmark: N GPU tasks sent at once to a Deployment whose quota is Q GPUs (queueing on): how long
each waited from its submission to its start, and how busy the quota's GPUs were, against the
ideal (tasks back to back, Q at a time, no gap).

    .venv/bin/python bench/queueing.py [--tasks 6] [--quota 2] [--runtime 10]

Brings up a private local cluster with Kueue (REMOTE_KPO_KUEUE=1; ports from
REMOTE_KPO_APISERVER_PORT, REMOTE_KPO_ETCD_PORT, REMOTE_KPO_ETCD_PEER_PORT, default
29443/29379/29380, never the dev, test or another bench's cluster) and a fake GPU node with --quota
GPUs, labelled and tainted as the README asks of an `existing` cluster's GPU nodes; applies a stack
(`cloud: existing`, `queueing` on, one Deployment with `quota.gpu` --quota) with the real Pulumi
engine; then --tasks Airflow processes (`dag.test()`) each send the README's GPU task (the stack's
`gpuTask` shape) through the Deployment's exported connection, released together. Each task's
container runs --runtime seconds (kwok). Prints each step as it starts (stderr), then the tables;
stops and wipes the cluster at the end. Not part of `make test`.

What it leaves out: a GPU node's start (always there, as on a pool that is up; bench/gpu.py times
Karpenter's from zero) and image pulls. So the gap to the ideal is Kueue's admission, KPO's polling
(every second while it waits to start, then its pod-completion check) and the scheduler.
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

from airflow_runner import migrated_airflow_env  # noqa: E402
from bench.tables import print_table  # noqa: E402
from components.gpu import GPU_LABELS, GPU_RESOURCE, GPU_TAINT  # noqa: E402
from queue_local import lives, start_airflow  # noqa: E402
from realenv import Pulumi, backend_url, bench_cluster_base, copy_project, script_env  # noqa: E402
from watch import Watch  # noqa: E402

DEPLOYMENT = "q-bench"
NODE = "queue-bench-gpu-0"
LIMIT = 600
# Below the ephemeral range and apart from every other cluster's (tests/test_ports.py); kwok,
# Karpenter and Kueue take the API server's port + 1 to + 6.
PORTS = (29443, 29379, 29380)
STARTED = time.monotonic()


def say(step: str) -> None:
    """A progress line on stderr (the tables go to stdout): the run takes minutes."""
    print(f"bench/queueing.py: {step} ({time.monotonic() - STARTED:.0f}s)", file=sys.stderr, flush=True)


def gpu_node(gpus: int) -> dict:
    """A fake node (kwok plays it) with `gpus` GPUs, the GPU pool's label and taint (README, GPU
    tasks on `existing`)."""
    resources = {"cpu": "32", "memory": "128Gi", "pods": "110", GPU_RESOURCE: str(gpus)}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", **GPU_LABELS}},
            "spec": {"taints": [GPU_TAINT]},
            "status": {"capacity": resources, "allocatable": resources}}


def up_stack(env: dict, work: Path, quota: int) -> dict:
    project = copy_project(work / "project")
    (work / "state").mkdir()
    cli = Pulumi(project, {**env, "PULUMI_BACKEND_URL": backend_url(work / "state")})
    cli.write_stack("queue", {
        "cloud": "existing", "clusterName": "remote-kpo-queue-bench", "gpuPool": {"enabled": True},
        "queueing": {"enabled": True},
        "deployments": [{"name": DEPLOYMENT, "xcom": False,
                         "quota": {"gpu": quota}}]})
    cli.run("stack", "init", "queue")
    cli.run("up", "--yes", "--skip-preview", "--stack", "queue")
    return cli.outputs("queue")


def bench(env: dict, work: Path, tasks: int, quota: int, runtime: int) -> None:
    kubectl = lambda *args, stdin=None: subprocess.run(  # noqa: E731
        ["kubectl", *args], env=env, input=stdin, text=True, check=True, capture_output=True)
    kubectl("apply", "-f", "-", stdin=json.dumps(gpu_node(quota)))
    kubectl("wait", "--for=condition=Ready", f"node/{NODE}", "--timeout=60s")
    say(f"pulumi up: a queued Deployment with a quota of {quota} GPU(s)")
    outputs = up_stack(env, work, quota)
    info = outputs["deployments"][DEPLOYMENT]
    say(f"Airflow: a migrated database, then {tasks} processes, each warming up")
    template = migrated_airflow_env(outputs, [DEPLOYMENT], env["PATH"], work / "template",
                                    REMOTE_KPO_E2E_GPU_TASK=json.dumps(outputs["gpuTask"]))
    gpu_dag = f"kpo_gpu__{info['connectionId']}"
    runners = [start_airflow(template, work / f"airflow-{i}", f"{runtime}s", ["kpo_warmup", "@go", gpu_dag])
               for i in range(tasks)]
    with Watch(env, "pods", "-n", info["namespace"]) as pods:
        for runner in runners:
            runner.reach("go", LIMIT)
        say(f"{tasks} GPU tasks released at once; each runs {runtime}s")
        released = time.time()
        for runner in runners:
            runner.go("go")
        runs = [run for runner in runners for run in runner.finish(LIMIT) if run["dag_id"] == gpu_dag]
        gone: set[str] = set()
        pods.wait_for(lambda e: e.type == "DELETED" and not gone.add(e.name) and len(gone) == tasks, LIMIT,
                      "every task's pod deleted")
        seen = lives(pods.events())
    assert [run["state"] for run in runs] == ["success"] * tasks, runs
    submitted = {run["tasks"]["run_pod"]["xcom"]["pod_name"]: run["tasks"]["run_pod"]["start"] for run in runs}

    rows = []
    for i, pod in enumerate(sorted(seen, key=lambda p: p.running)):
        ideal = (i // quota) * runtime
        rows.append([str(i + 1), f"{pod.created - submitted[pod.name]:.1f}", f"{pod.ungated - pod.created:.1f}",
                     f"{pod.running - pod.ungated:.1f}", f"{pod.running - released:.1f}", f"{ideal:.0f}",
                     f"{pod.running - released - ideal:+.1f}"])
    print(f"{tasks} GPU tasks at once over a quota of {quota} GPU(s), {runtime}s each "
          f"(Kueue v0.17.0 out of cluster, kwok); {os.cpu_count()} cores")
    print_table(["task (by start)", "submit -> pod made s", "made -> admitted s", "admitted -> Running s",
                 "release -> Running s", "ideal s", "late by s"], rows)

    # The quota's GPUs, from the first pod Running to the last one done.
    first, last = min(p.running for p in seen), max(p.succeeded for p in seen)
    busy = sum(p.succeeded - p.running for p in seen)
    ideal_span = -(-tasks // quota) * runtime
    gaps = []
    for earlier, later in zip(sorted(seen, key=lambda p: p.succeeded), sorted(seen, key=lambda p: p.running)[quota:]):
        gaps.append(later.running - earlier.succeeded)
    print()
    print_table(["what", "measured", "ideal"], [
        ["all tasks Running to done, s", f"{last - first:.1f}", f"{ideal_span:.0f}"],
        ["GPU use over that span", f"{busy / (quota * (last - first)):.0%}", "100%"],
        ["a task done -> the next Running, median s", f"{statistics.median(gaps):.1f}" if gaps else "-", "0"],
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--quota", type=int, default=2)
    parser.add_argument("--runtime", type=int, default=10, help="seconds each task's container runs")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="queue-bench-"))
    base = bench_cluster_base(work, PORTS, REMOTE_KPO_KUEUE="1")
    say(f"toolchain, then a local cluster with Kueue in {work}")
    subprocess.run([str(ROOT / "scripts/toolchain")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(ROOT / "scripts/local-cluster"), "up"], env=base, check=True, stdout=subprocess.DEVNULL)
    try:
        bench(script_env(base), work, args.tasks, args.quota, args.runtime)
    finally:
        say("stopping and wiping the cluster")
        subprocess.run([str(ROOT / "scripts/local-cluster"), "down"], env=base, check=True,
                       stdout=subprocess.DEVNULL)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
