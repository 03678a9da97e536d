#!/usr/bin/env python3
"""Benchmark: the program's own cost, evaluated under Pulumi mocks (no engine, no cluster),
beside a naive program that makes the same objects without components.

    .venv/bin/python bench/mocks.py                  # 100 Deployments, 7 rounds
    .venv/bin/python bench/mocks.py --sizes 10 100 --rounds 5

Not a test (nothing is asserted about time); it prints a table of CPU seconds
(time.process_time: every thread of this process, so the SDK's worker threads count), each the
median of the rounds, the two programs taking turns. Imports are not counted:
they are the same for both (see bench/README.md for what they cost a real `up`). Each
evaluation runs in a fresh process.
"""

import argparse
import base64
import gc
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import pulumi
import pulumi_kubernetes as k8s

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from components import kubeconfig as kc  # noqa: E402
from components.access import pod_security_labels  # noqa: E402
from components.permissions import kpo_role_rules  # noqa: E402
from stacks.existing import LiveCluster  # noqa: E402
from up import bench_config  # noqa: E402  (the dev stack's shape with N Deployments)

sys.path.insert(0, str(ROOT / "tests"))
from harness import ADMIN_KUBECONFIG  # noqa: E402  (the dev stack's admin kubeconfig, as the unit tests use it)



QUOTA_KEYS = {"cpu": "requests.cpu", "memory": "requests.memory", "gpu": "requests.nvidia.com/gpu", "pods": "pods"}


class Mocks(pulumi.runtime.Mocks):
    """Echo the inputs; fill service-account token Secrets as the token controller would."""

    def __init__(self):
        self.count = 0

    def new_resource(self, args):
        self.count += 1
        outputs = dict(args.inputs)
        if args.typ == "kubernetes:core/v1:Secret":
            outputs["data"] = {"token": base64.b64encode(b"token").decode()}
        return [f"{args.name}-id", outputs]

    def call(self, args):
        return {}


def ours(raw: dict) -> None:
    """The real program, __main__.py, as the language host runs it; its read of the cluster
    (stacks/existing.py) finds nothing, as no cluster is dialled."""
    with mock.patch("stacks.existing.read_cluster", lambda *_: LiveCluster({}, set())):
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def naive(raw: dict) -> None:
    """The same objects, inputs and exports written flat: no config model, no components."""
    provider = k8s.Provider("existing-cluster", kubeconfig=os.environ["KUBECONFIG"],
                            cluster_identifier=raw["clusterName"])
    opts = pulumi.ResourceOptions(provider=provider)
    kubeconfigs, connections = {}, {}
    for d in raw["deployments"]:
        name, namespace = d["name"], f"kpo-{d['name']}"
        labels = {"app.kubernetes.io/managed-by": "remote-kpo", "remote-kpo/deployment": name}
        ns = k8s.core.v1.Namespace(f"{name}-namespace", opts=opts, metadata={
            "name": namespace, "labels": {**labels, **pod_security_labels("baseline")}})
        # What is made in the namespace waits for it, as in the program.
        namespace = ns.metadata.name
        meta = {"name": "remote-kpo", "namespace": namespace, "labels": labels}
        xcom = d.get("xcom", False)
        k8s.rbac.v1.Role(f"{name}-role", opts=opts, rules=kpo_role_rules(xcom),
                         metadata={**meta, "labels": {**labels, "remote-kpo/xcom": str(xcom).lower()}})
        k8s.rbac.v1.RoleBinding(f"{name}-rolebinding", opts=opts, metadata=meta,
                                role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role",
                                          "name": "remote-kpo"},
                                subjects=[{"kind": "ServiceAccount", "name": "remote-kpo", "namespace": namespace}])
        if "podDefaults" in d:
            k8s.core.v1.LimitRange(f"{name}-limitrange", opts=opts,
                                   metadata={**meta, "name": "remote-kpo-pod-defaults"},
                                   spec={"limits": [{"type": "Container",
                                                     "default_request": d["podDefaults"].get("requests"),
                                                     "default": d["podDefaults"].get("limits")}]})
        if "quota" in d:
            k8s.core.v1.ResourceQuota(f"{name}-quota", opts=opts, metadata={**meta, "name": "remote-kpo-quota"},
                                      spec={"hard": {QUOTA_KEYS[k]: str(v) for k, v in d["quota"].items()}})
        k8s.core.v1.ServiceAccount(f"{name}-serviceaccount", opts=opts, automount_service_account_token=False,
                                   metadata={"name": "remote-kpo", "namespace": namespace})
        secret = k8s.core.v1.Secret(f"{name}-token", opts=opts, type="kubernetes.io/service-account-token",
                                    metadata={"name": "remote-kpo-token", "namespace": namespace,
                                              "annotations": {"kubernetes.io/service-account.name": "remote-kpo"}})
        doc = pulumi.Output.all(secret.data, namespace).apply(lambda args, name=name: kc.kubeconfig(
            cluster_name=raw["clusterName"], server="https://127.0.0.1:26443", ca_data="Q0EtREFUQQ==",
            namespace=args[1], user_name=name, user=kc.token_user(base64.b64decode(args[0]["token"]).decode())))
        kubeconfigs[name] = pulumi.Output.secret(doc.apply(kc.to_json))
        connections[name] = pulumi.Output.secret(pulumi.Output.all(doc, namespace).apply(
            lambda args: kc.to_json(kc.airflow_connection(args[0], args[1]))))
    pulumi.export("kubeconfigs", pulumi.Output.secret(kubeconfigs))
    pulumi.export("airflowConnections", pulumi.Output.secret(connections))


