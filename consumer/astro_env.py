"""scripts/astro-env: hand each Deployment's connection to its Astro Deployment.

For every remote-kpo Deployment a mapping names, the connection (`airflowConnections` output)
goes to its Astro Deployment as the secret environment variable the `deployments` output names
(`envVar`, AIRFLOW_CONN_<CONNECTION ID>), which Airflow reads as that connection. The task shapes
go beside it: the `task` output as AIRFLOW_VAR_REMOTE_KPO_TASK__<CONNECTION ID> and, with a GPU
pool, `gpuTask` as AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__<CONNECTION ID>, the Airflow Variables
`remote_kpo_task__<connection id>` and `remote_kpo_gpu_task__<connection id>` that
dags/remote_kpo_smoke.py reads; the Deployment's `janitor` settings go as
AIRFLOW_VAR_REMOTE_KPO_JANITOR__<CONNECTION ID>, the Variable dags/remote_kpo_janitor.py reads
(written with `enabled: false` too, since an upsert cannot remove one written before).

Each Astro Deployment is written in one call, `astro deployment variable update --deployment-id ID
--load --env FILE --secret [--workspace-id W]`: an upsert (keys it lacks are created: astro-cli
cloud/deployment/deployment_variable.go addVariablesFromFile), whose values travel in a 0600
file, never on the command line. Every call rewrites the Deployment, which may restart it, so a
Deployment whose variables are the ones last written is skipped: after a write, the stack keeps
the hash of what it wrote as the stack tag `astro-env:<Astro Deployment id>`
(`pulumi stack tag rm` forces the next write). The same (Astro Deployment, variable) from two
mappings is refused before anything is written.

Usage: scripts/astro-env --map-file FILE [--map-file FILE ...] [--dry-run]
       scripts/astro-env --stack S --map NAME=ID [--map ...] [--workspace-id W] [--dry-run]
A map file: `stack: S`, optional `workspaceId: W` (an Organization token has no Workspace of its
own: astro-cli's coalesceWorkspace takes --workspace-id first), `deployments: {NAME: ID}`.
"""

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

from consumer.inputs import InputError, run_pulumi_outputs

MASK = "******"
# How the Astro CLI authenticates without `astro login` (a person's browser login), as on CI.
TOKEN_VARIABLE = "ASTRO_API_TOKEN"
GPU_VARIABLE_PREFIX = "AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__"
JANITOR_VARIABLE_PREFIX = "AIRFLOW_VAR_REMOTE_KPO_JANITOR__"
# Each task-shape output, and the prefix of the Variable a connection's Airflow gets it as.
SHAPE_VARIABLES = {"task": "AIRFLOW_VAR_REMOTE_KPO_TASK__", "gpuTask": GPU_VARIABLE_PREFIX}
TAG_PREFIX = "astro-env:"
# Stack tag names hold at most 40 characters (pulumi pkg/util/validation/stack.go); Astro
# Deployment ids are 25.
TAG_NAME_MAX = 40


class AstroError(Exception):
    """The Astro CLI or Pulumi failed: the message (secrets masked) is the line the user sees."""


@dataclass(frozen=True)
class Mapping:
    """Where one stack's connections go: a map file, or --stack with --map flags."""

    stack: str
    source: str                   # the map file, or "--map"
    workspace_id: Optional[str]
    deployments: dict[str, str]   # remote-kpo Deployment -> Astro Deployment id


@dataclass(frozen=True)
class Assignment:
    """One environment variable for one Astro Deployment."""

    mapping: Mapping
    deployment: str               # the remote-kpo Deployment
    astro_id: str
    key: str
    value: str

    @property
    def origin(self) -> str:
        return f"{self.mapping.source} (stack {self.mapping.stack}: {self.deployment})"


@dataclass
class Target:
    """One Astro Deployment and everything written to it, from one or more stacks."""

    astro_id: str
    workspace_id: Optional[str] = None
    assignments: list[Assignment] = field(default_factory=list)

    @property
    def stacks(self) -> list[str]:
        return sorted({a.mapping.stack for a in self.assignments})

    @property
    def tag(self) -> str:
        return (TAG_PREFIX + self.astro_id)[:TAG_NAME_MAX]

    def env_file(self) -> str:
        return "".join(f"{a.key}={a.value}\n" for a in sorted(self.assignments, key=lambda a: a.key))

    def digest(self, stack: str) -> str:
        """What `stack` writes here, hashed: its stack tag after a write."""
        lines = "".join(f"{a.key}={a.value}\n" for a in sorted(self.assignments, key=lambda a: a.key)
                        if a.mapping.stack == stack)
        return hashlib.sha256(lines.encode()).hexdigest()

    def argv(self, env_file: str) -> list[str]:
        return ["astro", "deployment", "variable", "update", "--deployment-id", self.astro_id,
                "--load", "--env", env_file, "--secret",
                *(["--workspace-id", self.workspace_id] if self.workspace_id else [])]

    def describe(self) -> str:
        keys = ", ".join(sorted(a.key for a in self.assignments))
        sources = ", ".join(f"{a.mapping.stack}: {a.deployment}" for a in
                            sorted(self.assignments, key=lambda a: (a.mapping.stack, a.deployment, a.key))
                            if not a.key.startswith("AIRFLOW_VAR_"))
        return f"{self.astro_id}: {keys} ({sources})"


