"""What the consumer tools read: a stack's outputs (`pulumi stack output`) or one Airflow
connection as an Astro Deployment holds it. Every malformed input raises InputError with one
line naming what is wrong, which the tools print instead of a traceback.
"""

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Callable, Optional

from components.kubeconfig import DOCKERFILE, EXEC_PLUGINS

CONN_ENV_PREFIX = "AIRFLOW_CONN_"


class InputError(Exception):
    """Bad input: the message is the one line the user sees."""


@dataclass(frozen=True)
class Target:
    """One Deployment's connection, as the consumer will use it."""

    name: str                      # the remote-kpo Deployment (or where the connection came from)
    namespace: str                 # where its pods run (the connection's namespace)
    kube_config: dict              # the connection's kube_config, parsed
    dockerfile: Optional[str]      # the lines that install its exec plugin, when known
    gpu_task: Optional[dict] = None  # the stack's `gpuTask` output, when it has a GPU pool
    task: Optional[dict] = None      # the stack's `task` output: what every task passes


def run_pulumi_outputs(stack: str, run: Callable = subprocess.run) -> dict:
    """`pulumi stack output --show-secrets --json --stack S`, parsed."""
    command = ["pulumi", "stack", "output", "--show-secrets", "--json", "--stack", stack, "--non-interactive"]
    try:
        result = run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise InputError("pulumi: not found on PATH (source scripts/env.sh, or install the Pulumi CLI)")
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise InputError(f"pulumi stack output --stack {stack}: {lines[-1] if lines else 'failed'}")
    try:
        outputs = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise InputError(f"pulumi stack output --stack {stack}: not JSON")
    if not isinstance(outputs, dict):
        raise InputError(f"pulumi stack output --stack {stack}: not a JSON object")
    return outputs


def _json_object(value, what: str) -> dict:
    """A JSON object given as a dict or as a JSON string (Airflow accepts both in extras)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InputError(f"{what}: not JSON ({error.msg} at line {error.lineno} column {error.colno})")
        if isinstance(value, str):
            # What `jq -c` prints for an output whose values are JSON text, as airflowConnections' are.
            raise InputError(f"{what}: a quoted JSON string, not a JSON object (take it out of "
                             "`pulumi stack output --json` with `jq -r`, not `jq -c`)")
    if not isinstance(value, dict):
        raise InputError(f"{what}: not a JSON object")
    return value


def parse_connection(text: str, source: str) -> tuple[dict, str]:
    """(kube_config, namespace) of an Airflow Kubernetes connection in JSON form."""
    connection = _json_object(text, source)
    if connection.get("conn_type") not in (None, "kubernetes"):
        raise InputError(f"{source}: conn_type is {connection['conn_type']!r}, not 'kubernetes'")
    extra = _json_object(connection.get("extra", {}), f"{source}: extra")
    if "kube_config" not in extra:
        raise InputError(f"{source}: extra has no kube_config (remote-kpo's airflowConnections output has one)")
    kube_config = _json_object(extra["kube_config"], f"{source}: extra.kube_config")
    namespace = extra.get("namespace") or _context_namespace(kube_config)
    if not namespace:
        raise InputError(f"{source}: no namespace in extra or in the kube_config's current context")
    return kube_config, namespace


def _context_namespace(kube_config: dict) -> Optional[str]:
    current = kube_config.get("current-context")
    for context in kube_config.get("contexts") or []:
        if context.get("name") == current:
            return (context.get("context") or {}).get("namespace")
    return None


def exec_command(kube_config: dict) -> Optional[str]:
    """The exec plugin the current context's user runs, or None (a token or certificate user)."""
    current = kube_config.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in kube_config.get("contexts") or []}
    users = {u.get("name"): u.get("user") or {} for u in kube_config.get("users") or []}
    user = users.get(contexts.get(current, {}).get("user"), {})
    return (user.get("exec") or {}).get("command")


def dockerfile_for(kube_config: dict) -> Optional[str]:
    """Without the stack's `dockerfile` output: the lines for the cloud whose plugin it runs."""
    command = os.path.basename(exec_command(kube_config) or "")
    for cloud, plugin in EXEC_PLUGINS.items():
        if command == plugin:
            return DOCKERFILE[cloud]
    return None


def targets_from_outputs(outputs: dict, stack: str) -> list[Target]:
    """One Target per Deployment of the stack's outputs."""
    deployments = outputs.get("deployments")
    connections = outputs.get("airflowConnections")
    if not isinstance(deployments, dict) or not deployments:
        raise InputError(f"stack {stack}: no `deployments` output (is it a remote-kpo stack after `pulumi up`?)")
    if not isinstance(connections, dict):
        raise InputError(f"stack {stack}: `airflowConnections` is {connections!r}, not the connections "
                         "(read with --show-secrets)")
    targets = []
    for name in sorted(deployments):
        if name not in connections:
            raise InputError(f"stack {stack}: no airflowConnections entry for Deployment {name}")
        kube_config, namespace = parse_connection(connections[name], f"stack {stack}: airflowConnections.{name}")
        targets.append(Target(name=name, namespace=namespace, kube_config=kube_config,
                              dockerfile=outputs.get("dockerfile"), gpu_task=outputs.get("gpuTask"),
                              task=outputs.get("task")))
    return targets


def target_from_connection(text: str, source: str, gpu_task: Optional[dict] = None) -> Target:
    """The Target of one connection (stdin or an AIRFLOW_CONN_* variable)."""
    if not text.strip():
        raise InputError(f"{source}: empty (expected an Airflow connection JSON)")
    kube_config, namespace = parse_connection(text, source)
    name = source[len(CONN_ENV_PREFIX):].lower() if source.startswith(CONN_ENV_PREFIX) else source
    return Target(name=name, namespace=namespace, kube_config=kube_config,
                  dockerfile=dockerfile_for(kube_config), gpu_task=gpu_task)
