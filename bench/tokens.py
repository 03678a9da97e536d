"""Benchmark: how many tokens each long KPO task goes through when its tokens live 60 s.

    .venv/bin/python bench/tokens.py [--runtime 195]

The set-up of tests/e2e/test_token_expiry_airflow.py (tests/e2e/token_env.py): a private local
cluster (ports from REMOTE_KPO_APISERVER_PORT, REMOTE_KPO_ETCD_PORT, REMOTE_KPO_ETCD_PEER_PORT, default
28443/28379/28380) whose API server has a JWT authenticator for a local issuer; the eks stack's
connection shape, its `aws` a stand-in minting a 60 s token at every call; three Airflow processes
at once, each one task whose pod runs --runtime seconds: sync following its log, deferrable
(trigger poll 10 s), XCom. Prints one row per task; stops and wipes the cluster at the end. Not
part of `make test`.

Columns:
  task s         the task instance's start to end
  lifetimes      task s / the token lifetime
  tokens         exec plugin calls made by that task's process (each mints one token)
  per minute     tokens / task minutes
  max gap s      the longest time between two tokens: a request after a gap longer than the
                 lifetime would have gone out on an expired token, had the client kept it
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT))

import token_env  # noqa: E402
from token_issuer import LIFETIME  # noqa: E402

# Below the ephemeral range and apart from every other cluster's (tests/test_ports.py).
PORTS = (28443, 28379, 28380)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", type=int, default=3 * LIFETIME + 15, help="seconds each task's pod runs")
    args = parser.parse_args()
    names = ("REMOTE_KPO_APISERVER_PORT", "REMOTE_KPO_ETCD_PORT", "REMOTE_KPO_ETCD_PEER_PORT")
    ports = tuple(int(os.environ.get(name, default)) for name, default in zip(names, PORTS))
    work = Path(tempfile.mkdtemp(prefix="tokens-bench-"))
    with token_env.token_cluster(work, ports) as cluster:  # type: ignore[arg-type]
        token_env.wait_authenticator(cluster)
        token_env.grant_access(cluster, work / "access")
        runs = token_env.run_long_tasks(cluster, token_env.eks_connection(cluster), work / "airflow", args.runtime)
        rows = []
        for name, run in runs.runs.items():
            task = run["tasks"]["run_pod"]
            seconds = task["end"] - task["start"]
            minted = [m["at"] for m in cluster.plugin.calls(name)]
            gap = max((b - a for a, b in zip(minted, minted[1:])), default=0.0)
            rows.append([name.split("__")[0].removeprefix("kpo_"), run["state"], f"{seconds:.0f}",
                         f"{seconds / LIFETIME:.1f}", str(len(minted)), f"{len(minted) / (seconds / 60):.1f}",
                         f"{gap:.1f}"])
    header = ["task", "state", "task s", "lifetimes", "tokens", "per minute", "max gap s"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(f"KPO tasks on {LIFETIME} s tokens (stand-in aws eks get-token); pods on kwok; {os.cpu_count()} cores; "
          f"wall {runs.wall:.0f} s")
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
