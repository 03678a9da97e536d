"""Runs inside the Airflow venv: `dag.test()` DAGs of dags/, one after the other, in one process,
and report what happened as JSON.

Usage: run_dag.py OUT_FILE STEP...

A STEP is a DAG id, or `@barrier=DIR` (bench/kpo.py): create DIR/ready-<pid>, then wait until
DIR/go exists, so that many runner processes start their next DAG together.

The caller sets the environment an Astro Deployment would have: AIRFLOW_CONN_* from the stack's
`airflowConnections` output, plus AIRFLOW_HOME (a migrated sqlite database) and
AIRFLOW__CORE__DAGS_FOLDER (this folder's dags/). Before each DAG it prints a line
`=== dag.test <dag_id> ===` (Airflow logs to the same output). OUT_FILE gets a JSON list, one
entry per DAG run, rewritten after each:

  dag_id, state             the DAG run and its final state
  started, finished         epoch seconds just before dag.test() and when it returned
  tasks                     task_id (task_id[i] for a mapped task's instances) ->
                            {state, start, end (epoch seconds), xcom: {key: value}}
  triggers                  the triggers dag.test() ran inline: [{classpath, task_id, status}]
  failures                  what each failed task raised (the DAGs' on_failure_callback)
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _plain(state) -> str | None:
    return None if state is None else str(getattr(state, "value", state))


def task_key(task_id: str, map_index: int) -> str:
    """A task's key in the report: its id, and `[i]` for each instance of a mapped task."""
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


def wait_at_barrier(folder: Path, limit: float = 1800) -> None:
    (folder / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + limit
    while not (folder / "go").exists():
        # Never outlive the caller: give up if it removed the folder or never says go.
        if not folder.is_dir() or time.monotonic() > deadline:
            raise SystemExit(f"barrier {folder}: no go")
        time.sleep(0.05)


def main(out_file: str, steps: list[str]) -> None:
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.sdk.definitions import dag as sdk_dag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    triggers: list[dict] = []
    run_inline_trigger = sdk_dag._run_inline_trigger

    def recording_trigger(trigger, task_sdk_ti):
        event = run_inline_trigger(trigger, task_sdk_ti)
        payload = getattr(event, "payload", None)
        triggers.append({"classpath": f"{type(trigger).__module__}.{type(trigger).__qualname__}",
                         "task_id": task_sdk_ti.task_id,
                         "status": payload.get("status") if isinstance(payload, dict) else None})
        return event

    # dag.test() runs a deferred task's trigger in line through this function: record each one.
    sdk_dag._run_inline_trigger = recording_trigger

    dags_folder = conf.get("core", "dags_folder")
    # As Airflow's DAG processor and task runner load a bundle (dagbag.py BundleDagBag): a DAG file
    # imports its neighbours (remote_kpo_janitor.py its rules).
    sys.path.append(dags_folder)
    dagbag = DagBag(dag_folder=dags_folder)
    report = []
    for step in steps:
        if step.startswith("@barrier="):
            wait_at_barrier(Path(step.split("=", 1)[1]))
            continue
        dag_id = step
        if dag_id not in dagbag.dags:
            raise SystemExit(f"no DAG {dag_id} in {dags_folder}: {dagbag.import_errors}")
        triggers.clear()
        print(f"=== dag.test {dag_id} ===", flush=True)
        with tempfile.TemporaryDirectory(prefix="failures-", dir=Path(out_file).parent) as failures_dir:
            os.environ["REMOTE_KPO_E2E_RESULTS"] = failures_dir
            started = time.time()
            run = dagbag.dags[dag_id].test()
            finished = time.time()
            failures = [json.loads(path.read_text()) for path in sorted(Path(failures_dir).glob("*.json"))]

        tasks: dict[str, dict] = {}
        with create_session() as session:
            for ti in session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                                 TaskInstance.run_id == run.run_id)):
                tasks[task_key(ti.task_id, ti.map_index)] = {
                    "state": _plain(ti.state), "start": ti.start_date.timestamp() if ti.start_date else None,
                    "end": ti.end_date.timestamp() if ti.end_date else None, "xcom": {}}
            for xcom in session.scalars(select(XComModel).where(XComModel.dag_id == dag_id,
                                                                XComModel.run_id == run.run_id)):
                value = XComModel.deserialize_value(xcom)
                tasks.setdefault(task_key(xcom.task_id, xcom.map_index), {"xcom": {}})["xcom"][xcom.key] = value
        report.append({"dag_id": dag_id, "state": _plain(run.state), "started": started, "finished": finished,
                       "tasks": tasks, "triggers": list(triggers), "failures": failures})
        Path(out_file).write_text(json.dumps(report, indent=2, default=str))
    print("=== done ===", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