# --- the mappings ------------------------------------------------------------------------------

def _id(value, what: str) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise InputError(f"{what}: expected an id (astro deployment list, astro workspace list)")
    return value


def read_map_file(path: str) -> Mapping:
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise InputError(f"--map-file {path}: {error.strerror}")
    except yaml.YAMLError:
        raise InputError(f"--map-file {path}: not YAML or JSON")
    if not isinstance(document, dict) or not isinstance(document.get("deployments"), dict) \
            or not document["deployments"] or not isinstance(document.get("stack"), str):
        raise InputError(f"--map-file {path}: expected `stack: STACK` and `deployments:` "
                         "(remote-kpo Deployment name: Astro Deployment id), optionally `workspaceId:`")
    unknown = sorted(set(document) - {"stack", "workspaceId", "deployments"})
    if unknown:
        raise InputError(f"--map-file {path}: unknown key {unknown[0]} (stack, workspaceId, deployments)")
    workspace = document.get("workspaceId")
    return Mapping(document["stack"], path, _id(workspace, f"--map-file {path}: workspaceId") if workspace else None,
                   {str(name): _id(astro_id, f"--map-file {path}: deployments.{name}")
                    for name, astro_id in document["deployments"].items()})


def mapping_from_flags(stack: Optional[str], pairs: list[str], workspace_id: Optional[str]) -> Mapping:
    if not stack:
        raise InputError("--map needs --stack (a map file names its stack)")
    deployments = {}
    for pair in pairs:
        name, sep, astro_id = pair.partition("=")
        if not sep or not name or not astro_id:
            raise InputError(f"--map {pair}: expected NAME=ASTRO_DEPLOYMENT_ID")
        deployments[name] = astro_id
    return Mapping(stack, "--map", workspace_id, deployments)


def mappings_of(args: argparse.Namespace) -> list[Mapping]:
    if args.map_file and (args.map or args.stack or args.workspace_id):
        raise InputError("--map-file names its stack and workspace: give either map files, or --stack with --map")
    if args.map_file:
        return [read_map_file(path) for path in args.map_file]
    if args.map:
        return [mapping_from_flags(args.stack, args.map, args.workspace_id)]
    raise InputError("no mapping: give --map-file FILE, or --stack STACK --map NAME=ASTRO_DEPLOYMENT_ID")


# --- what to write -----------------------------------------------------------------------------

def _env_file_value(value: str, where: str) -> str:
    # One KEY=VALUE line, read back with quotes and spaces trimmed from both ends (astro-cli
    # addVariablesFromFile): a JSON object survives as it is.
    if "\n" in value or value != value.strip().strip("\"'"):
        raise InputError(f"{where}: a value an env file cannot carry (a newline, or a quote or space at an end)")
    return value


def assignments(outputs: dict, mapping: Mapping) -> tuple[list[Assignment], list[str]]:
    """(what to set, the stack's Deployments left out because the mapping does not name them)."""
    where = f"{mapping.source} (stack {mapping.stack})"
    deployments = outputs.get("deployments")
    connections = outputs.get("airflowConnections")
    if not isinstance(deployments, dict) or not deployments:
        raise InputError(f"{where}: no `deployments` output (is it a remote-kpo stack after `pulumi up`?)")
    if not isinstance(connections, dict):
        raise InputError(f"{where}: `airflowConnections` is not the connections (read the outputs with --show-secrets)")
    unknown = sorted(set(mapping.deployments) - set(deployments))
    if unknown:
        raise InputError(f"{where}: names {', '.join(unknown)}, not a Deployment of the stack "
                         f"(it has: {', '.join(sorted(deployments))})")
    result = []
    for name in sorted(mapping.deployments):
        info, astro_id = deployments[name], mapping.deployments[name]
        result.append(Assignment(mapping, name, astro_id, info["envVar"],
                                 _env_file_value(connections[name], f"{where}: {name}")))
        for key, value in shape_variables(outputs, info["connectionId"]).items():
            result.append(Assignment(mapping, name, astro_id, key, value))
        if "janitor" in info:
            result.append(Assignment(mapping, name, astro_id, JANITOR_VARIABLE_PREFIX + info["connectionId"].upper(),
                                     json.dumps(info["janitor"], sort_keys=True)))
    return result, sorted(set(deployments) - set(mapping.deployments))


def shape_variables(outputs: dict, connection_id: str) -> dict[str, str]:
    """The task shapes the stack exports, as the Variables of one connection's Airflow."""
    return {prefix + connection_id.upper(): json.dumps(outputs[name], sort_keys=True)
            for name, prefix in SHAPE_VARIABLES.items() if outputs.get(name)}


