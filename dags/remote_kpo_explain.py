"""Why is my task stuck? One screen about one KubernetesPodOperator pod, from what the caller may read.

Used by `scripts/verify --explain <namespace>/<pod>` (consumer/verify.py), with a Deployment's own
connection or the admin kubeconfig, and by dags/remote_kpo_smoke.py when its GPU task fails, in
Airflow with the connection alone. So it needs nothing but the `kubernetes` client (which the
cncf.kubernetes provider brings), and it lives beside the DAG: copy both files into the Astro
project's dags/.

`read` collects the facts (the pod, its events, the namespace's ResourceQuotas, Karpenter's
NodePools and NodeClaims); what cannot be read is noted with the reason, never raised: a
Deployment's Role is namespaced (components/permissions.py), so it cannot list the cluster-scoped
NodePools and NodeClaims. `causes` and `render` are pure functions of those facts (plain dicts in the
API's JSON spelling, as `kubectl get -o json` prints them).
"""

import json
from dataclasses import dataclass, field
from typing import Optional

# Karpenter's API (sigs.k8s.io/karpenter v1.15 pkg/apis/v1; EKS Auto Mode serves the same group).
KARPENTER_GROUP, KARPENTER_VERSION = "karpenter.sh", "v1"
NODE_POOL_LABEL = "karpenter.sh/nodepool"
# The Deployment config key behind each resource of its ResourceQuota `remote-kpo-quota`
# (components/access.py resource_quota_hard; tests/test_explain.py holds the two together).
QUOTA_KEYS = {"requests.cpu": "quota.cpu", "requests.memory": "quota.memory",
              "requests.nvidia.com/gpu": "quota.gpu", "pods": "quota.pods", "count/pods": "quota.totalPods"}
# What a kubelet reports while it cannot get the image (kubelet pkg/kubelet/images/types.go).
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                      "RegistryUnavailable")
# Waiting reasons of a container that is on its way (kubelet): not a cause.
STARTING_REASONS = ("ContainerCreating", "PodInitializing")
# Karpenter's words when a NodePool's `limits` keep it from adding a node (v1.15
# pkg/controllers/provisioning/scheduling/scheduler.go addToNewNodeClaim), and when the pod does not
# tolerate a pool's taints (pkg/scheduling/taints.go), in its FailedScheduling event on the pod.
KARPENTER_LIMIT_WORDS = ("exceed limits for nodepool", "limits have been exhausted for nodepool")
KARPENTER_TAINT_WORDS = "did not tolerate taint"
EVENTS_SHOWN = 8
REQUEST_TIMEOUT = 30
README = "remote-kpo README"


@dataclass
class Facts:
    """What could be read about one pod. None for a list means it could not be read (`unreadable`
    says why); `pod` None with no `unreadable["pod"]` means there is no such pod."""

    namespace: str
    name: str
    pod: Optional[dict] = None
    events: list[dict] = field(default_factory=list)
    quotas: Optional[list[dict]] = None
    node_pools: Optional[list[dict]] = None
    node_claims: Optional[list[dict]] = None
    unreadable: dict[str, str] = field(default_factory=dict)
    gpu_task: Optional[dict] = None  # the stack's `gpuTask` output, when the caller has it


@dataclass(frozen=True)
class Cause:
    what: str
    next_step: str


# --- reading -------------------------------------------------------------------------------------

def unreadable_reason(status: int, message: str, cluster_scoped: bool) -> str:
    if status == 403 and cluster_scoped:
        return ("not readable with this connection: cluster-scoped, and a Deployment's Role is namespaced; "
                "the platform team can run `scripts/verify --explain` with the admin kubeconfig")
    if status == 403:
        return f"forbidden ({message}): the Deployment's Role lacks it; `pulumi up --refresh` restores the Role"
    if status == 404 and cluster_scoped:
        return "not on this cluster (no Karpenter: GKE's and AKS's pools scale with their cluster autoscaler)"
    return f"{status}: {message}"


