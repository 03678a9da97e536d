"""The local cluster's Kueue (scripts/toolchain kueue, scripts/local-cluster REMOTE_KPO_KUEUE=1) is
the one the cloud stacks install and the program expects on `existing`: same version, and the same
namespaces managed (the label a Deployment namespace gets with queueing on)."""

import re
from pathlib import Path

from components.kueue import KUEUE_VERSION
from components.queueing import QUEUEING_NAMESPACE_LABEL

ROOT = Path(__file__).resolve().parents[1]


def shell_variable(path: str, name: str) -> str:
    [value] = re.findall(rf"^{name}=(\S+)", (ROOT / path).read_text(), re.MULTILINE)
    return value


def test_the_toolchain_builds_the_kueue_version_the_stacks_install():
    assert f"v{shell_variable('scripts/toolchain', 'KUEUE_VERSION')}" == KUEUE_VERSION
    go_mod = (ROOT / "scripts/go/kueue/go.mod").read_text()
    assert re.findall(r"^require sigs\.k8s\.io/kueue (\S+)$", go_mod, re.MULTILINE) == [KUEUE_VERSION]


def test_the_local_kueue_manages_the_namespaces_the_stacks_label_for_queueing():
    assert shell_variable("scripts/local-cluster", "KUEUE_NAMESPACE_LABEL") == QUEUEING_NAMESPACE_LABEL


def test_the_local_kueue_ignores_the_requests_the_cloud_kueue_ignores():
    from components.queueing import EXCLUDED_RESOURCE_PREFIXES
    script = (ROOT / "scripts/local-cluster").read_text()
    [listed] = re.findall(r"^  excludeResourcePrefixes: \[(.*)\]$", script, re.MULTILINE)
    assert tuple(p.strip() for p in listed.split(",")) == EXCLUDED_RESOURCE_PREFIXES
