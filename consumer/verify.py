"""scripts/verify: prove each exported connection works from the consumer's side.

The connection's kube_config is loaded with the official `kubernetes` client's
`load_kube_config_from_dict`, as Airflow's KubernetesHook loads it, and each Deployment goes
through five steps, stopping at its first failure with the reason and the fix:

  1 plugin        the kubeconfig's exec plugin is on PATH (else: the `dockerfile` output's lines)
  2 identity      it authenticates; who the cluster says it is (SelfSubjectReview v1, v1beta1 on
                  1.27; before that only that it authenticates, by a SelfSubjectAccessReview)
  3 permissions   every row of the permission table allowed, every MUST_DENY_* verb denied
                  (SelfSubjectAccessReview; components/permissions.py is the one table)
  4 admission     a KPO-shaped pod (with the stack's `task` shape: its annotations, and on eks the
                  task NodePool's selector and toleration), and a GPU-shaped one when the stack has
                  `gpuTask`, both meeting
                  the restricted Pod Security Standard, admitted
                  by a server-side dry run in its namespace (quota, LimitRange, Pod Security)
  5 pod security  a privileged pod is refused by Pod Security admission

With queueing (Kueue), a Deployment that passes is shown its LocalQueue: how many of its tasks
are admitted and waiting, and the waiting ones in their order in line.

Usage: scripts/verify (--stack S | --connection [--name N] < conn.json | --connection-env VAR)
       [--json]. Exit status 0 only when every Deployment passes every step.

`--explain NAMESPACE/POD` instead prints why that pod waits or ended (dags/remote_kpo_explain.py),
read with the Deployment's connection (`--stack`: the one whose namespace it is; `--connection`,
`--connection-env`) or an admin's kubeconfig (`--kubeconfig PATH`). Exit status 0 when it printed
the summary, 1 when the cluster could not be reached as that identity.
"""

import argparse
import ipaddress
import json
import logging
import os
import re
import shutil
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Optional
from urllib.parse import urlsplit

from kubernetes import client, config
from kubernetes.config import ConfigException
from urllib3.exceptions import HTTPError

from components.kueue import KUEUE_API_VERSION, LOCAL_QUEUE, VISIBILITY_API_VERSION
from components.permissions import KPO_PERMISSIONS, MUST_DENY_CLUSTER_WIDE, MUST_DENY_IN_NAMESPACE, rbac_resource
from consumer.astro_env import GPU_VARIABLE_PREFIX
from consumer.inputs import (CONN_ENV_PREFIX, InputError, Target, exec_command, run_pulumi_outputs,
                             target_from_connection, targets_from_outputs)
from dags import remote_kpo_explain as explain
from dags.remote_kpo_explain import api_message

STEPS = ("plugin", "identity", "permissions", "admission", "pod security")
# KPO's own pod shape (operators/pod.py build_pod_request_obj): its labels, one `base` container,
# restartPolicy Never, and what the restricted Pod Security Standard requires, so it is admitted at
# either podSecurity level: non-root with a uid (busybox's image user is root), the runtime's
# seccomp profile, no privilege escalation, no capabilities.
# https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted
KPO_LABELS = {"kubernetes_pod_operator": "True", "airflow_kpo_in_cluster": "False",
              "dag_id": "remote_kpo_verify", "task_id": "verify"}
VERIFY_IMAGE = "busybox:1.36"
RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                  "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# Seconds per API request: a firewalled API server fails step 2 instead of hanging.
REQUEST_TIMEOUT = 30
UNNAMED_USER = "authenticated (unnamed: SelfSubjectReview needs Kubernetes 1.27+)"
REFRESH_FIX = ("remote-kpo creates it: `pulumi up --refresh` for the stack restores it "
               "(a new token means a new connection: run scripts/astro-env)")


@dataclass
class StepResult:
    step: str
    ok: bool
    detail: str
    fix: str = ""
    hint: str = ""  # more lines for the fix (the Dockerfile lines), printed after the table


