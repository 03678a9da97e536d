"""The README's command blocks, run as written (issue 19): "Quick start", "Your own stack" and
"Handing them to Astro", in a checkout of their own (a copy of the project) with a local cluster
of its own, as a newcomer's shell runs them one after the other.

Each block is read from README.md. What cannot run here is substituted, and only that (each
substitution says why below); the commands themselves run unchanged.
"""

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from realenv import README_API_PORT, README_ETCD_PEER_PORT, README_ETCD_PORT, ROOT
from test_readme import blocks, section

# What a checkout holds that the blocks use: make's targets, the scripts, the program and the
# stack files, the map files.
CHECKOUT_FILES = ("Makefile", "requirements.txt", "requirements-airflow.txt", "constraints-airflow.txt",
                  "__main__.py", "config.py", "Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.onprem.yaml",
                  "components", "consumer", "stacks", "scripts", "ci", "policy")
# The venvs are linked, already installed: each one's requirement files, copied, are dated as its
# stamp, so make does not install them again (a link cannot hold a new venv).
LINKED = {".venv": ("requirements.txt",),
          ".venv-airflow": ("requirements-airflow.txt", "constraints-airflow.txt"),
          "policy/venv": ("policy/requirements.txt",)}

# No Astro account here: a stand-in `astro` that lists Deployments and records each variable
# update with the file it loads, as tests/test_astro_env.py's does.
ASTRO = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
record = {"args": args}
if "--env" in args:
    record["env_file"] = open(args[args.index("--env") + 1]).read()
with open(os.environ["ASTRO_CALLS"], "a") as calls:
    calls.write(json.dumps(record) + "\n")
if args[:2] == ["deployment", "list"]:
    print(" NAME        NAMESPACE   DEPLOYMENT ID\n analytics   cosmic-1    clgkeanalytics00000000000")