def read(api, namespace: str, name: str, gpu_task: Optional[dict] = None) -> Facts:
    """The facts about pod `namespace/name`, read through `api` (a kubernetes.client.ApiClient).
    Connection errors (urllib3) are raised; refusals are noted in `unreadable`."""
    from kubernetes import client

    facts = Facts(namespace, name, gpu_task=gpu_task)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)

    def attempt(what: str, call, cluster_scoped: bool = False):
        try:
            return call()
        except client.ApiException as error:
            if what == "pod" and error.status == 404:
                return None
            facts.unreadable[what] = unreadable_reason(error.status, api_message(error), cluster_scoped)
            return None

    pod = attempt("pod", lambda: core.read_namespaced_pod(name, namespace, _request_timeout=REQUEST_TIMEOUT))
    facts.pod = api.sanitize_for_serialization(pod) if pod is not None else None
    events = attempt("events", lambda: core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}", _request_timeout=REQUEST_TIMEOUT))
    facts.events = api.sanitize_for_serialization(events.items) if events is not None else []
    quotas = attempt("resourcequotas", lambda: core.list_namespaced_resource_quota(
        namespace, _request_timeout=REQUEST_TIMEOUT))
    facts.quotas = api.sanitize_for_serialization(quotas.items) if quotas is not None else None

    def karpenter(plural: str) -> Optional[list[dict]]:
        listed = attempt(plural, lambda: custom.list_cluster_custom_object(
            KARPENTER_GROUP, KARPENTER_VERSION, plural, _request_timeout=REQUEST_TIMEOUT), cluster_scoped=True)
        return listed["items"] if listed is not None else None

    facts.node_pools, facts.node_claims = karpenter("nodepools"), karpenter("nodeclaims")
    return facts


def api_message(error) -> str:
    """The API server's own message from an ApiException (its body is a Status object)."""
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


# --- quantities, tolerations ---------------------------------------------------------------------

_SUFFIXES = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
             "E": 1e18, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def quantity(text) -> float:
    """A Kubernetes quantity (`250m`, `16Gi`, `1e3`) as a number."""
    text = str(text)
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIXES[suffix]
    return float(text)


def tolerates(toleration: dict, taint: dict) -> bool:
    """Kubernetes' rule (k8s.io/api core/v1 toleration.go ToleratesTaint): the effect matches or is
    empty, the key matches or is empty with Exists, and Exists matches any value, Equal only its own.
    A taint without a value (known only from a gpuTask toleration with Exists) matches any value."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return True
    return taint.get("value") is None or toleration.get("value", "") == taint["value"]


def taint_text(taint: dict) -> str:
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint['key']}{value}:{taint.get('effect', '')}"


# --- the GPU pool --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolShape:
    """What a pod needs to land on the GPU pool: its labels, the taints it must tolerate, its resource."""

    labels: dict
    taints: list
    resource: str
    source: str


def pool_shape(facts: Facts) -> Optional[PoolShape]:
    """From the stack's gpuTask, else from a NodePool that names the GPU resource in its limits."""
    if facts.gpu_task:
        taints = [{k: v for k, v in t.items() if k in ("key", "value", "effect")}
                  for t in facts.gpu_task.get("tolerations") or []]
        return PoolShape(dict(facts.gpu_task.get("nodeSelector") or {}), taints,
                         facts.gpu_task.get("resourceName", "nvidia.com/gpu"), "the stack's gpuTask")
    for pool in facts.node_pools or []:
        limits = (pool.get("spec") or {}).get("limits") or {}
        gpu = next((r for r in limits if r.endswith("/gpu")), None)
        if gpu:
            return PoolShape(template_labels(pool), list(pool["spec"]["template"]["spec"].get("taints") or []), gpu,
                             f"NodePool {pool['metadata']['name']}")
    return None


def template_labels(pool: dict) -> dict:
    """The labels a NodePool puts on its nodes."""
    return dict((pool["spec"]["template"].get("metadata") or {}).get("labels") or {})


def requested(pod: dict, resource: str) -> float:
    """What the pod's containers ask for of `resource` (limits stand for requests of extended resources)."""
    total = 0.0
    for container in pod["spec"].get("containers", []):
        resources = container.get("resources") or {}
        amount = (resources.get("requests") or {}).get(resource) or (resources.get("limits") or {}).get(resource)
        total += quantity(amount) if amount else 0
    return total


def wants_pool(pod: dict, shape: PoolShape) -> bool:
    """A GPU pod: it asks for the pool's resource or selects one of its labels."""
    selector = pod["spec"].get("nodeSelector") or {}
    return bool(requested(pod, shape.resource)) or any(selector.get(k) == v for k, v in shape.labels.items())


def pool_match(pod: dict, shape: PoolShape) -> tuple[list[str], list[dict]]:
    """(labels the pod does not select, taints it does not tolerate)."""
    selector = pod["spec"].get("nodeSelector") or {}
    missing_labels = [f"{k}={v}" for k, v in shape.labels.items() if selector.get(k) != v]
    tolerations = pod["spec"].get("tolerations") or []
    untolerated = [t for t in shape.taints if not any(tolerates(tol, t) for tol in tolerations)]
    return missing_labels, untolerated


