"""Benchmark: time from `dag.test()` start to KPO task success, through the exported connection.

    .venv/bin/python bench/kpo.py [--parallel 20] [--repeat 5]

Brings up a private local cluster (with kwok's fake node; ports from REMOTE_KPO_APISERVER_PORT,
REMOTE_KPO_ETCD_PORT, REMOTE_KPO_ETCD_PEER_PORT, default 24443/24379/24380, never the dev or test
cluster's), applies the dev stack to it with the real Pulumi engine, then runs the DAGs of
tests/e2e/kpo_dags/dags/ in Airflow (.venv-airflow, sqlite, `dag.test()`) with only the AIRFLOW_CONN_*
variables of the `airflowConnections` output, against the `analytics` Deployment. Prints a table;
stops and wipes the cluster at the end. Not part of `make test`.

Rows:
  cold      the first dag.test() in a fresh Airflow process (includes Airflow's one-off in-process
            set-up of its execution API)
  warm      later dag.test() runs in the same process (median of --repeat)
  serial    one DAG with 20 KPO tasks in one dag.test(): dag.test() runs tasks one at a time
  parallel  20 DAG runs at once: 20 Airflow processes, each warmed up, released together, each
            running one DAG with one KPO task (20 pods in the namespace at the same time)
The pods run on kwok's fake node: the numbers measure Airflow, KPO and the API server (scheduling,
status polling, deletion), not image pulls or containers.
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

from realenv import bench_cluster_base, dev_stack_outputs, script_env  # noqa: E402
from bench.tables import print_table  # noqa: E402
from consumer.smoke import AIRFLOW_PYTHON, RUN_DAG  # noqa: E402

KPO_DAGS = ROOT / "tests" / "e2e" / "kpo_dags"
CONN = "kpo_analytics"


# Below the ephemeral range and apart from every other cluster's (tests/test_ports.py).
PORTS = (24443, 24379, 24380)


class Airflow:
    """Airflow processes with the Deployment's environment; each gets its own copy of one database."""

    def __init__(self, outputs: dict, cluster_env: dict, work: Path):
        self.work = work
        deployments = outputs["deployments"]
        # 20 processes parsing the DAG file at once on 2 cores outlast the default 30 s import timeout.
        self.env = {"PATH": cluster_env["PATH"], "AIRFLOW__CORE__DAGS_FOLDER": str(KPO_DAGS / "dags"),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
                    "REMOTE_KPO_E2E_CONN_IDS": ",".join(i["connectionId"] for i in deployments.values())}
        for name, info in deployments.items():
            self.env[info["envVar"]] = outputs["airflowConnections"][name]
        self.template = work / "airflow-template"
        self.template.mkdir()
        subprocess.run([str(AIRFLOW_PYTHON), "-m", "airflow", "db", "migrate"],
                       env={**self.env, "AIRFLOW_HOME": str(self.template)}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.count = 0

    def start(self, steps: list[str]) -> tuple[subprocess.Popen, Path]:
        self.count += 1
        home = self.work / f"airflow-{self.count}"
        shutil.copytree(self.template, home)
        out = home / "runs.json"
        log = (home / "airflow.log").open("w")
        # The copied airflow.cfg still names the template's database: point at this copy's.
        env = {**self.env, "AIRFLOW_HOME": str(home),
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}
        process = subprocess.Popen([str(AIRFLOW_PYTHON), str(RUN_DAG), str(out), *steps],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        return process, out

    @staticmethod
    def finish(process: subprocess.Popen, out: Path, timeout: float = 900) -> list[dict]:
        if process.wait(timeout=timeout) != 0:
            raise SystemExit(f"Airflow run failed, see {out.parent / 'airflow.log'}")
        runs = json.loads(out.read_text())
        for run in runs:
            if run["state"] != "success":
                raise SystemExit(f"{run['dag_id']} ended {run['state']}, see {out.parent / 'airflow.log'}")
        return runs

    def run(self, steps: list[str]) -> list[dict]:
        return self.finish(*self.start(steps))


def to_success(run: dict) -> float:
    """dag.test() start to the (last) task's success."""
    return max(task["end"] for task in run["tasks"].values()) - run["started"]


def row(name: str, what: str, values: list[float], wall: float | None = None) -> list[str]:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return [name, what, str(len(values)), f"{values[0]:.2f}", f"{statistics.median(values):.2f}", f"{p90:.2f}",
            f"{values[-1]:.2f}", "" if wall is None else f"{wall:.2f}"]


TABLE_HEADER = ["case", "what is timed", "n", "min s", "median s", "p90 s", "max s", "wall s"]


def bench(airflow: Airflow, parallel: int, repeat: int) -> list[list[str]]:
    success, deferrable = f"kpo_success__{CONN}", f"kpo_deferrable__{CONN}"
    rows = []

    cold = airflow.run([success])
    rows.append(row("cold", "1 KPO task, first dag.test() in a process", [to_success(r) for r in cold]))

    warm = airflow.run(["kpo_warmup"] + [success] * repeat + [deferrable] * repeat)
    rows.append(row("warm", "1 KPO task (sync)", [to_success(r) for r in warm if r["dag_id"] == success]))
    rows.append(row("warm", "1 KPO task (deferrable, trigger in line)",
                    [to_success(r) for r in warm if r["dag_id"] == deferrable]))

    [serial] = [r for r in airflow.run(["kpo_warmup", f"kpo_parallel__{CONN}"]) if r["dag_id"] != "kpo_warmup"]
    per_task = [t["end"] - t["start"] for t in serial["tasks"].values()]
    rows.append(row("serial", f"{len(per_task)} KPO tasks in one DAG, one dag.test(): each task", per_task,
                    wall=to_success(serial)))

    barrier = airflow.work / "barrier"
    barrier.mkdir()
    started = [airflow.start(["kpo_warmup", f"@barrier={barrier}", success]) for _ in range(parallel)]
    try:
        while len(list(barrier.glob("ready-*"))) < parallel:
            if any(process.poll() not in (None, 0) for process, _ in started):
                raise SystemExit(f"an Airflow process failed warming up: {airflow.work}/airflow-*/airflow.log")
            time.sleep(0.2)
        go = time.time()
        (barrier / "go").touch()
        runs = [r for process, out in started for r in airflow.finish(process, out) if r["dag_id"] == success]
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    wall = max(max(t["end"] for t in r["tasks"].values()) for r in runs) - go
    rows.append(row("parallel", f"{parallel} DAG runs at once ({parallel} processes, 1 KPO task each)",
                    [to_success(r) for r in runs], wall=wall))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kpo-bench-"))
    base = bench_cluster_base(work, PORTS)
    subprocess.run([str(ROOT / "scripts/toolchain")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(ROOT / "scripts/local-cluster"), "up"], env=base, check=True, stdout=subprocess.DEVNULL)
    try:
        env = script_env(base)
        outputs = dev_stack_outputs(env, work)
        airflow = Airflow(outputs, env, work)
        rows = bench(airflow, args.parallel, args.repeat)
    finally:
        subprocess.run([str(ROOT / "scripts/local-cluster"), "down"], env=base, check=True,
                       stdout=subprocess.DEVNULL)
    print(f"KPO through the exported connection ({CONN}); pods on kwok's fake node; {os.cpu_count()} cores")
    print_table(TABLE_HEADER, rows)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
