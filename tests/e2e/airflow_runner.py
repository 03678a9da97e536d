"""Airflow as an Astro Deployment runs it, for tests and benchmarks: the Deployment's environment
(its exported AIRFLOW_CONN_* connections, a fresh sqlite database) and a `dag.test()` runner process
(consumer/run_dag.py) that the caller can hold at barriers between DAGs.
"""

import json
import subprocess
import time
from pathlib import Path

from consumer import smoke
from consumer.smoke import AIRFLOW_PYTHON, RUN_DAG
from realenv import ROOT

KPO_DAGS = ROOT / "tests" / "e2e" / "kpo_dags"


def migrated_airflow_env(outputs: dict, deployments: list[str], path: str, home: Path,
                         dags_folder: Path = KPO_DAGS / "dags", **extra: str) -> dict:
    """consumer/smoke.py's Airflow environment, with the test DAGs by default, and the connection ids
    in REMOTE_KPO_E2E_CONN_IDS for them unless the caller names its own."""
    conn_ids = ",".join(outputs["deployments"][name]["connectionId"] for name in deployments)
    return smoke.migrated_airflow_env(outputs, deployments, path, home, dags_folder,
                                      **{"REMOTE_KPO_E2E_CONN_IDS": conn_ids, **extra})


class Runner:
    """One Airflow process running DAGs in order; a step `@name` holds it until `go(name)`."""

    def __init__(self, env: dict, folder: Path, steps: list[str]):
        self.out, self.log = folder / "runs.json", folder / "airflow.log"
        self.barriers = {step[1:]: folder / step[1:] for step in steps if step.startswith("@")}
        for barrier in self.barriers.values():
            barrier.mkdir()
        argv = [f"@barrier={self.barriers[s[1:]]}" if s.startswith("@") else s for s in steps]
        with self.log.open("w") as log:
            self.process = subprocess.Popen([str(AIRFLOW_PYTHON), str(RUN_DAG), str(self.out), *argv],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)

    def tail(self) -> str:
        return self.log.read_text()[-5000:]

    def reach(self, barrier: str, limit: float = 300) -> None:
        """Wait until the runner waits at `barrier`."""
        deadline = time.monotonic() + limit
        while not list(self.barriers[barrier].glob("ready-*")):
            assert self.process.poll() is None, f"Airflow exited before {barrier}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"Airflow never reached {barrier}:\n{self.tail()}"
            time.sleep(0.2)

    def go(self, barrier: str) -> None:
        (self.barriers[barrier] / "go").touch()

    def finish(self, limit: float = 300) -> list[dict]:
        """run_dag.py's report: one entry per DAG run, in order."""
        try:
            self.process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.returncode == 0, self.tail()
        return json.loads(self.out.read_text())