def pods_pools(facts: Facts) -> list[dict]:
    """The NodePools whose labels the pod selects (all of them when it selects none)."""
    pools = facts.node_pools or []
    if not facts.pod:
        return pools
    selector = facts.pod["spec"].get("nodeSelector") or {}
    chosen = [p for p in pools if template_labels(p)
              and all(selector.get(k) == v for k, v in template_labels(p).items())]
    return chosen or pools


def pool_at_limit(pool: dict) -> list[str]:
    """`resource used of limit` for each limit the NodePool's nodes have reached."""
    limits = pool["spec"].get("limits") or {}
    used = (pool.get("status") or {}).get("resources") or {}
    return [f"{resource} {used.get(resource, '0')} of {limit}" for resource, limit in limits.items()
            if quantity(used.get(resource, "0")) >= quantity(limit)]


def condition(obj: dict, kind: str) -> Optional[dict]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


# --- causes --------------------------------------------------------------------------------------

def quota_use(quota: dict) -> tuple[dict, dict]:
    """(hard, used) of a ResourceQuota, as its status reports them."""
    status = quota.get("status") or {}
    return status.get("hard") or quota["spec"].get("hard") or {}, status.get("used") or {}


def used_up(limit: str, used: str) -> bool:
    """A quota resource with a limit above zero that its use has reached (a 0 admits none by design)."""
    return quantity(limit) > 0 and quantity(used) >= quantity(limit)


def quota_causes(facts: Facts) -> list[Cause]:
    found = []
    for quota in facts.quotas or []:
        hard, used = quota_use(quota)
        for resource, limit in hard.items():
            if not used_up(limit, used.get(resource, "0")):
                continue
            key = QUOTA_KEYS.get(resource)
            if resource == "count/pods":
                step = ("finished pods count here too: delete those KPO kept (on_finish_action keep_pod or "
                        f"delete_succeeded_pod), or raise the Deployment's `{key}`")
            elif key:
                step = (f"wait for the namespace's running or Pending pods (a Pending pod holds its share too), "
                        f"or raise the Deployment's `{key}` and `pulumi up`")
            else:
                step = f"ResourceQuota {quota['metadata']['name']} is not remote-kpo's: ask whoever made it"
            found.append(Cause(f"quota used up: {quota['metadata']['name']} {resource} {used.get(resource)} of "
                               f"{limit}; a new pod asking for it is refused at creation (`exceeded quota`)", step))
    return found


def scheduling_causes(facts: Facts) -> list[Cause]:
    """Why no node took the pod: the GPU pool's selector and taint, a NodePool at its limit, a
    launch Karpenter could not make; else the scheduler's own words."""
    pod = facts.pod
    assert pod is not None
    found: list[Cause] = []
    shape = pool_shape(facts)
    messages = [e.get("message") or "" for e in sorted(facts.events, key=_event_time)
                if e.get("reason") == "FailedScheduling"]
    untolerated: list[dict] = []
    if shape and wants_pool(pod, shape):
        missing_labels, untolerated = pool_match(pod, shape)
        if missing_labels:
            found.append(Cause(f"the pod does not select the GPU pool: no nodeSelector {', '.join(missing_labels)}",
                               "pass the gpuTask's nodeSelector (README: GPU tasks)"))
        if untolerated:
            found.append(Cause("the pod does not tolerate the GPU nodes' taint "
                               f"{', '.join(taint_text(t) for t in untolerated)}",
                               "pass the gpuTask's tolerations (README: GPU tasks)"))
    karpenter_taint = next((m for m in messages if KARPENTER_TAINT_WORDS in m), None)
    if karpenter_taint and not untolerated:
        found.append(Cause(f"Karpenter: {karpenter_taint}",
                           "add a toleration for that taint (a GPU task: the gpuTask's tolerations, "
                           "README: GPU tasks)"))
    limit_step = ("raise the GPU pool's size (gpuPool.maxNodes: the NodePool's GPU limit is maxNodes × GPUs per "
                  "node) and `pulumi up`, or wait for running GPU tasks to end")
    for pool in pods_pools(facts):
        reached = pool_at_limit(pool)
        if reached:
            found.append(Cause(f"NodePool {pool['metadata']['name']} is at its limit: {', '.join(reached)}",
                               limit_step))
    karpenter_limit = next((m for m in messages if any(w in m for w in KARPENTER_LIMIT_WORDS)), None)
    if karpenter_limit and facts.node_pools is None:
        found.append(Cause(f"a NodePool is at its limit (Karpenter: {karpenter_limit})", limit_step))
    for claim in facts.node_claims or []:
        launched = condition(claim, "Launched")
        if claim_of(claim, facts) and launched and launched.get("status") == "False":
            found.append(Cause(f"Karpenter could not launch NodeClaim {claim['metadata']['name']}: "
                               f"{launched.get('reason')}: {launched.get('message', '')}",
                               "the cloud's capacity or GPU quota for the pool's instance type (README: GPU tasks, "
                               "Quota first)"))
    if not found:
        said = messages[-1] if messages else (condition(pod, "PodScheduled") or {}).get("message", "")
        found.append(Cause(f"no node takes the pod: {said}".rstrip(": "),
                           "read the scheduler's reasons above: a taint the pod does not tolerate, a selector no "
                           "node has, or no node with the CPU, memory or GPU it asks for"))
    return found