def targets(todo: list[Assignment]) -> list[Target]:
    """One Target per Astro Deployment; refuses a variable two mappings write, or two Workspaces."""
    by_id: dict[str, Target] = {}
    for assignment in todo:
        target = by_id.setdefault(assignment.astro_id, Target(assignment.astro_id))
        for other in target.assignments:
            if other.key == assignment.key:
                raise InputError(f"{assignment.key} on Astro Deployment {assignment.astro_id} would be written by "
                                 f"{other.origin} and by {assignment.origin}: give one of the Deployments a "
                                 "connectionId of its own (README: Config reference), or map it elsewhere")
        workspace = assignment.mapping.workspace_id
        if workspace and target.workspace_id and workspace != target.workspace_id:
            raise InputError(f"Astro Deployment {assignment.astro_id}: workspaceId {target.workspace_id} and "
                             f"{workspace} in {assignment.mapping.source}: one Deployment is in one Workspace")
        target.workspace_id = target.workspace_id or workspace
        target.assignments.append(assignment)
    return [by_id[astro_id] for astro_id in sorted(by_id)]


# --- Pulumi and the Astro CLI ------------------------------------------------------------------

def masked(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def last_line(result: subprocess.CompletedProcess, secrets: tuple[str, ...] = ()) -> str:
    lines = [line.strip() for line in masked(result.stdout + result.stderr, secrets).splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def pulumi(args: list[str], run: Callable) -> subprocess.CompletedProcess:
    try:
        result = run(["pulumi", *args, "--non-interactive"], capture_output=True, text=True)
    except FileNotFoundError:
        raise AstroError("pulumi: not found on PATH (install the Pulumi CLI, and log in to the stacks' backend)")
    if result.returncode != 0:
        raise AstroError(f"pulumi {' '.join(args[:3])} --stack {args[-1]}: {last_line(result)}")
    return result


def stack_tags(stack: str, run: Callable) -> dict:
    result = pulumi(["stack", "tag", "ls", "--json", "--stack", stack], run)
    try:
        tags = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        raise AstroError(f"pulumi stack tag ls --stack {stack}: not JSON")
    return tags if isinstance(tags, dict) else {}


def write(target: Target, run: Callable) -> None:
    """The one call for this Astro Deployment; raises AstroError with the CLI's masked message."""
    secrets = tuple(a.value for a in target.assignments)
    with tempfile.TemporaryDirectory(prefix="astro-env-") as folder:  # mode 0700
        env_file = os.path.join(folder, "variables.env")
        descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(target.env_file())
        try:
            result = run(target.argv(env_file), capture_output=True, text=True)
        except FileNotFoundError:
            raise AstroError(f"astro: not found on PATH (install the Astro CLI, and set {TOKEN_VARIABLE})")
    if result.returncode != 0:
        raise AstroError(f"astro deployment variable update for {target.astro_id} failed: "
                         f"{last_line(result, secrets)}")


# --- the command -------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/astro-env", description=__doc__.split("\n\n")[0])
    parser.add_argument("--map-file", action="append", default=[], metavar="FILE",
                        help="a YAML mapping: stack, workspaceId, deployments (repeatable: one per stack)")
    parser.add_argument("--stack", help="with --map: the stack whose outputs to hand over")
    parser.add_argument("--map", action="append", default=[], metavar="NAME=ID",
                        help="remote-kpo Deployment NAME goes to the Astro Deployment ID (repeatable)")
    parser.add_argument("--workspace-id", help="with --map: the Astro Workspace of the Deployments")
    parser.add_argument("--dry-run", action="store_true", help="print the Astro CLI calls, write nothing")
    return parser.parse_args(argv)


def main(argv: list[str], run: Callable = subprocess.run) -> int:
    args = parse_args(argv)
    try:
        mappings = mappings_of(args)
        if not args.dry_run and not os.environ.get(TOKEN_VARIABLE):
            raise InputError(f"{TOKEN_VARIABLE} is not set: the Astro CLI needs a Workspace or Organization API "
                             "token that may edit the Deployments' environment variables (--dry-run needs none)")
        outputs: dict[str, dict] = {}
        todo: list[Assignment] = []
        for mapping in mappings:
            if mapping.stack not in outputs:
                outputs[mapping.stack] = run_pulumi_outputs(mapping.stack, run)
            found, left_out = assignments(outputs[mapping.stack], mapping)
            todo += found
            for name in left_out:
                print(f"astro-env: stack {mapping.stack}: {name}: not in {mapping.source}, left out", file=sys.stderr)
        plan = targets(todo)
        tags = {stack: stack_tags(stack, run) for stack in outputs}
        for target in plan:
            if all(tags[stack].get(target.tag) == target.digest(stack) for stack in target.stacks):
                print(f"{target.describe()}: unchanged since written, skipped")
            elif args.dry_run:
                print(f"{target.describe()}: would run {shlex.join(target.argv('<0600 env file>'))}")
            else:
                write(target, run)
                for stack in target.stacks:
                    pulumi(["stack", "tag", "set", target.tag, target.digest(stack), "--stack", stack], run)
                print(f"{target.describe()}: written")
    except InputError as error:
        print(f"astro-env: {error}", file=sys.stderr)
        return 2
    except AstroError as error:
        print(f"astro-env: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
