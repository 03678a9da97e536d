"""scripts/astro-env: hand each Deployment's connection to its Astro Deployment.

For every remote-kpo Deployment mapped to an Astro Deployment id, the Astro CLI sets the
connection (`airflowConnections` output) as the secret environment variable the `deployments`
output names (AIRFLOW_CONN_KPO_<NAME>), which Airflow reads as the connection `kpo_<name>`. With
a `gpuTask` output, the task shape goes beside it as the Airflow Variable
`remote_kpo_gpu_task__<connection id>` (not secret), which dags/remote_kpo_smoke.py reads.

Targets the Astro CLI's `astro deployment variable create` and `update` (CLI v1.47 docs):
`create` skips a key the Deployment already has ("already exists ... use the update command"),
so an existing key is then set with `update`, which makes a rerun after `pulumi up` idempotent.

Usage: scripts/astro-env (--stack S | --outputs FILE) (--map NAME=ID ... | --map-file FILE)
       [--dry-run]
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from consumer.inputs import InputError, run_pulumi_outputs

MASK = "******"
# How the Astro CLI authenticates without `astro login` (a person's browser login), as on CI.
TOKEN_VARIABLE = "ASTRO_API_TOKEN"


class AstroError(Exception):
    """The Astro CLI failed: the message (secrets masked) is the line the user sees."""
GPU_VARIABLE_PREFIX = "AIRFLOW_VAR_REMOTE_KPO_GPU_TASK__"


@dataclass(frozen=True)
class Assignment:
    """One environment variable for one Astro Deployment."""

    deployment: str      # the remote-kpo Deployment
    astro_id: str        # the Astro Deployment id
    key: str
    value: str
    secret: bool

    def argv(self, verb: str, masked: bool = False) -> list[str]:
        value = MASK if masked and self.secret else self.value
        return ["astro", "deployment", "variable", verb, f"{self.key}={value}", "--deployment-id", self.astro_id,
                *(["--secret"] if self.secret else [])]


def parse_map(pairs: list[str], map_file: str | None) -> dict[str, str]:
    """remote-kpo Deployment name -> Astro Deployment id, from NAME=ID flags or a YAML/JSON file."""
    mapping: dict[str, str] = {}
    if map_file:
        try:
            document = yaml.safe_load(Path(map_file).read_text())
        except OSError as error:
            raise InputError(f"--map-file {map_file}: {error.strerror}")
        except yaml.YAMLError:
            raise InputError(f"--map-file {map_file}: not YAML or JSON")
        if not isinstance(document, dict) or not all(isinstance(v, str) and v for v in document.values()):
            raise InputError(f"--map-file {map_file}: expected a mapping of Deployment name to Astro Deployment id")
        mapping.update({str(k): v for k, v in document.items()})
    for pair in pairs:
        name, sep, astro_id = pair.partition("=")
        if not sep or not name or not astro_id:
            raise InputError(f"--map {pair}: expected NAME=ASTRO_DEPLOYMENT_ID")
        mapping[name] = astro_id
    if not mapping:
        raise InputError("no mapping: give --map NAME=ASTRO_DEPLOYMENT_ID or --map-file FILE")
    return mapping


def assignments(outputs: dict, mapping: dict[str, str]) -> tuple[list[Assignment], list[str]]:
    """(what to set, the stack's Deployments left out because the mapping does not name them)."""
    deployments = outputs.get("deployments")
    connections = outputs.get("airflowConnections")
    if not isinstance(deployments, dict) or not deployments:
        raise InputError("no `deployments` output (is it a remote-kpo stack after `pulumi up`?)")
    if not isinstance(connections, dict):
        raise InputError("`airflowConnections` is not the connections (read the outputs with --show-secrets)")
    unknown = sorted(set(mapping) - set(deployments))
    if unknown:
        raise InputError(f"--map names {', '.join(unknown)}, not a Deployment of the stack "
                         f"(it has: {', '.join(sorted(deployments))})")
    result = []
    for name in sorted(mapping):
        info = deployments[name]
        result.append(Assignment(name, mapping[name], info["envVar"], connections[name], secret=True))
        if outputs.get("gpuTask"):
            result.append(Assignment(name, mapping[name], GPU_VARIABLE_PREFIX + info["connectionId"].upper(),
                                     json.dumps(outputs["gpuTask"], sort_keys=True), secret=False))
    return result, sorted(set(deployments) - set(mapping))


def masked(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def apply(assignment: Assignment, run: Callable = subprocess.run) -> str:
    """Create the variable, or update it when the Deployment has it already: 'created' or 'updated'.
    Raises AstroError with the CLI's (masked) message when it fails."""
    secrets = [assignment.value] if assignment.secret else []

    def call(verb: str) -> subprocess.CompletedProcess:
        try:
            return run(assignment.argv(verb), capture_output=True, text=True)
        except FileNotFoundError:
            raise AstroError(f"astro: not found on PATH (install the Astro CLI, and set {TOKEN_VARIABLE})")

    created = call("create")
    said = created.stdout + created.stderr
    if "already exists" in said:
        updated = call("update")
        if updated.returncode == 0:
            return "updated"
        said = updated.stdout + updated.stderr
    elif created.returncode == 0:
        return "created"
    lines = [line.strip() for line in masked(said, secrets).splitlines() if line.strip()]
    raise AstroError(f"{assignment.deployment}: astro deployment variable for {assignment.key} on "
                     f"{assignment.astro_id} failed: {lines[-1] if lines else 'no message'}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/astro-env", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="read the outputs of this stack (pulumi stack output --show-secrets)")
    source.add_argument("--outputs", metavar="FILE", help="read them from this JSON file ('-': stdin)")
    parser.add_argument("--map", action="append", default=[], metavar="NAME=ID",
                        help="remote-kpo Deployment NAME goes to the Astro Deployment ID (repeatable)")
    parser.add_argument("--map-file", metavar="FILE", help="a YAML or JSON mapping of NAME: ID")
    parser.add_argument("--dry-run", action="store_true", help="print the Astro CLI calls, secrets masked")
    return parser.parse_args(argv)


def read_outputs(args: argparse.Namespace, stdin=sys.stdin) -> dict:
    if args.stack:
        return run_pulumi_outputs(args.stack)
    try:
        text = stdin.read() if args.outputs == "-" else Path(args.outputs).read_text()
    except OSError as error:
        raise InputError(f"--outputs {args.outputs}: {error.strerror}")
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"--outputs {args.outputs}: not JSON (pulumi stack output --json --show-secrets)")
    if not isinstance(outputs, dict):
        raise InputError(f"--outputs {args.outputs}: not a JSON object")
    return outputs


def main(argv: list[str], run: Callable = subprocess.run) -> int:
    args = parse_args(argv)
    try:
        mapping = parse_map(args.map, args.map_file)
        if not args.dry_run and not os.environ.get(TOKEN_VARIABLE):
            raise InputError(f"{TOKEN_VARIABLE} is not set: the Astro CLI needs a Workspace or Organization API "
                             "token that may edit the Deployments' environment variables (--dry-run needs none)")
        todo, left_out = assignments(read_outputs(args), mapping)
        for name in left_out:
            print(f"astro-env: {name}: not in the mapping, left out", file=sys.stderr)
        for assignment in todo:
            if args.dry_run:
                print(shlex.join(assignment.argv("create", masked=True)) + "   # update if it exists")
            else:
                outcome = apply(assignment, run)
                print(f"{assignment.deployment} -> {assignment.astro_id}: {assignment.key} {outcome}")
    except InputError as error:
        print(f"astro-env: {error}", file=sys.stderr)
        return 2
    except AstroError as error:
        print(f"astro-env: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
