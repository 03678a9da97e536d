"""Two stacks on one cluster (issue 19): a stack never takes over another's objects.

On the session cluster, beside the dev stack: a second stack with dev's Deployment names is
refused before it changes anything, naming dev; with namespaces of its own it runs beside dev,
and its `destroy` leaves dev's objects alone. And server-side apply's own backstop, for objects
no program-time check reads: a second stack that applies the same namespace through the
provider meets a field conflict on the stack annotation.
"""

import json
import shutil
from pathlib import Path

import pytest

from realenv import ROOT, Pulumi, backend_url

NAMESPACED = "roles,rolebindings,serviceaccounts,secrets,limitranges,resourcequotas"
DEV_NAMESPACES = ("kpo-analytics", "kpo-ml-training")
# The README's "Your own stack", on this cluster: the same Deployment names as dev.
SECOND = {"cloud": "existing", "clusterName": "second",
          "deployments": [{"name": "analytics"},
                          {"name": "ml-training", "xcom": False, "quota": {"gpu": 4, "pods": 50}}]}


def objects_of(kubectl, namespaces) -> dict:
    """Every object of ours in `namespaces`, and the namespaces: name -> resourceVersion."""
    versions = {}
    for namespace in namespaces:
        listed = json.loads(kubectl("get", NAMESPACED, "-n", namespace, "-o", "json").stdout)["items"]
        listed.append(json.loads(kubectl("get", "namespace", namespace, "-o", "json").stdout))
        for item in listed:
            meta = item["metadata"]
            versions[(item["kind"], meta.get("namespace"), meta["name"])] = meta["resourceVersion"]
    return versions


def said(result) -> str:
    return result.stdout + result.stderr


def annotation(kubectl, namespace: str) -> str:
    meta = json.loads(kubectl("get", "namespace", namespace, "-o", "json").stdout)["metadata"]
    return meta.get("annotations", {}).get("remote-kpo/stack", "")


