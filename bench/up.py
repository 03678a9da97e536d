#!/usr/bin/env python3
"""Benchmark: `pulumi up` / `preview` of the dev stack shape beside `kubectl apply` of the same
objects, on a private local control plane that this script starts and stops.

    .venv/bin/python bench/up.py                  # 10, 100 and 300 Deployments, 1 run each
    .venv/bin/python bench/up.py --sizes 1 10 --runs 3

Not a test (nothing is asserted about time); it prints a table. See bench/README.md for what
each row measures.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import config as stack_config  # noqa: E402  (the program's own modules, pure functions only)
from components.access import (  # noqa: E402
    ROLE_NAME, XCOM_LABEL, limit_range_spec, pod_security_labels, rbac_subject, resource_quota_hard)
from components.metadata import MANAGED_BY  # noqa: E402
from components.permissions import kpo_role_rules  # noqa: E402
from stacks.existing import SERVICE_ACCOUNT, TOKEN_SECRET  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from realenv import backend_url, copy_project, make_dev_pulumi_env  # noqa: E402

# Private ports, apart from `make dev` (26443) and the e2e session (16443).
DEFAULT_PORTS = {"REMOTE_KPO_APISERVER_PORT": "25443", "REMOTE_KPO_ETCD_PORT": "25379",
                 "REMOTE_KPO_ETCD_PEER_PORT": "25380"}
STACK = "bench"


# ------------------------------------------------------------------ the objects ---

def dev_deployments() -> list[dict]:
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    return document["config"]["remote-kpo:deployments"]


def bench_config(count: int) -> dict:
    """The dev stack's shape with `count` Deployments: its two entries repeated in turn (xcom on;
    xcom off with podDefaults and quota), named b001, b002, ..."""
    template = dev_deployments()
    deployments = [{**template[i % len(template)], "name": f"b{i + 1:03d}"} for i in range(count)]
    return {"cloud": "existing", "clusterName": "remote-kpo-bench", "deployments": deployments}


_SNAKE = re.compile(r"[a-z]+(_[a-z]+)+")


def wire(value):
    """The SDK's snake_case input keys (api_groups, default_request) in Kubernetes' camelCase,
    as Pulumi sends them; map keys (labels, quota names) have no underscores and stay."""
    if isinstance(value, dict):
        return {(re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key) if _SNAKE.fullmatch(key) else key): wire(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [wire(item) for item in value]
    return value


def rendered_manifests(config: dict) -> tuple[list[dict], list[dict]]:
    """The objects `pulumi up` makes for `config`, rendered from the program's own pure functions,
    in creation order; and the token Secrets apart (kubectl waits for them to be filled)."""
    cfg = stack_config.load(config)
    namespaces, others, secrets = [], [], []
    for d in cfg.deployments:
        labels = {**MANAGED_BY, "remote-kpo/deployment": d.name}
        meta = {"name": ROLE_NAME, "namespace": d.namespace, "labels": labels}
        namespaces.append({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": d.namespace,
                                        "labels": {**labels, **pod_security_labels(d.pod_security)}}})
        others.append({"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
                       "metadata": {"name": SERVICE_ACCOUNT, "namespace": d.namespace}})
        others.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                       "metadata": {**meta, "labels": {**labels, XCOM_LABEL: "true" if d.xcom else "false"}},
                       "rules": kpo_role_rules(d.xcom)})
        others.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE_NAME},
                       "subjects": [rbac_subject("ServiceAccount", SERVICE_ACCOUNT, d.namespace)]})
        if limits := limit_range_spec(d):
            others.append({"apiVersion": "v1", "kind": "LimitRange",
                           "metadata": {**meta, "name": "remote-kpo-pod-defaults"}, "spec": limits})
        if hard := resource_quota_hard(d):
            others.append({"apiVersion": "v1", "kind": "ResourceQuota",
                           "metadata": {**meta, "name": "remote-kpo-quota"}, "spec": {"hard": hard}})
        secrets.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                        "metadata": {"name": TOKEN_SECRET, "namespace": d.namespace,
                                     "annotations": {"kubernetes.io/service-account.name": SERVICE_ACCOUNT}}})
    return wire(namespaces + others + secrets), wire(secrets)


# ---------------------------------------------------------------- the machinery ---

def script_env(base: dict) -> dict:
    """What scripts/env.sh sets (PATH, PULUMI_HOME, KUBECONFIG, passphrase) over `base`."""
    dump = subprocess.run(["bash", "-c", f"source {ROOT}/scripts/env.sh && env -0"], env=base,
                          check=True, capture_output=True, text=True).stdout
    return dict(item.split("=", 1) for item in dump.split("\0") if "=" in item)


class Runner:
    def __init__(self, project: Path, env: dict, pulumi_env: dict):
        self.project, self.env, self.pulumi_env = project, env, pulumi_env

    def run(self, *command: str, env: dict | None = None) -> float:
        """Run a command in the project copy; its wall time in seconds. Stops on a failure."""
        started = time.perf_counter()
        result = subprocess.run(command, cwd=self.project, env=env or self.env, capture_output=True,
                                text=True, timeout=1800)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-4000:]}\n"
                             f"{result.stderr[-4000:]}")
        self.stdout = result.stdout
        return elapsed

    def pulumi(self, *args: str, backend: Path) -> float:
        env = {**self.env, **self.pulumi_env, "PULUMI_BACKEND_URL": backend_url(backend)}
        return self.run("pulumi", *args, "--stack", STACK, "--non-interactive", env=env)

    def resources(self, backend: Path) -> int:
        """Resources in the stack's state (`pulumi stack export`)."""
        self.pulumi("stack", "export", backend=backend)
        return len(json.loads(self.stdout)["deployment"].get("resources") or [])

    def kubectl(self, *args: str) -> float:
        return self.run("kubectl", *args)

    def wait_until_empty(self) -> None:
        """No namespace of ours left (the namespace controller finalizes them after a delete)."""
        selector = "app.kubernetes.io/managed-by=remote-kpo"
        deadline = time.monotonic() + 600  # 300 namespaces take the namespace controller a while
        while time.monotonic() < deadline:
            out = subprocess.run(["kubectl", "get", "namespaces", "-l", selector, "-o", "name"],
                                 env=self.env, capture_output=True, text=True, check=True).stdout
            if not out.strip():
                return
            time.sleep(0.5)
        raise SystemExit("namespaces still terminating after 600 s")