'''


def checkout(folder: Path) -> Path:
    for name in CHECKOUT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "venv"))
        else:
            shutil.copy2(source, folder / name)
    for name, requirements in LINKED.items():
        (folder / name).symlink_to(ROOT / name)
        stamp = (ROOT / name / ".installed").stat().st_mtime_ns
        for requirement in requirements:
            os.utime(folder / requirement, ns=(stamp, stamp))
    return folder


def newcomer_env(bin_folder: Path, calls: Path) -> dict:
    """A fresh shell's: none of the test session's cluster, backend or ports."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("REMOTE_KPO_", "PULUMI_", "KUBECONFIG", "ASTRO_"))}
    return env | {"PATH": f"{bin_folder}{os.pathsep}{env['PATH']}", "ASTRO_CALLS": str(calls)}


def sh(folder: Path, env: dict, script: str, timeout: int = 400) -> str:
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{script}\n---\n{output}"
    assert "Traceback" not in output, output
    return output


def with_env_sh(script: str) -> str:
    # The README's `pulumi` and `scripts/astro-env` are the project's: `source scripts/env.sh`.
    return f"source scripts/env.sh\n{script}"


def calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def variables(call: dict) -> dict:
    return dict(line.split("=", 1) for line in call["env_file"].splitlines())


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    """A checkout and a shell; `make down` at the end stops its cluster whatever happened (the
    test's own last step, unless it failed before)."""
    folder = checkout(tmp_path_factory.mktemp("checkout"))
    bin_folder = tmp_path_factory.mktemp("bin")
    (bin_folder / "astro").write_text(ASTRO)
    (bin_folder / "astro").chmod(0o755 | stat.S_IEXEC)
    env = newcomer_env(bin_folder, bin_folder / "astro-calls.jsonl")
    yield folder, env
    subprocess.run(["make", "down"], cwd=folder, env=env, capture_output=True, timeout=300)


def test_the_readmes_quick_start_own_stack_and_hand_off_blocks_run_as_written(newcomer):
    folder, env = newcomer
    quick_start = section("Quick start")
    # Every block of the section, its "Two checkouts on one machine" included.
    (make_dev_and_test, second_checkout) = blocks(quick_start, "sh")

    # The second checkout's `make dev`, ports moved: this machine may run other checkouts (and
    # other test sessions) on the README's example ports; the test's come from its port base.
    ports = {"28443": README_API_PORT, "28379": README_ETCD_PORT, "28380": README_ETCD_PEER_PORT}
    for example, port in ports.items():
        assert example in second_checkout
        second_checkout = second_checkout.replace(example, str(port))
    sh(folder, env, second_checkout)
    # The quick start: `make dev` again without the variables, on the ports the cluster kept.
    # `make test` is this suite (an hour, and it would run this test): `make -n` shows what it runs.
    assert "make test " in make_dev_and_test
    sh(folder, env, make_dev_and_test.replace("make test ", "make -n test "))
    endpoint = sh(folder, env, with_env_sh("pulumi stack output clusterEndpoint --stack dev"))
    assert endpoint.strip().endswith(f"https://127.0.0.1:{README_API_PORT}")

    # Your own stack: the README's stack file, on this cluster.
    own_stack = section("Your own stack")
    (stack_file,) = blocks(own_stack, "yaml")
    document = yaml.safe_load(stack_file)
    existing = document["config"]["remote-kpo:existing"]
    # Its admin kubeconfig is gpu-prod's, which is not here: the local cluster's admin kubeconfig.
    existing |= {"kubeconfig": str(folder / ".toolchain/cluster/admin.kubeconfig"), "context": "remote-kpo-local"}
    # Beside the dev stack, as the README says, each Deployment gets a namespace of its own.
    for deployment in document["config"]["remote-kpo:deployments"]:
        deployment["namespace"] = f"prod-{deployment['name']}"
    (folder / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document))
    # Its commands are inline; --yes and --non-interactive: no terminal to confirm on.
    assert "`pulumi stack init <stack>` and `pulumi up --refresh --stack <stack>`" in own_stack
    sh(folder, env, with_env_sh("pulumi stack init prod\npulumi up --refresh --stack prod --yes --non-interactive"))
    prod = json.loads(sh(folder, env, with_env_sh("pulumi stack output --json --show-secrets --stack prod")))
    assert prod["deployments"]["ml-training"]["namespace"] == "prod-ml-training"

    # Handing them to Astro. The map files name the stacks gke and onprem: gke needs a Google Cloud
    # project, so its map file names prod instead; onprem (Pulumi.onprem.yaml) is an `existing`
    # stack and runs here, on the admin kubeconfig env.sh exports, with namespaces beside dev's.
    gke_map = folder / "ci/github/astro/gke.yaml"
    gke_map.write_text(gke_map.read_text().replace("stack: gke", "stack: prod"))
    onprem = folder / "Pulumi.onprem.yaml"
    onprem_doc = yaml.safe_load(onprem.read_text())
    for deployment in onprem_doc["config"]["remote-kpo:deployments"]:
        deployment["namespace"] = f"onprem-{deployment['name']}"
    onprem.write_text(yaml.safe_dump(onprem_doc))
    sh(folder, env, with_env_sh("pulumi stack init onprem\npulumi up --stack onprem --yes --non-interactive "
                                "--skip-preview"))
    hand_off = section("Handing them to Astro")
    (astro_env_block, by_hand) = blocks(hand_off, "sh")
    # No Astro account: the stand-in `astro`, and a token it never checks.
    astro_env = env | {"ASTRO_API_TOKEN": "stand-in-token"}
    calls_file = Path(env["ASTRO_CALLS"])
    dry_run, map_files = astro_env_block.strip().splitlines()[1:]
    listed = sh(folder, astro_env, with_env_sh(astro_env_block.strip().splitlines()[0]))
    assert "clgkeanalytics00000000000" in listed
    said = sh(folder, astro_env, with_env_sh(dry_run))
    assert "would run astro deployment variable update" in said
    assert [c["args"][:2] for c in calls(calls_file)] == [["deployment", "list"]]
    sh(folder, astro_env, with_env_sh(map_files))
    onprem_out = json.loads(sh(folder, env, with_env_sh("pulumi stack output --json --show-secrets --stack onprem")))
    updates = {c["args"][c["args"].index("--deployment-id") + 1]: variables(c) for c in calls(calls_file)[1:]}
    # One call per Astro Deployment, with both stacks' connections, as the stacks made them, and
    # each stack's `task` output and each Deployment's janitor settings beside its connection.
    assert updates["clgkeanalytics00000000000"] == {
        "AIRFLOW_CONN_KPO_ANALYTICS": prod["airflowConnections"]["analytics"],
        "AIRFLOW_CONN_KPO_ONPREM_ANALYTICS": onprem_out["airflowConnections"]["analytics"],
        "AIRFLOW_VAR_REMOTE_KPO_TASK__KPO_ANALYTICS": json.dumps(prod["task"], sort_keys=True),
        "AIRFLOW_VAR_REMOTE_KPO_TASK__KPO_ONPREM_ANALYTICS": json.dumps(onprem_out["task"], sort_keys=True),
        "AIRFLOW_VAR_REMOTE_KPO_JANITOR__KPO_ANALYTICS":
            json.dumps(prod["deployments"]["analytics"]["janitor"], sort_keys=True),
        "AIRFLOW_VAR_REMOTE_KPO_JANITOR__KPO_ONPREM_ANALYTICS":
            json.dumps(onprem_out["deployments"]["analytics"]["janitor"], sort_keys=True)}
    assert set(updates) == {"clgkeanalytics00000000000", "clgkemltraining0000000000"}

    # By hand: the block names no stack, so it reads the selected one, which is onprem after its
    # `stack init`; the block means the README's own stack, prod. DEPLOYMENT_ID is the reader's
    # (from `astro deployment list`).
    before = len(calls(calls_file))
    sh(folder, astro_env | {"DEPLOYMENT_ID": "clx1abc"}, with_env_sh(f"pulumi stack select prod\n{by_hand}"))
    (by_hand_call,) = calls(calls_file)[before:]
    assert by_hand_call["args"][:6] == ["deployment", "variable", "update", "--deployment-id", "clx1abc", "--load"]
    value = variables(by_hand_call)["AIRFLOW_CONN_KPO_ANALYTICS"]
    # -r: the connection's JSON object itself, not a quoted string of it.
    assert json.loads(value) == json.loads(prod["airflowConnections"]["analytics"])
    assert json.loads(value)["conn_type"] == "kubernetes"

    # `make down` destroys dev and wipes the cluster, naming the stacks still on it (issue 19).
    down = sh(folder, env, "make down")
    assert ("  organization/remote-kpo/onprem: onprem-analytics, onprem-ml-training\n"
            "  organization/remote-kpo/prod: prod-analytics, prod-ml-training\n") in down
    assert "remote-kpo/dev" not in down
    assert not (folder / ".toolchain/cluster").exists()