@dataclass
class Report:
    name: str
    namespace: str
    user: Optional[str] = None
    steps: list[StepResult] = field(default_factory=list)
    queue: Optional["QueueView"] = None  # with queueing, once every step passed

    @property
    def ok(self) -> bool:
        return len(self.steps) == len(STEPS) and all(s.ok for s in self.steps)


# --- pure pieces -------------------------------------------------------------------------------

def resource_attributes(verb: str, resource: str, namespace: str) -> dict:
    """SelfSubjectAccessReview attributes from RBAC's spelling: `pods/exec` is the exec subresource
    of pods, `roles.rbac.authorization.k8s.io` the roles of that API group."""
    group, resource = rbac_resource(resource)
    name, _, subresource = resource.partition("/")
    attributes = {"verb": verb, "resource": name, "group": group, "namespace": namespace}
    if subresource:
        attributes["subresource"] = subresource
    return attributes


def kpo_pod(namespace: str, name: str = "remote-kpo-verify") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(KPO_LABELS)},
            "spec": {"restartPolicy": "Never", "securityContext": dict(RESTRICTED_POD),
                     "containers": [{"name": "base", "image": VERIFY_IMAGE, "command": ["sh", "-c", "true"],
                                     "securityContext": dict(RESTRICTED_CONTAINER)}]}}


def shaped(pod: dict, shape: dict) -> dict:
    """`pod` as a task passing a task-shape output (`task`, `gpuTask`) makes it."""
    pod["metadata"]["annotations"] = dict(shape.get("annotations") or {})
    pod["spec"]["nodeSelector"] = dict(shape.get("nodeSelector") or {})
    pod["spec"]["tolerations"] = list(shape.get("tolerations") or [])
    return pod


def task_pod(namespace: str, task: Optional[dict]) -> dict:
    """The pod an ordinary task makes from the stack's `task` output (README: Tasks that outlive
    their node's plans); KPO's own shape without one."""
    pod = kpo_pod(namespace)
    return shaped(pod, task) if task else pod


def gpu_pod(namespace: str, gpu_task: dict) -> dict:
    """The pod a GPU task makes from the stack's `gpuTask` output (README: GPU pools)."""
    pod = shaped(kpo_pod(namespace, "remote-kpo-verify-gpu"), gpu_task)
    pod["spec"]["containers"][0]["resources"] = {"limits": {gpu_task["resourceName"]: "1"}}
    return pod


def privileged_pod(namespace: str) -> dict:
    pod = kpo_pod(namespace, "remote-kpo-verify-privileged")
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    return pod


def connection_reason(error) -> str:
    """What urllib3 says went wrong, without its object reprs: `[Errno 111] Connection refused`."""
    reason = str(getattr(error, "reason", None) or error)
    return re.sub(r"<[^>]*>:?\s*", "", reason)


def reach_fix(host: str, reason: str) -> str:
    """The fix for an API server that did not answer at `host` (https://name:port)."""
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        return "the connection's CA is not the API server's: use the stack's current airflowConnections output"
    address = urlsplit(host).hostname or ""
    if "Connection refused" in reason and (address == "localhost" or _is_loopback(address)):
        # Nothing listens on this machine's port: no firewall is involved.
        return ("the API server is not running on this machine: start it (`make dev`, or `scripts/local-cluster "
                "up` for the local cluster), then run verify again")
    return ("Astro must reach the API server: check the cluster's authorized networks "
            "(gke.masterAuthorizedNetworks, eks.publicAccessCidrs, aks.authorizedIpRanges) or existing.server")


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def admission_fix(message: str) -> str:
    if "violates PodSecurity" in message:
        return "the pod breaks the namespace's Pod Security level: set the Deployment's podSecurity, or fix the pod"
    if "must specify" in message:
        return "a ResourceQuota needs requests the pod does not set: give the Deployment podDefaults"
    if "exceeded quota" in message:
        return "the namespace's ResourceQuota is used up or too small: raise the Deployment's quota"
    if "denied request: remote-kpo: " in message:
        return "the Deployment's admission policy refuses this pod: its message says what to change (README: Tenants)"
    if "forbidden" in message.lower():
        return "create pods is denied: the Deployment's Role or RoleBinding; " + REFRESH_FIX
    return "read the API server's message above"