def measure(runner: Runner, work: Path, count: int, run: int) -> dict[str, float]:
    """One round for `count` Deployments; every figure in seconds."""
    config = bench_config(count)
    manifests, secrets = rendered_manifests(config)
    manifest_file = work / f"manifests-{count}.yaml"
    secrets_file = work / f"secrets-{count}.yaml"
    manifest_file.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    secrets_file.write_text(yaml.safe_dump_all(secrets, sort_keys=False))
    apply = ("apply", "--server-side", "--field-manager=bench", "-f", str(manifest_file))
    t: dict[str, float] = {"objects": len(manifests)}

    # kubectl: the same objects, server-side apply as pulumi-kubernetes 4 does, into an empty cluster;
    # then wait until the token controller has filled each token Secret (pulumi's outputs need them).
    runner.wait_until_empty()
    t["k_create"] = runner.kubectl(*apply) + runner.kubectl(
        "wait", "--for=jsonpath={.data.token}", "--timeout=600s", "-f", str(secrets_file))
    t["k_noop"] = runner.kubectl(*apply)
    t["k_diff"] = runner.kubectl("diff", "--server-side", "--field-manager=bench", "-f", str(manifest_file))
    t["k_delete"] = runner.kubectl("delete", "--wait=true", "--ignore-not-found", "-f", str(manifest_file))
    runner.wait_until_empty()

    # pulumi: a fresh file backend and a new stack (cold), against an empty cluster.
    backend = work / f"state-{count}-{run}"
    backend.mkdir()
    stack_file = runner.project / f"Pulumi.{STACK}.yaml"
    stack_file.write_text(json.dumps({"config": {f"remote-kpo:{k}": v for k, v in config.items()}}))
    runner.pulumi("stack", "init", backend=backend)
    t["p_cold"] = runner.pulumi("up", "--yes", backend=backend)
    t["resources"] = runner.resources(backend)
    t["p_preview"] = runner.pulumi("preview", "--expect-no-changes", backend=backend)
    t["p_noop"] = runner.pulumi("up", "--yes", "--expect-no-changes", backend=backend)
    t["p_noop_skip"] = runner.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes", backend=backend)
    t["p_refresh"] = runner.pulumi("up", "--yes", "--refresh", "--skip-preview", "--expect-no-changes", backend=backend)
    # The rendered manifests are exactly what pulumi made: a server-side diff finds nothing.
    runner.kubectl("diff", "--server-side", "--force-conflicts", "--field-manager=bench", "-f", str(manifest_file))
    t["p_destroy"] = runner.pulumi("destroy", "--yes", backend=backend)
    runner.wait_until_empty()
    # warm: the same stack again after its destroy (state, stack file and caches kept).
    t["p_warm"] = runner.pulumi("up", "--yes", backend=backend)
    runner.pulumi("destroy", "--yes", backend=backend)
    runner.pulumi("stack", "rm", "--yes", backend=backend)
    runner.wait_until_empty()
    return t