def claim_of(claim: dict, facts: Facts) -> bool:
    """A NodeClaim of one of the pod's NodePools."""
    names = {p["metadata"]["name"] for p in pods_pools(facts)}
    return not names or (claim["metadata"].get("labels") or {}).get(NODE_POOL_LABEL) in names


def container_causes(pod: dict) -> list[Cause]:
    """What keeps a placed pod's containers from running, or how they ended."""
    found = []
    limits = {c["name"]: ((c.get("resources") or {}).get("limits") or {}) for c in pod["spec"].get("containers", [])}
    images = {c["name"]: c.get("image") for c in pod["spec"].get("containers", [])}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        name, state = status["name"], status.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or (status.get("lastState") or {}).get("terminated") or {}
        if waiting.get("reason") in IMAGE_PULL_REASONS:
            found.append(Cause(f"container {name} cannot pull its image {images.get(name)}: {waiting['reason']}: "
                               f"{waiting.get('message', '')}".rstrip(": "),
                               "check the image's name and tag; for a private registry give the Deployment "
                               "`registries` (its pull Secret reaches every task pod; README: Task pods); "
                               "the task fails when its startup_timeout_seconds runs out"))
        elif waiting.get("reason") and waiting["reason"] not in STARTING_REASONS:
            found.append(Cause(f"container {name} waits: {waiting['reason']}: {waiting.get('message', '')}"
                               .rstrip(": "), "the kubelet's message says what it misses (a Secret, a ConfigMap, "
                                              "a volume)"))
        if terminated.get("reason") == "OOMKilled":
            limit = limits.get(name, {}).get("memory", "the namespace's default, podDefaults.limits.memory")
            found.append(Cause(f"container {name} was OOM-killed: it used more memory than its limit ({limit})",
                               "raise the task's memory limit (container_resources), up to the Deployment's "
                               "podDefaults.max.memory and within quota.memory, or make the task use less"))
        elif terminated and terminated.get("exitCode", 0) != 0 and name != "airflow-xcom-sidecar":
            found.append(Cause(f"container {name} exited {terminated.get('exitCode')} ({terminated.get('reason')})",
                               "the task's own failure: read its log"))
    return found


def causes(facts: Facts) -> list[Cause]:
    """Why the pod waits or ended, each with the next step."""
    pod = facts.pod
    found: list[Cause] = []
    if pod is None and "pod" not in facts.unreadable:
        found.append(Cause(f"no pod {facts.name} in {facts.namespace}: KPO deletes its pod when the task ends, "
                           "and a pod the API server refused was never made",
                           "take the pod's name from the task log; a refusal is in the log too (e.g. `exceeded "
                           "quota`: see the quota below)"))
    elif pod is not None:
        scheduled = condition(pod, "PodScheduled")
        if not pod["spec"].get("nodeName") and (scheduled is None or scheduled.get("status") != "True"):
            found += scheduling_causes(facts)
        found += container_causes(pod)
    return found + quota_causes(facts)


# --- rendering -----------------------------------------------------------------------------------

def _event_time(event: dict) -> str:
    return (event.get("lastTimestamp") or event.get("eventTime") or (event.get("series") or {}).get("lastObservedTime")
            or event["metadata"].get("creationTimestamp") or "")