# --- the steps ---------------------------------------------------------------------------------

def check_plugin(target: Target, which: Callable = shutil.which) -> StepResult:
    command = exec_command(target.kube_config)
    if command is None:
        return StepResult("plugin", True, "none needed (token)")
    found = which(command)
    if found:
        return StepResult("plugin", True, found)
    where = "" if os.sep in command else " on PATH"
    return StepResult("plugin", False, f"exec plugin {command!r} is not found{where}",
                      "add the stack's `dockerfile` output to the Astro project's Dockerfile",
                      target.dockerfile or "")


@contextmanager
def logged_errors() -> Iterator[list[str]]:
    """The kubernetes client logs, and does not raise, an exec plugin's failure: collect it."""
    errors: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            errors.append(record.getMessage())

    handler = Collect(logging.ERROR)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield errors
    finally:
        root.removeHandler(handler)


def connect(target: Target):
    """(ApiClient, plugin errors) with the kubeconfig loaded as KubernetesHook loads it."""
    configuration = client.Configuration()
    with logged_errors() as errors:
        config.load_kube_config_from_dict(target.kube_config, client_configuration=configuration,
                                          persist_config=False)
    return client.ApiClient(configuration), errors


def reviewed_user(api) -> tuple[bool, Optional[str]]:
    """(whether the cluster serves SelfSubjectReview, the user it names). Served as v1 from
    Kubernetes 1.28 and as v1beta1 in 1.27, which the client has no model for (KEP-3325); older
    clusters answer 404 to both. Other refusals raise ApiException."""
    try:
        review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview(),
                                                                            _request_timeout=REQUEST_TIMEOUT)
        return True, review.status.user_info.username if review.status and review.status.user_info else None
    except client.ApiException as error:
        if error.status != 404:
            raise
    try:
        data = api.call_api("/apis/authentication.k8s.io/v1beta1/selfsubjectreviews", "POST",
                            header_params={"Accept": "application/json", "Content-Type": "application/json"},
                            body={"apiVersion": "authentication.k8s.io/v1beta1", "kind": "SelfSubjectReview"},
                            response_types_map={200: "object", 201: "object"}, auth_settings=["BearerToken"],
                            _return_http_data_only=True, _request_timeout=REQUEST_TIMEOUT)
    except client.ApiException as error:
        if error.status != 404:
            raise
        return False, None
    return True, ((data or {}).get("status") or {}).get("userInfo", {}).get("username")


def check_identity(target: Target) -> tuple[StepResult, object]:
    try:
        api, plugin_errors = connect(target)
    except (ConfigException, ValueError, KeyError, TypeError) as error:
        return StepResult("identity", False, f"the kube_config does not load: {error}",
                          "use the connection exactly as the stack's airflowConnections output has it"), None
    token_user = exec_command(target.kube_config) is None
    refused_fix = (f"the ServiceAccount token was revoked or the cluster rebuilt; {REFRESH_FIX}" if token_user
                   else "the plugin's identity is not one the cluster knows: check the Deployment's identity "
                        "in the stack config and that Astro runs with it")
    try:
        served, user = reviewed_user(api)
        if not served:
            # No review to name the user: an accepted access review still proves it authenticated
            # (system:basic-user lets only authenticated users create them).
            authz = client.AuthorizationV1Api(api)
            authz.create_self_subject_access_review(client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
                    verb="get", resource="pods", namespace=target.namespace))), _request_timeout=REQUEST_TIMEOUT)
            return StepResult("identity", True, UNNAMED_USER), api
    except client.ApiException as error:
        detail = f"refused ({error.status}): {api_message(error)}"
        if plugin_errors:
            detail += f" (exec plugin: {plugin_errors[-1]})"
        return StepResult("identity", False, detail, refused_fix), None
    except HTTPError as error:
        reason = connection_reason(error)
        return StepResult("identity", False, f"cannot reach {api.configuration.host}: {reason}",
                          reach_fix(api.configuration.host, reason)), None
    if not user or user == "system:anonymous":
        detail = "the cluster sees an anonymous user"
        if plugin_errors:
            detail += f" (exec plugin: {plugin_errors[-1]})"
        return StepResult("identity", False, detail, refused_fix), None
    return StepResult("identity", True, user), api