@pytest.fixture(scope="module")
def dev_kubeconfig(dev_outputs, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("two-stacks") / "analytics.json"
    path.write_text(dev_outputs["kubeconfigs"]["analytics"])
    return path


def dev_still_works(kubectl, dev_kubeconfig) -> None:
    """dev's exported connection authenticates and is authorized (the issue saw 401 here)."""
    kubectl("get", "pods", "-n", "kpo-analytics", kubeconfig=dev_kubeconfig)


def test_a_second_stack_with_devs_namespaces_is_refused_before_it_changes_anything(
        pulumi_cli, dev_outputs, kubectl, dev_kubeconfig):
    before = objects_of(kubectl, DEV_NAMESPACES)
    # And a namespace someone else made, which no stack may take either.
    kubectl("create", "namespace", "kpo-hand-made")
    pulumi_cli.write_stack("second", SECOND | {"deployments": [*SECOND["deployments"], {"name": "hand-made"}]})
    pulumi_cli.run("stack", "init", "second")
    for command in ("preview", "up"):
        result = pulumi_cli.run(command, "--stack", "second", *(["--yes"] if command == "up" else []), check=False)
        output = said(result)
        assert result.returncode != 0, output
        assert ("remote-kpo:deployments[0].namespace: namespace kpo-analytics belongs to stack "
                "organization/remote-kpo/dev on this cluster; give this Deployment another `namespace`, "
                "or destroy that stack first") in output
        assert "remote-kpo:deployments[1].namespace: namespace kpo-ml-training belongs to stack " \
               "organization/remote-kpo/dev" in output
        assert "remote-kpo:deployments[2].namespace: namespace kpo-hand-made exists and was not made by " \
               "remote-kpo" in output
        assert "Traceback" not in output
    state = json.loads(pulumi_cli.run("stack", "export", "--stack", "second").stdout)["deployment"]
    assert [r["type"] for r in state.get("resources") or [] if r["type"].startswith("kubernetes:")] == []
    assert objects_of(kubectl, DEV_NAMESPACES) == before
    assert [annotation(kubectl, ns) for ns in DEV_NAMESPACES] == ["organization/remote-kpo/dev"] * 2
    assert annotation(kubectl, "kpo-hand-made") == ""
    dev_still_works(kubectl, dev_kubeconfig)
    kubectl("delete", "namespace", "kpo-hand-made", "--wait=false")


def test_a_second_stack_with_its_own_namespaces_runs_beside_dev_and_its_destroy_leaves_dev_alone(
        pulumi_cli, dev_outputs, kubectl, dev_kubeconfig):
    before = objects_of(kubectl, DEV_NAMESPACES)
    deployments = [d | {"namespace": f"second-{d['name']}"} for d in SECOND["deployments"]]
    pulumi_cli.write_stack("second-own", SECOND | {"deployments": deployments})
    pulumi_cli.run("stack", "init", "second-own")
    first_up = said(pulumi_cli.run("up", "--yes", "--stack", "second-own"))
    assert "new ServiceAccount tokens for analytics, ml-training: their connections change" in first_up
    assert [annotation(kubectl, f"second-{d['name']}") for d in deployments] == ["organization/remote-kpo/second-own"] * 2
    second = pulumi_cli.outputs("second-own")
    path = dev_kubeconfig.parent / "second-analytics.json"
    path.write_text(second["kubeconfigs"]["analytics"])
    kubectl("get", "pods", "-n", "second-analytics", kubeconfig=path)
    # Each stack's token reaches its own namespace only.
    assert "forbidden" in kubectl("get", "pods", "-n", "kpo-analytics", kubeconfig=path, check=False).stderr
    assert objects_of(kubectl, DEV_NAMESPACES) == before
    # Tokens kept: no line; a token revoked out of band: `up --refresh` issues one, and says so.
    assert "new ServiceAccount tokens" not in said(pulumi_cli.run("up", "--yes", "--stack", "second-own"))
    kubectl("delete", "secret", "remote-kpo-token", "-n", "second-ml-training")
    refreshed = said(pulumi_cli.run("up", "--refresh", "--yes", "--stack", "second-own"))
    assert "new ServiceAccount tokens for ml-training: their connections change" in refreshed

    pulumi_cli.run("destroy", "--yes", "--stack", "second-own")
    assert objects_of(kubectl, DEV_NAMESPACES) == before
    dev_still_works(kubectl, dev_kubeconfig)


def test_server_side_apply_refuses_a_second_stacks_annotation_on_any_cloud(cluster_env, kubectl, tmp_path_factory):
    """Without the program-time check (the access program applies DeploymentAccess alone, as the
    gke, eks and aks stacks do), the second stack's apply of the same Namespace is a conflict."""
    project = tmp_path_factory.mktemp("backstop")
    shutil.copytree(ROOT / "tests/e2e/access_program", project, dirs_exist_ok=True)
    (project / ".venv").symlink_to(ROOT / ".venv")
    subjects = [{"name": "backstop", "namespace": "kpo-backstop", "kind": "Group", "subject": "backstop",
                 "xcom": False}]
    cli = Pulumi(project, {**cluster_env, "PULUMI_BACKEND_URL": backend_url(tmp_path_factory.mktemp("state")),
                           "REMOTE_KPO_ROOT": str(ROOT)})
    for stack in ("first", "second"):
        (project / f"Pulumi.{stack}.yaml").write_text(
            json.dumps({"config": {"remote-kpo-access-check:subjects": subjects}}))
        cli.run("stack", "init", stack)
    cli.run("up", "--yes", "--stack", "first")
    result = cli.run("up", "--yes", "--stack", "second", check=False)
    output = said(result)
    assert result.returncode != 0
    assert "conflict" in output and ".metadata.annotations.remote-kpo/stack" in output, output
    assert annotation(kubectl, "kpo-backstop") == "organization/remote-kpo-access-check/first"
    cli.run("destroy", "--yes", "--stack", "first")
