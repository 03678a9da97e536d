"""On `existing` with queueing on, the program reads Kueue's CustomResourceDefinitions before it
registers anything (stacks/existing.py read_cluster): proven against the real API server, with
CRDs of this module's own, so it holds whether or not the session cluster runs Kueue
(test_queueing_real.py does, for the queueing itself). The message built from what is read, and
that nothing is registered after it: tests/test_queueing.py."""

import json
from pathlib import Path

import pytest

from components import queueing
from config import ExistingConfig
from stacks import existing

GROUP = "remote-kpo-e2e.example.com"
PRESENT = f"widgets.{GROUP}"
ABSENT = f"gadgets.{GROUP}"


def crd(served: dict[str, bool]) -> dict:
    """A CRD for `widgets` with the given versions (name -> served); the first one is stored."""
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": PRESENT},
            "spec": {"group": GROUP, "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                     "versions": [{"name": name, "served": on, "storage": i == 0, "schema": schema}
                                  for i, (name, on) in enumerate(served.items())]}}


@pytest.fixture
def widgets(kubectl):
    kubectl("apply", "-f", "-", stdin=json.dumps(crd({"v1beta2": True, "v1beta1": False})))
    yield
    kubectl("delete", "crd", PRESENT, "--wait=false")


def test_the_program_reads_which_crds_exist_and_the_versions_each_serves(cluster_env, widgets, monkeypatch):
    monkeypatch.setattr(queueing, "KUEUE_CRDS", (PRESENT, ABSENT))
    admin = existing.read_admin_kubeconfig(ExistingConfig(kubeconfig=str(Path(cluster_env["KUBECONFIG"]))))
    live = existing.read_cluster(admin, None, queueing=True)
    # The absent one is a 404, not an error; a version that is not served does not count.
    assert live.kueue_crds == {PRESENT: ["v1beta2"]}
    assert existing.read_cluster(admin, None).kueue_crds == {}