def check_permissions(api, namespace: str) -> StepResult:
    authz = client.AuthorizationV1Api(api)

    def allowed(verb: str, resource: str, ns: str) -> bool:
        spec = client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(**resource_attributes(verb, resource, ns)))
        review = authz.create_self_subject_access_review(client.V1SelfSubjectAccessReview(spec=spec))
        return bool(review.status.allowed)

    required: list[tuple[str, bool]] = []
    # Rows that apply only with `xcom` or with `queueing`, which a connection does not say: all or none.
    optional: dict[str, list[tuple[str, bool]]] = {"xcom": [], "queueing": []}
    for row in KPO_PERMISSIONS:
        kind = "xcom" if row.xcom_only else "queueing" if row.queueing_only else None
        for verb in row.verbs:
            (optional[kind] if kind else required).append((f"{verb} {row.resource}",
                                                          allowed(verb, row.resource, namespace)))
    denied = [what for what, ok in required if not ok]
    if denied:
        return StepResult("permissions", False, f"denied in {namespace}: {', '.join(denied)}",
                          f"the namespace's Role or RoleBinding `remote-kpo` is missing or changed; {REFRESH_FIX}")
    on = {kind: [what for what, ok in rows if ok] for kind, rows in optional.items()}
    for kind, rows in optional.items():
        if on[kind] and len(on[kind]) != len(rows):
            partial = [what for what, ok in rows if not ok]
            return StepResult("permissions", False, f"denied in {namespace}: {', '.join(partial)} ({kind} is half on)",
                              f"the Role `remote-kpo` was changed; {REFRESH_FIX}")
    too_much = [f"{verb} {resource} in {namespace}" for verb, resource in MUST_DENY_IN_NAMESPACE
                if allowed(verb, resource, namespace)]
    too_much += [f"{verb} {resource} (cluster-wide)" for verb, resource in MUST_DENY_CLUSTER_WIDE
                 if allowed(verb, resource, "")]
    if too_much:
        return StepResult("permissions", False, f"allowed: {', '.join(too_much)}",
                          "another RoleBinding or ClusterRoleBinding grants this identity more than KPO needs: "
                          "find it (kubectl get rolebindings,clusterrolebindings -A -o wide) and remove it")
    rows = len(required) + sum(len(allowed_rows) for allowed_rows in on.values())
    denied_count = (len(MUST_DENY_IN_NAMESPACE) + len(MUST_DENY_CLUSTER_WIDE)
                    + sum(len(optional[kind]) - len(on[kind]) for kind in optional))
    return StepResult("permissions", True, f"{rows} allowed, {denied_count} denied, xcom "
                      f"{'on' if on['xcom'] else 'off'}" + (", queueing on" if on["queueing"] else ""))


def dry_run(api, namespace: str, pod: dict) -> Optional[str]:
    """None when the API server would admit `pod`, else its message."""
    try:
        client.CoreV1Api(api).create_namespaced_pod(namespace, pod, dry_run="All")
    except client.ApiException as error:
        return api_message(error)
    return None


def check_admission(api, target: Target) -> StepResult:
    pods = [("KPO pod", task_pod(target.namespace, target.task))]
    if target.gpu_task:
        pods.append(("GPU pod", gpu_pod(target.namespace, target.gpu_task)))
    for what, pod in pods:
        refused = dry_run(api, target.namespace, pod)
        if refused:
            return StepResult("admission", False, f"{what} refused: {refused}", admission_fix(refused))
    return StepResult("admission", True, " and ".join(what for what, _ in pods) + " admitted (dry run)")