# --------------------------------------------------------------------- output ---

ROWS = (  # label, pulumi key, pulumi command, kubectl key, kubectl command
    ("create (cold)", "p_cold", "up, fresh state", "k_create", "apply + wait tokens"),
    ("create (warm)", "p_warm", "up after destroy", "k_create", "apply + wait tokens"),
    ("no change", "p_noop", "up", "k_noop", "apply"),
    ("no change, no preview", "p_noop_skip", "up --skip-preview", "k_noop", "apply"),
    ("no change, read live", "p_refresh", "up --refresh --skip-preview", "k_noop", "apply"),
    ("preview", "p_preview", "preview", "k_diff", "diff --server-side"),
    ("delete", "p_destroy", "destroy", "k_delete", "delete --wait"),
)


def table(results: dict[int, list[dict]]) -> str:
    lines = ["| Deployments | objects | operation | pulumi | s | kubectl | s | pulumi/kubectl |",
             "| ---: | ---: | --- | --- | ---: | --- | ---: | ---: |"]
    for count, rounds in results.items():
        objects = int(rounds[0]["objects"])
        for label, pkey, pcmd, kkey, kcmd in ROWS:
            p = statistics.median(r[pkey] for r in rounds)
            k = statistics.median(r[kkey] for r in rounds)
            lines.append(f"| {count} | {objects} | {label} | `{pcmd}` | {p:.1f} | `{kcmd}` | {k:.1f} | {p / k:.1f}× |")
    return "\n".join(lines)


def per_resource(results: dict[int, list[dict]], count: int, key: str) -> float:
    """Milliseconds of `key` (median of the rounds) per pulumi resource in the state, or per
    object for kubectl."""
    rounds = results[count]
    unit = "objects" if key.startswith("k_") else "resources"
    return statistics.median(r[key] for r in rounds) / rounds[0][unit] * 1000


def growth(results: dict[int, list[dict]]) -> str:
    """Each operation's cost per resource at every size, and its multiple of the smallest size's."""
    sizes = list(results)
    header = " | ".join(f"{count} ({int(results[count][0]['resources'])} resources)" for count in sizes)
    lines = [f"| operation | tool | {header} |", "| --- | --- |" + " ---: |" * len(sizes)]
    rows = [(label, pkey, f"`{pcmd}`") for label, pkey, pcmd, _, _ in ROWS]
    rows += [(label, kkey, f"kubectl `{kcmd}`") for label, _, _, kkey, kcmd in ROWS
             if label in ("create (cold)", "no change", "preview", "delete")]
    for label, key, command in rows:
        base = per_resource(results, sizes[0], key)
        cells = " | ".join(f"{per_resource(results, count, key):.1f} ({per_resource(results, count, key) / base:.2f}×)"
                           for count in sizes)
        lines.append(f"| {label} | {command} | {cells} |")
    return "\n".join(lines)


# The targets of issue 25: per resource, at most this multiple of the cost at the smallest size.
GROWTH_TARGETS = (("`up --refresh --skip-preview`", "p_refresh", 1.5), ("cold create", "p_cold", 1.5))


def growth_targets(results: dict[int, list[dict]]) -> str:
    sizes = list(results)
    lines = []
    for what, key, limit in GROWTH_TARGETS:
        for count in sizes[1:]:
            multiple = per_resource(results, count, key) / per_resource(results, sizes[0], key)
            verdict = "met" if multiple <= limit else "NOT met"
            lines.append(f"- {what} at {count} Deployments: {multiple:.2f}× the cost per resource at "
                         f"{sizes[0]} (target at most {limit}×: {verdict})")
    return "\n".join(lines)


