"""Queueing on the local cluster (test_queueing_real.py, bench/queueing.py): Kueue started as an
`existing` cluster's operators would run it (`REMOTE_KPO_KUEUE=1 scripts/local-cluster up`), Airflow
processes that send GPU tasks at once, and what the pods' watch says each task went through.
"""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from airflow_runner import Runner
from gpu_local import pod_phase
from realenv import ROOT
from watch import Event

# The scheduling gate Kueue's pod webhook puts on a queued pod and its controller lifts on admission
# (sigs.k8s.io/kueue v0.17.0 pkg/controller/jobs/pod/constants/constants.go: SchedulingGateName).
ADMISSION_GATE = "kueue.x-k8s.io/admission"


def start_kueue(cluster_env: dict) -> None:
    """Kueue on a running local cluster (opt-in: the other tests run without it)."""
    subprocess.run([str(ROOT / "scripts/local-cluster"), "up"], env={**cluster_env, "REMOTE_KPO_KUEUE": "1"},
                   check=True, stdout=subprocess.DEVNULL)


def start_airflow(template: dict, home: Path, runtime: str, steps: list[str]) -> Runner:
    """An Airflow process of its own (its copy of the migrated database: processes at once never
    share sqlite), its GPU tasks' containers running `runtime`."""
    shutil.copytree(template["AIRFLOW_HOME"], home)
    env = {**template, "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
           "REMOTE_KPO_E2E_GPU_RUNTIME": runtime}
    return Runner(env, home, steps)


def gated(pod: dict) -> bool:
    return any(g["name"] == ADMISSION_GATE for g in pod["spec"].get("schedulingGates") or [])


@dataclass
class PodLife:
    """When one pod was created, let through by Kueue (its admission gate removed), bound to a
    node, Running, and done, from the watch's events."""
    name: str
    created: float
    created_gated: bool
    ungated: float
    node: str
    running: float
    succeeded: float
    phases: set


def lives(events: list[Event]) -> list[PodLife]:
    found = []
    for name in dict.fromkeys(e.name for e in events):
        seen = [e for e in events if e.name == name]

        def first(matches) -> float:
            return next(e.at for e in seen if matches(e.object))

        found.append(PodLife(
            name, seen[0].at, gated(seen[0].object), first(lambda o: not gated(o)),
            next(e.object["spec"]["nodeName"] for e in seen if e.object["spec"].get("nodeName")),
            first(lambda o: pod_phase(o) == "Running"), first(lambda o: pod_phase(o) == "Succeeded"),
            {pod_phase(e.object) for e in seen}))
    return sorted(found, key=lambda life: life.ungated)
