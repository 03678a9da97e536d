"""Airflow as an Astro Deployment runs it, for tests and benchmarks: the Deployment's environment
(its exported AIRFLOW_CONN_* connections, a fresh sqlite database) and a `dag.test()` runner process
(kpo_dags/run_dag.py) that the caller can hold at barriers between DAGs.
"""

import json
import subprocess
import time
from pathlib import Path

from realenv import ROOT

AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
KPO_DAGS = ROOT / "tests" / "e2e" / "kpo_dags"


def migrated_airflow_env(outputs: dict, deployments: list[str], path: str, home: Path,
                         dags_folder: Path = KPO_DAGS / "dags", **extra: str) -> dict:
    """A migrated Airflow home holding `deployments`' exported connections as AIRFLOW_CONN_*
    variables, as an Astro Deployment holds them; `extra` adds variables (Airflow Variables...)."""
    infos = {name: outputs["deployments"][name] for name in deployments}
    env = {"PATH": path, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           # Parsing the DAG file takes seconds; on a loaded CI machine more than the default 30 s.
           "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
           "REMOTE_KPO_E2E_CONN_IDS": ",".join(info["connectionId"] for info in infos.values()),
           **{info["envVar"]: outputs["airflowConnections"][name] for name, info in infos.items()},
           **extra}
    migrated = subprocess.run([str(AIRFLOW_PYTHON), "-m", "airflow", "db", "migrate"], env=env,
                              capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return env


class Runner:
    """One Airflow process running DAGs in order; a step `@name` holds it until `go(name)`."""

    def __init__(self, env: dict, folder: Path, steps: list[str]):
        self.out, self.log = folder / "runs.json", folder / "airflow.log"
        self.barriers = {step[1:]: folder / step[1:] for step in steps if step.startswith("@")}
        for barrier in self.barriers.values():
            barrier.mkdir()
        argv = [f"@barrier={self.barriers[s[1:]]}" if s.startswith("@") else s for s in steps]
        with self.log.open("w") as log:
            self.process = subprocess.Popen([str(AIRFLOW_PYTHON), str(KPO_DAGS / "run_dag.py"), str(self.out), *argv],
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
