"""What the API server admits into a Deployment's namespace, asked through its exported
kubeconfig with server-side dry runs (admission runs in full; nothing is stored).

Pod Security admission (the namespace labels DeploymentAccess sets) refuses pods that could take
over their node; the LimitRange from podDefaults lets a KPO pod that sets no requests into a
namespace with a cpu/memory quota, which Kubernetes would otherwise refuse.
"""

import json
import uuid
from pathlib import Path

import pytest

# analytics: baseline, no quota; ml-training: baseline, podDefaults and a cpu/memory quota.
NAMESPACES = {"analytics": "kpo-analytics", "ml-training": "kpo-ml-training"}


@pytest.fixture(scope="module")
def kubeconfigs(dev_outputs, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("psa-kubeconfigs")
    paths = {}
    for name, document in dev_outputs["kubeconfigs"].items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(document)
    return paths


def kpo_pod(name: str, **spec_changes) -> dict:
    """The shape of the pod KubernetesPodOperator creates: its labels, a `base` container that
    sets no resources, and, with do_xcom_push, the XCom sidecar sharing an emptyDir."""
    spec = {
        "restartPolicy": "Never",
        "containers": [
            {"name": "base", "image": "python:3.12-slim", "command": ["python", "-c", "print(1)"],
             "volumeMounts": [{"name": "xcom", "mountPath": "/airflow/xcom"}]},
            {"name": "airflow-xcom-sidecar", "image": "alpine",
             "command": ["sh", "-c", "trap \"exit 0\" INT; while true; do sleep 1; done;"],
             "volumeMounts": [{"name": "xcom", "mountPath": "/airflow/xcom"}]},
        ],
        "volumes": [{"name": "xcom", "emptyDir": {}}],
    }
    spec.update(spec_changes)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"dag_id": "psa", "task_id": "probe", "try_number": "1",
                                                  "kubernetes_pod_operator": "True"}},
            "spec": spec}


def dry_run_create(kubectl, pod: dict, kubeconfig: Path | None = None, namespace: str | None = None):
    args = ["create", "--dry-run=server", "-o", "json", "-f", "-"]
    if namespace:
        args += ["--namespace", namespace]
    return kubectl(*args, kubeconfig=kubeconfig, stdin=json.dumps(pod), check=False)


def _privileged():
    pod = kpo_pod("privileged")
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    return pod


HOSTILE = {
    "privileged": (_privileged, 'privileged (container "base" must not set securityContext.privileged=true)'),
    "hostPath": (lambda: kpo_pod("host-path", volumes=[{"name": "xcom", "hostPath": {"path": "/"}}]),
                 'hostPath volumes (volume "xcom")'),
    "hostNetwork": (lambda: kpo_pod("host-network", hostNetwork=True), "host namespaces (hostNetwork=true)"),
}


@pytest.mark.parametrize("name", sorted(NAMESPACES))
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_pod_security_refuses_pods_that_could_take_over_their_node(kubectl, kubeconfigs, name, case):
    build, reason = HOSTILE[case]
    refused = dry_run_create(kubectl, build(), kubeconfigs[name])
    assert refused.returncode != 0
    assert 'is forbidden: violates PodSecurity "baseline:latest": ' in refused.stderr, refused.stderr
    assert reason in refused.stderr


@pytest.mark.parametrize("name", sorted(NAMESPACES))
def test_an_ordinary_kpo_pod_is_admitted_with_a_warning_about_restricted(kubectl, kubeconfigs, name):
    admitted = dry_run_create(kubectl, kpo_pod("ordinary"), kubeconfigs[name])
    assert admitted.returncode == 0, admitted.stderr
    assert json.loads(admitted.stdout)["metadata"]["namespace"] == NAMESPACES[name]
    # warn: restricted tells the DAG author what a move to podSecurity: restricted would take.
    assert 'would violate PodSecurity "restricted:latest"' in admitted.stderr


def test_a_kpo_pod_without_requests_gets_the_pod_defaults_under_a_cpu_and_memory_quota(kubectl, kubeconfigs):
    admitted = dry_run_create(kubectl, kpo_pod("no-requests"), kubeconfigs["ml-training"])
    assert admitted.returncode == 0, admitted.stderr
    containers = json.loads(admitted.stdout)["spec"]["containers"]
    assert [c["resources"]["requests"] for c in containers] == [{"cpu": "250m", "memory": "256Mi"}] * 2


def test_without_pod_defaults_a_cpu_and_memory_quota_refuses_every_pod_that_sets_no_requests(kubectl):
    """Why every Deployment namespace gets a LimitRange with default requests: the same quota
    without one."""
    namespace = f"quota-only-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    try:
        quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": namespace},
                 "spec": {"hard": {"requests.cpu": "8", "requests.memory": "16Gi"}}}
        kubectl("create", "-f", "-", stdin=json.dumps(quota))
        # Quota admission refuses everything until the quota controller has filled the status.
        kubectl("wait", "resourcequota/q", "-n", namespace, "--for=jsonpath={.status.hard.requests\\.cpu}=8",
                "--timeout=60s")
        refused = dry_run_create(kubectl, kpo_pod("no-requests"), namespace=namespace)
        assert refused.returncode != 0
        assert "must specify requests.cpu for: airflow-xcom-sidecar,base; requests.memory for: " \
               "airflow-xcom-sidecar,base" in refused.stderr, refused.stderr
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