def check_pod_security(api, namespace: str) -> StepResult:
    refused = dry_run(api, namespace, privileged_pod(namespace))
    if refused and "violates PodSecurity" in refused:
        return StepResult("pod security", True, "privileged pod refused")
    if refused:
        return StepResult("pod security", False, f"privileged pod refused, but not by Pod Security: {refused}",
                          admission_fix(refused))
    return StepResult("pod security", False, f"privileged pod admitted: Pod Security is not enforced on {namespace}",
                      "label the namespace pod-security.kubernetes.io/enforce=baseline; " + REFRESH_FIX)


def verify(target: Target, which: Callable = shutil.which) -> Report:
    """Run the steps in order for one Deployment, stopping at the first failure."""
    report = Report(target.name, target.namespace)
    report.steps.append(check_plugin(target, which))
    if not report.steps[-1].ok:
        return report
    identity, api = check_identity(target)
    report.steps.append(identity)
    if not identity.ok:
        return report
    report.user = identity.detail
    with api:
        for step in (lambda: check_permissions(api, target.namespace), lambda: check_admission(api, target),
                     lambda: check_pod_security(api, target.namespace)):
            report.steps.append(step())
            if not report.steps[-1].ok:
                break
        if report.ok:
            report.queue = queue_view(api, target.namespace)
    return report


# --- the Deployment's queue (queueing on) --------------------------------------------------------

@dataclass
class QueueView:
    """What verify shows of a queued Deployment's LocalQueue and its tasks waiting in it."""

    local_queue: str
    cluster_queue: str
    admitted: int
    pending: int
    in_line: list[str]  # the waiting tasks' pods, first in line first
    order: str  # where the order comes from


def _condition(workload: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (workload.get("status") or {}).get("conditions") or [])


def _task_of(item: dict) -> str:
    """The pod a Workload (or a visibility PendingWorkload) stands for: its owner."""
    owners = (item.get("metadata") or {}).get("ownerReferences") or []
    pods = [owner["name"] for owner in owners if owner.get("kind") == "Pod"]
    return pods[0] if pods else f"workload {item['metadata']['name']}"


def waiting_in_line(workloads: list[dict]) -> list[str]:
    """The waiting tasks of a namespace's Workloads, in the order Kueue's BestEffortFIFO takes them
    (higher priority first, then older first, then by UID: creation times have whole seconds, and
    tasks sent together share one; sigs.k8s.io/kueue v0.17.0 pkg/cache/queue/cluster_queue.go,
    baseCompareFunc): those neither admitted nor finished."""
    waiting = [w for w in workloads if not _condition(w, "Admitted") and not _condition(w, "Finished")]
    waiting.sort(key=lambda w: (-int((w.get("spec") or {}).get("priority") or 0), w["metadata"]["creationTimestamp"],
                                w["metadata"].get("uid", "")))
    return [_task_of(w) for w in waiting]


def _get(api, path: str) -> dict:
    return api.call_api(path, "GET", header_params={"Accept": "application/json"}, response_types_map={200: "object"},
                        auth_settings=["BearerToken"], _return_http_data_only=True,
                        _request_timeout=REQUEST_TIMEOUT) or {}


def queue_view(api, namespace: str) -> Optional[QueueView]:
    """The Deployment's LocalQueue and its place in line for each waiting task, or None when its
    namespace has no LocalQueue it may read (queueing off). The places come from Kueue's
    visibility API when the cluster serves it, else from the Workloads in Kueue's order."""
    try:
        queue = _get(api, f"/apis/{KUEUE_API_VERSION}/namespaces/{namespace}/localqueues/{LOCAL_QUEUE}")
    except client.ApiException as error:
        if error.status in (403, 404):
            return None
        raise
    status = queue.get("status") or {}
    try:
        summary = _get(api, f"/apis/{VISIBILITY_API_VERSION}/namespaces/{namespace}/localqueues/{LOCAL_QUEUE}"
                            "/pendingworkloads")
        items = sorted(summary.get("items") or [], key=lambda item: item.get("positionInLocalQueue", 0))
        in_line, order = [_task_of(item) for item in items], "Kueue's visibility API"
    except client.ApiException:
        workloads = _get(api, f"/apis/{KUEUE_API_VERSION}/namespaces/{namespace}/workloads").get("items") or []
        in_line, order = waiting_in_line(workloads), "priority, then age (the visibility API is not served)"
    return QueueView(LOCAL_QUEUE, (queue.get("spec") or {}).get("clusterQueue", "?"),
                     int(status.get("admittedWorkloads") or 0), int(status.get("pendingWorkloads") or 0),
                     in_line, order)