def render(facts: Facts) -> str:
    """One screen: the pod, its events, quota, GPU pool, NodePools and NodeClaims, then each cause
    and its next step."""
    lines = [f"pod {facts.namespace}/{facts.name}"]
    pod = facts.pod
    if "pod" in facts.unreadable:
        lines.append(f"  pod: {facts.unreadable['pod']}")
    elif pod is None:
        lines.append("  no such pod")
    else:
        status = pod.get("status") or {}
        node = pod["spec"].get("nodeName")
        lines.append(f"  phase {status.get('phase')}" + (f" on node {node}" if node else ", not on a node"))
        for c in status.get("conditions") or []:
            why = ": ".join(filter(None, [c.get("reason"), c.get("message")]))
            lines.append(f"  {c['type']} {c['status']}" + (f" ({why})" if why else ""))
        for s in status.get("containerStatuses") or []:
            state, detail = next(iter((s.get("state") or {"unknown": {}}).items()))
            reason = detail.get("reason") or ""
            code = f" exit {detail['exitCode']}" if "exitCode" in detail else ""
            lines.append(f"  container {s['name']}: {state} {reason}{code}".rstrip())
    lines.append("events" + ("" if facts.events or "events" in facts.unreadable else ": none"))
    if "events" in facts.unreadable:
        lines.append(f"  {facts.unreadable['events']}")
    for event in sorted(facts.events, key=_event_time)[-EVENTS_SHOWN:]:
        source = (event.get("source") or {}).get("component") or event.get("reportingComponent") or "?"
        count = event.get("count") or (event.get("series") or {}).get("count") or 1
        times = f" x{count}" if count > 1 else ""
        lines.append(f"  {event.get('type')} {event.get('reason')} ({source}{times}): {event.get('message', '')}")
    lines.append("quota")
    if facts.quotas is None:
        lines.append(f"  {facts.unreadable.get('resourcequotas', 'not read')}")
    for quota in facts.quotas or []:
        hard, used = quota_use(quota)
        if not any(quantity(v) > 0 for v in hard.values()):
            continue  # the quotas that admit no pod of a kind (components/admission.py)
        cells = [f"{r} {used.get(r, '0')}/{h}" + (" FULL" if used_up(h, used.get(r, "0")) else "")
                 for r, h in sorted(hard.items())]
        lines.append(f"  {quota['metadata']['name']}: {', '.join(cells)}")
    shape = pool_shape(facts)
    lines.append("GPU pool" + (f" (from {shape.source})" if shape else ""))
    if not shape:
        lines.append("  shape unknown: no gpuTask given and no GPU NodePool readable")
    elif pod is not None and not wants_pool(pod, shape):
        lines.append(f"  not a GPU pod: asks for no {shape.resource} and selects no GPU node label")
    elif pod is not None:
        missing_labels, untolerated = pool_match(pod, shape)
        lines.append(f"  requests {shape.resource}: {requested(pod, shape.resource):g}")
        lines.append("  node selector: " + ("matches " + ", ".join(f"{k}={v}" for k, v in shape.labels.items())
                                            if not missing_labels else "missing " + ", ".join(missing_labels)))
        lines.append("  tolerations: " + ("tolerate " + ", ".join(taint_text(t) for t in shape.taints)
                                          if not untolerated else
                                          "missing for " + ", ".join(taint_text(t) for t in untolerated)))
    lines.append("NodePools")
    if facts.node_pools is None:
        lines.append(f"  {facts.unreadable.get('nodepools', 'not read')}")
    for pool in pods_pools(facts):
        limits = pool["spec"].get("limits") or {}
        used = (pool.get("status") or {}).get("resources") or {}
        cells = [f"{r} {used.get(r, '0')} of {limit}" for r, limit in limits.items()]
        lines.append(f"  {pool['metadata']['name']}: limit " + (", ".join(cells) if cells else "none"))
    lines.append("NodeClaims")
    if facts.node_claims is None:
        lines.append(f"  {facts.unreadable.get('nodeclaims', 'not read')}")
    claims = [c for c in facts.node_claims or [] if claim_of(c, facts)]
    if facts.node_claims is not None and not claims:
        lines.append("  none for this pod's NodePools")
    for claim in claims[-5:]:
        states = [f"{kind} {(condition(claim, kind) or {}).get('status', '?')}"
                  for kind in ("Launched", "Registered", "Initialized")]
        node = (claim.get("status") or {}).get("nodeName") or "no node yet"
        lines.append(f"  {claim['metadata']['name']}: {node}, {', '.join(states)}")
    found = causes(facts)
    if not found:
        lines.append("nothing holds this pod back")
    for number, cause in enumerate(found, 1):
        lines += [f"cause {number}: {cause.what}", f"  next: {cause.next_step}"]
    return "\n".join(lines)