def evaluate(program, raw: dict) -> tuple[float, int]:
    """CPU seconds to run `program` under mocks until every output is resolved; resources made."""
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="remote-kpo", stack="bench", preview=False)
    pulumi.runtime.set_all_config({f"remote-kpo:{key}": value if isinstance(value, str) else json.dumps(value)
                                   for key, value in raw.items()})
    started = time.process_time()

    @pulumi.runtime.test
    def run():
        program(raw)

    run()
    return time.process_time() - started, mocks.count


def naive_tuned(raw: dict) -> None:
    """The naive program with the program's collector settings (__main__.py): what the
    components themselves cost, with the collector out of the comparison."""
    gc.freeze()
    gc.set_threshold(50_000)
    naive(raw)


PROGRAMS = {"ours": ours, "naive": naive, "naive_tuned": naive_tuned}


def child(program: str, size: int) -> None:
    """One evaluation in this fresh process, as the language host runs a program once: what
    one program does to the interpreter (its garbage, gc.freeze) cannot help the other."""
    seconds, count = evaluate(PROGRAMS[program], bench_config(size))
    print(json.dumps([seconds, count]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per program; the table shows medians")
    parser.add_argument("--child", nargs=2, metavar=("PROGRAM", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))
    with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=False) as kubeconfig:
        kubeconfig.write(ADMIN_KUBECONFIG)
    env = {**os.environ, "KUBECONFIG": kubeconfig.name}

    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs; median of {args.rounds} rounds, "
          "CPU seconds of one evaluation (imports excluded)\n")
    print("| Deployments | resources ours | resources naive | ours (components) | naive (flat) | ours/naive "
          "| naive, ours' gc settings | ours/that |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes:
        times: dict = {name: [] for name in PROGRAMS}
        counts: dict = {}
        for _ in range(args.rounds):
            for name in PROGRAMS:  # taking turns, so a change of load hits both alike
                out = subprocess.run([sys.executable, __file__, "--child", name, str(size)], env=env,
                                     check=True, capture_output=True, text=True).stdout
                seconds, counts[name] = json.loads(out.splitlines()[-1])
                times[name].append(seconds)
        a, b, c = (statistics.median(times[name]) for name in PROGRAMS)
        print(f"| {size} | {counts['ours']} | {counts['naive']} | {a:.3f} | {b:.3f} | {a / b:.2f} | {c:.3f} "
              f"| {a / c:.2f} |", flush=True)
    os.unlink(kubeconfig.name)


if __name__ == "__main__":
    main()