# The targets of issue 15, as ratios of this run: (what, pulumi key, kubectl key, at most).
TARGETS = (("no-op `up --skip-preview` (a CI or dev loop with --yes)", "p_noop_skip", "k_noop", 5.0),
           ("no-op `up` (with its preview)", "p_noop", "k_noop", None))


def targets(results: dict[int, list[dict]]) -> str:
    lines = []
    for count, rounds in results.items():
        for what, pkey, kkey, limit in TARGETS:
            ratio = statistics.median(r[pkey] for r in rounds) / statistics.median(r[kkey] for r in rounds)
            goal = f" (target at most {limit:.0f}× at 10 Deployments)" if limit and count == 10 else ""
            lines.append(f"- {count} Deployments, {what}: {ratio:.1f}× `kubectl apply`{goal}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 300],
                        help="Deployments per stack, smallest first (the growth table compares with it)")
    parser.add_argument("--runs", type=int, default=1, help="rounds per size; the tables show medians")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (state, manifests)")
    parser.add_argument("--checkpoint-every-step", action="store_true",
                        help="the file backend's default, the state saved after every step (cloud stacks), "
                             "instead of once at the end as `make dev` runs pulumi (the Makefile's DEV_PULUMI_ENV)")
    parser.add_argument("--mock-sizes", type=int, nargs="*", default=[100],
                        help="Deployments for bench/mocks.py's comparison, run after the table (none: skip it)")
    args = parser.parse_args()

    subprocess.run([str(ROOT / "scripts/toolchain")], check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="remote-kpo-bench-"))
    ports = {key: os.environ.get(key, value) for key, value in DEFAULT_PORTS.items()}
    base = {**os.environ, **ports, "REMOTE_KPO_CLUSTER_DIR": str(work / "cluster")}
    project = copy_project(work / "project")

    local_cluster = [str(ROOT / "scripts/local-cluster")]
    subprocess.run(local_cluster + ["up"], env=base, check=True, stdout=subprocess.DEVNULL)
    results: dict[int, list[dict]] = {}
    load = [os.getloadavg()[0]]
    try:
        runner = Runner(project, script_env(base), {} if args.checkpoint_every_step else make_dev_pulumi_env())
        for count in args.sizes:
            results[count] = []
            for run in range(args.runs):
                round_ = measure(runner, work, count, run)
                results[count].append(round_)
                load.append(os.getloadavg()[0])
                print(f"# {count} Deployments, round {run + 1}: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in round_.items() if k.startswith(("p_", "k_"))),
                      file=sys.stderr, flush=True)
    finally:
        subprocess.run(local_cluster + ["down"], env=base, check=False, stdout=subprocess.DEVNULL)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    cpus = os.cpu_count()
    print(f"pulumi {subprocess.run(['pulumi', 'version'], env=runner.env, capture_output=True, text=True).stdout.strip()}, "
          f"pulumi-kubernetes 4.25.0, kube-apiserver 1.34.2 (local, etcd --unsafe-no-fsync), {cpus} CPUs; "
          f"{' '.join(f'{k}={v}' for k, v in runner.pulumi_env.items()) or 'a checkpoint every step'}; "
          f"median of {args.runs} run(s), seconds of wall time\n")
    print(table(results))
    print("\nPulumi resources per stack: " + ", ".join(
        f"{count} Deployments → {int(rounds[0]['resources'])}" for count, rounds in results.items()))
    print(f"\nLoad average (1 min) at the start and after each round: {', '.join(f'{x:.1f}' for x in load)}")
    print(f"\nPer resource, milliseconds (× the cost per resource at {args.sizes[0]} Deployments):\n")
    print(growth(results))
    print("\n" + growth_targets(results))
    print("\nRatios:\n" + targets(results))
    if args.mock_sizes:
        # The program's own CPU time under mocks, beside a naive flat program (bench/mocks.py).
        print("\nUnder mocks (bench/mocks.py), target ours/naive at most 1.00 at 100 Deployments:", flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench/mocks.py"), "--sizes", *map(str, args.mock_sizes),
                        "--rounds", str(max(args.runs, 5))], check=True)


if __name__ == "__main__":
    main()