def render_queue(name: str, view: QueueView) -> list[str]:
    lines = [f"{name}: queue {view.local_queue} (ClusterQueue {view.cluster_queue}): {view.admitted} admitted, "
             f"{view.pending} waiting"]
    lines += [f"  {place}. {task}" for place, task in enumerate(view.in_line, 1)]
    if view.in_line:
        lines.append(f"  (order: {view.order})")
    return lines


# --- output ------------------------------------------------------------------------------------

def render_table(reports: list[Report]) -> str:
    """One row per Deployment, one column per step (ok, FAIL, or - when not reached), then each
    failure's reason and fix."""
    header = ["DEPLOYMENT", "NAMESPACE", *[f"{i} {s.upper()}" for i, s in enumerate(STEPS, 1)], "USER"]
    rows = [header]
    for report in reports:
        cells = ["ok" if s.ok else "FAIL" for s in report.steps] + ["-"] * (len(STEPS) - len(report.steps))
        rows.append([report.name, report.namespace, *cells, report.user or "-"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    for report in reports:
        for number, step in enumerate(report.steps, 1):
            if not step.ok:
                lines += ["", f"{report.name}: step {number} ({step.step}) failed: {step.detail}",
                          f"  fix: {step.fix}"]
                lines += [f"    {line}" for line in step.hint.splitlines()]
    for report in reports:
        if report.queue is not None:
            lines += ["", *render_queue(report.name, report.queue)]
    passed = sum(r.ok for r in reports)
    lines += ["", f"verify: {passed} of {len(reports)} Deployments pass every step"]
    return "\n".join(lines)


def render_json(reports: list[Report]) -> str:
    return json.dumps({"ok": all(r.ok for r in reports),
                       "deployments": [{"name": r.name, "namespace": r.namespace, "user": r.user, "ok": r.ok,
                                        "steps": [asdict(s) for s in r.steps],
                                        "queue": asdict(r.queue) if r.queue else None} for r in reports]}, indent=2)


# --- the environment verify runs in ------------------------------------------------------------

# The provider's trigger refuses a connection's kube_config next to a config_dict (hooks/kubernetes.py
# AsyncKubernetesHook._load_config, cncf.kubernetes 10.25.0).
MUTUALLY_EXCLUSIVE = ("Options kube_config_path, kube_config, in_cluster, and config_dict are "
                      "mutually exclusive")


def kubeconfig_env_warning(environ) -> Optional[str]:
    """What a set KUBECONFIG breaks where Airflow runs: a deferrable KPO task reads that file
    (operators/pod.py convert_config_file_to_dict, cncf.kubernetes 10.25.0) and hands it to its
    trigger as config_dict beside the connection's kube_config, which the trigger refuses on every
    poll. Sync tasks never read it."""
    path = environ.get("KUBECONFIG")
    if not path:
        return None
    return (f"KUBECONFIG is set in this environment ({path}). Where Airflow runs, it breaks every deferrable "
            f"KubernetesPodOperator task: its trigger fails each poll with \"{MUTUALLY_EXCLUSIVE}\" (sync tasks "
            "are unaffected). Unset KUBECONFIG in the Astro Deployment's environment variables.")


# --- command line ------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/verify", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="read every Deployment's connection from this stack's outputs")
    source.add_argument("--connection", action="store_true", help="read one Airflow connection JSON from stdin")
    source.add_argument("--connection-env", metavar="VAR", help="read one connection from this variable, "
                        "e.g. AIRFLOW_CONN_KPO_ANALYTICS")
    source.add_argument("--kubeconfig", metavar="PATH", help="with --explain: read as this kubeconfig's user "
                        "(an admin's, who may also read Karpenter's NodePools and NodeClaims)")
    parser.add_argument("--name", default="connection", help="the name to report a --connection under")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--explain", metavar="NAMESPACE/POD", help="why this pod waits or ended, instead of the steps")
    return parser.parse_args(argv)


def gpu_task_variable(connection_env: str, environ) -> Optional[dict]:
    """The gpuTask shape scripts/astro-env sets beside a connection variable, when it is there."""
    name = GPU_VARIABLE_PREFIX + connection_env[len(CONN_ENV_PREFIX):]
    if not connection_env.startswith(CONN_ENV_PREFIX) or not environ.get(name):
        return None
    try:
        return json.loads(environ[name])
    except json.JSONDecodeError as error:
        raise InputError(f"{name}: not JSON ({error.msg}); it holds the stack's gpuTask output")


def load_targets(args: argparse.Namespace, stdin=sys.stdin, environ=os.environ,
                 outputs_of: Callable = run_pulumi_outputs) -> list[Target]:
    if args.stack:
        return targets_from_outputs(outputs_of(args.stack), args.stack)
    if args.connection_env:
        if args.connection_env not in environ:
            raise InputError(f"{args.connection_env}: not set")
        return [target_from_connection(environ[args.connection_env], args.connection_env,
                                       gpu_task_variable(args.connection_env, environ))]
    return [target_from_connection(stdin.read(), args.name)]


# --- --explain ---------------------------------------------------------------------------------

def pod_reference(text: str) -> tuple[str, str]:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise InputError(f"--explain {text}: expected NAMESPACE/POD, e.g. kpo-analytics/train-x7k2")
    return namespace, name


def explain_target(targets: list[Target], namespace: str) -> Target:
    """The stack's Deployment whose namespace the pod is in."""
    for target in targets:
        if target.namespace == namespace:
            return target
    raise InputError(f"no Deployment of the stack runs in namespace {namespace} "
                     f"(its namespaces: {', '.join(t.namespace for t in targets)})")


def admin_client(path: str):
    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=os.path.expanduser(path), client_configuration=configuration,
                                persist_config=False)
    except (ConfigException, OSError) as error:
        raise InputError(f"--kubeconfig {path}: {error}")
    return client.ApiClient(configuration)


def run_explain(args: argparse.Namespace) -> int:
    """Print the summary of one pod; 1 when the cluster cannot be reached as the chosen identity."""
    namespace, name = pod_reference(args.explain)
    if args.json:
        raise InputError("--explain prints one screen for a person; it has no --json")
    gpu_task = None
    if args.kubeconfig:
        api = admin_client(args.kubeconfig)
    else:
        targets = load_targets(args)
        # A connection given alone is used as it is: it may read only its own namespace.
        target = explain_target(targets, namespace) if args.stack else targets[0]
        gpu_task = target.gpu_task
        identity, api = check_identity(target)
        if not identity.ok:
            print(f"verify: {target.name}: {identity.detail}\n  fix: {identity.fix}")
            return 1
    with api:
        try:
            facts = explain.read(api, namespace, name, gpu_task)
        except HTTPError as error:
            print(f"verify: cannot reach {api.configuration.host}: {connection_reason(error)}")
            return 1
    print(explain.render(facts))
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        if args.explain:
            return run_explain(args)
        if args.kubeconfig:
            raise InputError("--kubeconfig goes with --explain; the steps check a Deployment's connection")
        targets = load_targets(args)
    except InputError as error:
        print(f"verify: {error}", file=sys.stderr)
        return 2
    warning = kubeconfig_env_warning(os.environ)
    if warning:
        print(f"verify: warning: {warning}", file=sys.stderr)
    reports = [verify(target) for target in targets]
    print(render_json(reports) if args.json else render_table(reports))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
