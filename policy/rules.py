"""The remote-kpo policy pack's rules, as plain functions of (args, report_violation).

Each `validate_*` function is what a pulumi_policy ResourceValidationPolicy calls: `args` has
`resource_type` (e.g. `kubernetes:rbac.authorization.k8s.io/v1:Role`), `props` (the resource's
inputs under their SDK wire names, camelCase) and `urn`; `report_violation(message)` records a
violation. `__main__.py` only assembles RULES into the pack, so this module imports nothing
from pulumi_policy and the unit tests call the functions directly.

Under the policy engine `props` is a read-only Mapping/Sequence proxy (not dict/list) that
raises UnknownValueError when a value is not known yet (during preview). The helpers below
accept any Mapping/Sequence, and treat a value that is unknown at preview as "not decided":
a rule never fires on it. The engine runs the pack again at `up`, before each resource is
created or updated, with every value known.
"""

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

# Labels DeploymentAccess (components/access.py) puts on what it creates; the tests check the
# two modules agree.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
XCOM_LABEL = "remote-kpo/xcom"
POD_SECURITY_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"


# ---- reading props --------------------------------------------------------------------------

class _Unknown:
    """A value the engine cannot know before `up` (an output of another resource)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()


def _is_unknown_error(exc: BaseException) -> bool:
    # pulumi_policy.proxy.UnknownValueError, recognised without importing pulumi_policy.
    return type(exc).__name__ == "UnknownValueError"


def _get(value: Any, key: str, default: Any = None) -> Any:
    """value[key] if value is a mapping that has it; UNKNOWN when the engine cannot know it."""
    if not isinstance(value, Mapping):
        return default
    try:
        return value[key]
    except KeyError:
        return default
    except Exception as exc:  # noqa: BLE001 - only UnknownValueError is swallowed
        if _is_unknown_error(exc):
            return UNKNOWN
        raise


def _path(value: Any, *keys: str) -> Any:
    for key in keys:
        if value is None or value is UNKNOWN:
            return value
        value = _get(value, key)
    return value


def _items(value: Any) -> list:
    """The elements of a list-like value (a lone mapping counts as one element); unknown
    elements come back as UNKNOWN, and a value that is not a list gives no elements."""
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return []
    items = []
    for i in range(len(value)):
        try:
            items.append(value[i])
        except Exception as exc:  # noqa: BLE001
            if not _is_unknown_error(exc):
                raise
            items.append(UNKNOWN)
    return items


def _strings(value: Any) -> list[str]:
    """A string or list of strings as a list of the known strings."""
    if isinstance(value, str):
        return [value]
    return [item for item in _items(value) if isinstance(item, str)]


def _json(value: Any) -> Any:
    """A policy document given as JSON text (the usual wire form) or as an object."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, Mapping) else None


def _glob_matches(pattern: str, action: str) -> bool:
    """IAM-style wildcard match (`*` any run, `?` one character), case-insensitive."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, action, re.IGNORECASE) is not None


def _name(args) -> str:
    return getattr(args, "name", None) or getattr(args, "urn", None) or args.resource_type


# ---- resource types -------------------------------------------------------------------------

_K8S_RBAC = re.compile(r"kubernetes:rbac\.authorization\.k8s\.io/v\w+:(?P<kind>\w+)")


def _rbac_objects(args) -> Iterator[tuple[str, Any]]:
    """(kind, object) for a Kubernetes RBAC resource: Role, ClusterRole, RoleBinding and
    ClusterRoleBinding, including their Patch and List forms, in any API version."""
    match = _K8S_RBAC.fullmatch(args.resource_type)
    if not match:
        return
    kind = match.group("kind")
    if kind.endswith("List"):
        for item in _items(_get(args.props, "items")):
            if item is not UNKNOWN:
                yield kind[: -len("List")], item
        return
    yield kind.removesuffix("Patch"), args.props


def _azure_type(resource_type: str, module: str, name: str) -> bool:
    """azure-native:<module>:<name>, also in an explicit API version (<module>/v20240801)."""
    return re.fullmatch(rf"azure-native:{module}(/v\w+)?:{name}", resource_type) is not None


# ---- Kubernetes RBAC ------------------------------------------------------------------------

RBAC_RULE_FIELDS = ("apiGroups", "resources", "verbs", "nonResourceURLs")


def validate_no_rbac_wildcard(args, report_violation) -> None:
    for kind, obj in _rbac_objects(args):
        if kind not in ("Role", "ClusterRole"):
            continue
        for i, rule in enumerate(_items(_get(obj, "rules"))):
            for field in RBAC_RULE_FIELDS:
                wild = [value for value in _strings(_get(rule, field)) if "*" in value]
                if wild:
                    report_violation(
                        f"{kind} {_name(args)}: rules[{i}].{field} has the wildcard {wild[0]!r}; "
                        "grant named resources and verbs only (components/permissions.py)")


def validate_no_cluster_scoped_rbac(args, report_violation) -> None:
    for kind, obj in _rbac_objects(args):
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            report_violation(
                f"{kind} {_name(args)}: remote-kpo grants nothing cluster-wide; a Deployment's "
                "rights are a Role and RoleBinding in its own namespace")
        elif kind == "RoleBinding" and _path(obj, "roleRef", "kind") == "ClusterRole":
            report_violation(
                f"RoleBinding {_name(args)}: binds the ClusterRole "
                f"{_path(obj, 'roleRef', 'name')!r}, whose rules this stack does not define "
                "(and the pack cannot check); bind a Role of the same namespace")


def _grants_pods_exec(rule: Any) -> bool:
    groups = _strings(_get(rule, "apiGroups"))
    resources = _strings(_get(rule, "resources"))
    verbs = _strings(_get(rule, "verbs"))
    in_core = not groups or any(group in ("", "*") for group in groups)
    exec_resource = any(resource in ("pods/exec", "pods/*", "*") for resource in resources)
    # The WebSocket upgrade is a GET; Kubernetes 1.35 also checks create.
    exec_verb = any(verb in ("create", "get", "*") for verb in verbs)
    return in_core and exec_resource and exec_verb


def validate_pods_exec_only_with_xcom(args, report_violation) -> None:
    for kind, obj in _rbac_objects(args):
        if kind not in ("Role", "ClusterRole"):
            continue
        if not any(_grants_pods_exec(rule) for rule in _items(_get(obj, "rules"))):
            continue
        xcom = _path(obj, "metadata", "labels", XCOM_LABEL)
        if xcom is UNKNOWN or xcom == "true":
            continue
        said = "without the label" if xcom is None else f"but is labelled {XCOM_LABEL}={xcom!r}; it needs"
        report_violation(
            f"{kind} {_name(args)}: grants pods/exec {said} {XCOM_LABEL}: \"true\"; only a "
            "Deployment with xcom (do_xcom_push) may exec into its pods")


# ---- Pod Security admission ------------------------------------------------------------------

_K8S_NAMESPACE = re.compile(r"kubernetes:core/v1:Namespace(?P<form>Patch|List)?")
# The Pod Security Standards that refuse privileged, hostPath and hostNetwork pods.
POD_SECURITY_LEVELS = ("baseline", "restricted")


def validate_namespace_pod_security(args, report_violation) -> None:
    match = _K8S_NAMESPACE.fullmatch(args.resource_type)
    if not match:
        return
    form = match.group("form")
    objects = _items(_get(args.props, "items")) if form == "List" else [args.props]
    for obj in objects:
        if obj is UNKNOWN:
            continue
        level = _path(obj, "metadata", "labels", POD_SECURITY_ENFORCE_LABEL)
        # A patch that leaves the label alone changes nothing Pod Security sees.
        if level is UNKNOWN or level in POD_SECURITY_LEVELS or (form == "Patch" and level is None):
            continue
        said = "has no label" if level is None else f"is labelled {POD_SECURITY_ENFORCE_LABEL}={level!r}; it needs"
        report_violation(
            f"namespace {_name(args)}: {said} {POD_SECURITY_ENFORCE_LABEL}: baseline or restricted; "
            "otherwise a pod may run privileged, mount the node's filesystem or use its network")


# ---- cloud IAM ------------------------------------------------------------------------------

# Predefined GCP roles that include container.pods.* (read or write) project-wide.
GCP_POD_ROLES = frozenset({
    "roles/owner", "roles/editor", "roles/viewer",
    "roles/container.admin", "roles/container.developer", "roles/container.viewer",
})
_GCP_CUSTOM_ROLE = re.compile(r"gcp:(projects|organizations)/iAMCustomRole:IAMCustomRole")
_GCP_GRANT = re.compile(r"gcp:(projects|folder|organizations)/iAM(Member|Binding):IAM(Member|Binding)")
_GCP_POLICY = re.compile(r"gcp:(projects|folder|organizations)/iAMPolicy:IAMPolicy")

# What an AWS identity needs to reach pods through EKS: the Kubernetes API through the console,
# or making itself (or anyone) an EKS access entry with an access policy.
EKS_POD_ACTIONS = (
    "eks:AccessKubernetesApi",
    "eks:AssociateAccessPolicy",
    "eks:CreateAccessEntry",
    "eks:UpdateAccessEntry",
)
AWS_ADMIN_POLICIES = ("AdministratorAccess", "PowerUserAccess")
_AWS_POLICY_TYPES = {
    "aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/userPolicy:UserPolicy", "aws:iam/groupPolicy:GroupPolicy",
}
_AWS_ATTACHMENT_TYPES = {
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws:iam/policyAttachment:PolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
}

# Azure: Kubernetes data actions on pods (Azure RBAC for Kubernetes), and the control-plane
# actions that hand out cluster-admin.
AKS_POD_DATA_ACTIONS = (
    "Microsoft.ContainerService/managedClusters/pods/read",
    "Microsoft.ContainerService/managedClusters/pods/write",
    "Microsoft.ContainerService/managedClusters/pods/delete",
    "Microsoft.ContainerService/managedClusters/pods/exec/action",
)
AKS_ADMIN_ACTIONS = (
    "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action",
    "Microsoft.ContainerService/managedClusters/accessProfiles/listCredential/action",
    "Microsoft.ContainerService/managedClusters/runCommand/action",
)
# Built-in Azure roles that carry those rights (role definition GUIDs).
AZURE_POD_ROLES = {
    "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b": "Azure Kubernetes Service RBAC Cluster Admin",
    "3498e952-d568-435e-9b2c-8d77e338d7f7": "Azure Kubernetes Service RBAC Admin",
    "a7ffa36f-339b-4b5c-8bdf-e2c188b2c0eb": "Azure Kubernetes Service RBAC Writer",
    "7f6c6a51-bcf8-42ba-9220-52d62157d7db": "Azure Kubernetes Service RBAC Reader",
    "0ab0b1a8-8aac-4efd-b8c2-3ee1fb270be8": "Azure Kubernetes Service Cluster Admin Role",
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
}


def _gcp_iam(args, report) -> None:
    typ = args.resource_type
    if _GCP_CUSTOM_ROLE.fullmatch(typ):
        pods = [p for p in _strings(_get(args.props, "permissions")) if p.lower().startswith("container.pods")]
        if pods:
            report(f"custom role {_name(args)}: grants {pods[0]}; pod rights come from namespace RBAC only")
    elif _GCP_GRANT.fullmatch(typ):
        role = _get(args.props, "role")
        if role in GCP_POD_ROLES:
            report(f"{_name(args)}: grants {role}, which includes container.pods.* project-wide")
    elif _GCP_POLICY.fullmatch(typ):
        for binding in _items(_get(_json(_get(args.props, "policyData")), "bindings")):
            role = _get(binding, "role")
            if role in GCP_POD_ROLES:
                report(f"{_name(args)}: binds {role}, which includes container.pods.* project-wide")


def _aws_document_problems(document: Any) -> Iterator[str]:
    for statement in _items(_get(document, "Statement")):
        if _get(statement, "Effect") != "Allow":
            continue
        if _get(statement, "NotAction") is not None:
            yield "an Allow statement with NotAction (it allows every other action, EKS access included)"
            continue
        for pattern in _strings(_get(statement, "Action")):
            hits = [action for action in EKS_POD_ACTIONS if _glob_matches(pattern, action)]
            if hits:
                yield f"the action {pattern!r}, which allows {hits[0]}"


def _aws_trust_problems(document: Any) -> Iterator[str]:
    for statement in _items(_get(document, "Statement")):
        if _get(statement, "Effect") != "Allow":
            continue
        principal = _get(statement, "Principal")
        principals = _strings(principal) + _strings(_get(principal, "AWS"))
        wide = [p for p in principals if p == "*" or p.endswith(":root")]
        if wide:
            yield f"a trust policy that lets {wide[0]!r} (any principal of an account) assume it"


def _aws_iam(args, report) -> None:
    typ, props = args.resource_type, args.props
    problems: list[str] = []
    arns: list[str] = []
    if typ in _AWS_POLICY_TYPES:
        problems += _aws_document_problems(_json(_get(props, "policy")))
    elif typ == "aws:iam/role:Role":
        for inline in _items(_get(props, "inlinePolicies")):
            problems += _aws_document_problems(_json(_get(inline, "policy")))
        problems += _aws_trust_problems(_json(_get(props, "assumeRolePolicy")))
        arns = _strings(_get(props, "managedPolicyArns"))
    elif typ in _AWS_ATTACHMENT_TYPES:
        arns = _strings(_get(props, "policyArn"))
    for arn in arns:
        if arn.rsplit("/", 1)[-1] in AWS_ADMIN_POLICIES and ":iam::aws:policy/" in arn:
            problems.append(f"the managed policy {arn}, which allows every EKS action")
    for problem in problems:
        report(f"{_name(args)}: has {problem}; pod rights come from namespace RBAC only")


def _azure_allows(allowed: list[str], denied: list[str], actions: tuple[str, ...]) -> Optional[tuple[str, str]]:
    for action in actions:
        if any(_glob_matches(p, action) for p in denied):
            continue
        for pattern in allowed:
            if _glob_matches(pattern, action):
                return pattern, action
    return None


def _azure_iam(args, report) -> None:
    typ, props = args.resource_type, args.props
    if _azure_type(typ, "authorization", "RoleDefinition"):
        for permission in _items(_get(props, "permissions")):
            data = _strings(_get(permission, "dataActions"))
            pod_data = [a for a in data if a.lower().startswith("microsoft.containerservice/managedclusters/pods/")]
            hit = _azure_allows(data, _strings(_get(permission, "notDataActions")), AKS_POD_DATA_ACTIONS)
            if pod_data or hit:
                pattern = pod_data[0] if pod_data else hit[0]
                report(f"role definition {_name(args)}: the data action {pattern!r} reaches pods; "
                       "pod rights come from namespace RBAC only")
            hit = _azure_allows(_strings(_get(permission, "actions")),
                                _strings(_get(permission, "notActions")), AKS_ADMIN_ACTIONS)
            if hit:
                report(f"role definition {_name(args)}: the action {hit[0]!r} allows {hit[1]} "
                       "(cluster-admin on the cluster)")
    elif _azure_type(typ, "authorization", "RoleAssignment"):
        role = _get(props, "roleDefinitionId")
        guid = role.rsplit("/", 1)[-1].lower() if isinstance(role, str) else None
        if guid in AZURE_POD_ROLES:
            report(f"role assignment {_name(args)}: assigns {AZURE_POD_ROLES[guid]}, which reaches pods "
                   "beyond the namespace Role")


def validate_no_iam_pod_rights(args, report_violation) -> None:
    _gcp_iam(args, report_violation)
    _aws_iam(args, report_violation)
    _azure_iam(args, report_violation)


# ---- GKE ------------------------------------------------------------------------------------

GKE_CLUSTER = "gcp:container/cluster:Cluster"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"


def _gke_pools(args) -> Iterator[tuple[str, Any]]:
    """(where, node pool props) for a NodePool, or for the pools declared inside a Cluster."""
    if args.resource_type == GKE_NODE_POOL:
        yield f"node pool {_name(args)}", args.props
    elif args.resource_type == GKE_CLUSTER:
        for i, pool in enumerate(_items(_get(args.props, "nodePools"))):
            yield f"cluster {_name(args)} nodePools[{i}]", pool


def validate_gke_private_nodes(args, report_violation) -> None:
    if args.resource_type == GKE_CLUSTER:
        private = _path(args.props, "privateClusterConfig", "enablePrivateNodes")
        if private is not True and private is not UNKNOWN:
            report_violation(f"cluster {_name(args)}: privateClusterConfig.enablePrivateNodes must be "
                             "true (nodes without public IPs; gke.privateNodes)")
    for where, pool in _gke_pools(args):
        if _path(pool, "networkConfig", "enablePrivateNodes") is False:
            report_violation(f"{where}: networkConfig.enablePrivateNodes is false (public node IPs)")


def validate_gke_workload_identity(args, report_violation) -> None:
    if args.resource_type != GKE_CLUSTER:
        return
    pool = _path(args.props, "workloadIdentityConfig", "workloadPool")
    if pool is not UNKNOWN and not pool:
        report_violation(f"cluster {_name(args)}: workloadIdentityConfig.workloadPool must be set "
                         "(<project>.svc.id.goog), so pods never use the node's credentials")


def validate_gke_deletion_protection(args, report_violation) -> None:
    # Unset means the provider's default, true.
    if args.resource_type == GKE_CLUSTER and _get(args.props, "deletionProtection") is False:
        report_violation(f"cluster {_name(args)}: deletionProtection is false; one `pulumi destroy` "
                         "or replacement would delete the cluster and every workload on it")


def validate_gke_workload_metadata(args, report_violation) -> None:
    configs = [(where, _get(pool, "nodeConfig")) for where, pool in _gke_pools(args)]
    if args.resource_type == GKE_CLUSTER and _get(args.props, "nodeConfig") is not None:
        configs.append((f"cluster {_name(args)} (default pool)", _get(args.props, "nodeConfig")))
    for where, node_config in configs:
        mode = _path(node_config, "workloadMetadataConfig", "mode")
        if mode is not UNKNOWN and mode != "GKE_METADATA":
            report_violation(f"{where}: nodeConfig.workloadMetadataConfig.mode is {mode!r}, not "
                             "'GKE_METADATA'; pods could read the node service account's token")


# ---- EKS ------------------------------------------------------------------------------------

def validate_eks_secrets_encryption(args, report_violation) -> None:
    if args.resource_type != "aws:eks/cluster:Cluster":
        return
    configs = _get(args.props, "encryptionConfig")
    if configs is UNKNOWN:
        return
    for config in _items(configs):
        if config is UNKNOWN:
            return
        resources = _get(config, "resources")
        key = _path(config, "provider", "keyArn")
        if (resources is UNKNOWN or "secrets" in _strings(resources)) and key:
            return
    report_violation(f"cluster {_name(args)}: encryptionConfig must encrypt 'secrets' with a KMS key "
                     "(provider.keyArn): ServiceAccount tokens live in Secrets")


def validate_eks_no_access_policy(args, report_violation) -> None:
    typ = args.resource_type
    if typ == "aws:eks/accessPolicyAssociation:AccessPolicyAssociation":
        policy = _get(args.props, "policyArn")
        what = policy.rsplit("/", 1)[-1] if isinstance(policy, str) else "an access policy"
        report_violation(f"{_name(args)}: associates {what}; remote-kpo maps access entries to Kubernetes "
                         "groups bound by namespace RBAC, never to an EKS access policy")
    elif typ == "aws:eks/accessEntry:AccessEntry":
        if "system:masters" in _strings(_get(args.props, "kubernetesGroups")):
            report_violation(f"{_name(args)}: maps to system:masters (cluster-admin, not revocable by RBAC)")


# ---- AKS ------------------------------------------------------------------------------------

def validate_aks_local_accounts_off(args, report_violation) -> None:
    if not _azure_type(args.resource_type, "containerservice", "ManagedCluster"):
        return
    props = args.props
    if _get(props, "disableLocalAccounts") not in (True, UNKNOWN):
        report_violation(f"cluster {_name(args)}: disableLocalAccounts must be true; the local admin "
                         "kubeconfig is a static cluster-admin credential RBAC cannot revoke")
    if _path(props, "aadProfile", "managed") not in (True, UNKNOWN):
        report_violation(f"cluster {_name(args)}: aadProfile.managed must be true (Entra ID "
                         "authentication is the only way in once local accounts are off)")
    if _get(props, "enableRBAC") is False:
        report_violation(f"cluster {_name(args)}: enableRBAC is false (every user would be admin)")


# ---- task identity (issue 16) ---------------------------------------------------------------

# The one ServiceAccount per namespace that task pods run as to get a cloud identity
# (components/permissions.py TASK_SERVICE_ACCOUNT; the tests check the two agree).
TASK_SERVICE_ACCOUNT = "remote-kpo-task"
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
# serviceAccount:<project>.svc.id.goog[<namespace>/<ksa>], and the principal:// form of one KSA.
_GKE_KSA_MEMBER = re.compile(r"serviceAccount:[-a-z0-9.:]+\.svc\.id\.goog\[(?P<ns>[-a-z0-9]+)/(?P<sa>[-a-z0-9.]+)\]")
_GKE_KSA_PRINCIPAL = re.compile(
    r"principal://iam\.googleapis\.com/projects/\d+/locations/global/workloadIdentityPools/[-a-z0-9.:]+"
    r"\.svc\.id\.goog/subject/ns/(?P<ns>[-a-z0-9]+)/sa/(?P<sa>[-a-z0-9.]+)")
_GCP_SA_GRANT = re.compile(r"gcp:serviceaccount/iAM(Member|Binding):IAM(Member|Binding)")
_K8S_SERVICE_ACCOUNT = re.compile(r"kubernetes:core/v1:ServiceAccount(Patch)?")
_AKS_KSA_SUBJECT = re.compile(r"system:serviceaccount:(?P<ns>[-a-z0-9]+):(?P<sa>[-a-z0-9.]+)")
# Annotations that make a ServiceAccount's pods act as a cloud identity (GKE Workload Identity,
# Azure workload identity, EKS IAM roles for service accounts).
CLOUD_IDENTITY_ANNOTATIONS = ("iam.gke.io/gcp-service-account", "azure.workload.identity/client-id",
                              "eks.amazonaws.com/role-arn")


def _ksa_member_problem(member: Any) -> Optional[str]:
    if not isinstance(member, str):
        return None
    match = _GKE_KSA_MEMBER.fullmatch(member) or _GKE_KSA_PRINCIPAL.fullmatch(member)
    if match is None:
        return f"the member {member!r}, which is not one Kubernetes ServiceAccount"
    if match.group("sa") != TASK_SERVICE_ACCOUNT:
        return f"the member {member!r}, the ServiceAccount {match.group('sa')!r} (every pod that runs as it)"
    return None


def _gcp_task_bindings(args, report) -> None:
    typ, props = args.resource_type, args.props
    members: list[str] = []
    if _GCP_SA_GRANT.fullmatch(typ) and _get(props, "role") == WORKLOAD_IDENTITY_USER:
        members = _strings(_get(props, "member")) + _strings(_get(props, "members"))
    elif typ == "gcp:serviceaccount/iAMPolicy:IAMPolicy":
        members = [member for binding in _items(_get(_json(_get(props, "policyData")), "bindings"))
                   if _get(binding, "role") == WORKLOAD_IDENTITY_USER
                   for member in _strings(_get(binding, "members"))]
    elif (_GCP_GRANT.fullmatch(typ) and _get(props, "role") == WORKLOAD_IDENTITY_USER) or (
            _GCP_POLICY.fullmatch(typ) and any(
                _get(binding, "role") == WORKLOAD_IDENTITY_USER
                for binding in _items(_get(_json(_get(props, "policyData")), "bindings")))):
        report(f"{_name(args)}: grants {WORKLOAD_IDENTITY_USER} on a whole project, folder or organization "
               "(every service account in it); grant it on the task's service account only")
    for member in members:
        problem = _ksa_member_problem(member)
        if problem:
            report(f"{_name(args)}: grants {WORKLOAD_IDENTITY_USER} to {problem}; a task identity is bound "
                   f"to <namespace>/{TASK_SERVICE_ACCOUNT} only")


def validate_task_identity_one_service_account(args, report_violation) -> None:
    typ, props = args.resource_type, args.props
    _gcp_task_bindings(args, report_violation)
    if typ == "aws:eks/podIdentityAssociation:PodIdentityAssociation":
        account = _get(props, "serviceAccount")
        if isinstance(account, str) and account != TASK_SERVICE_ACCOUNT:
            report_violation(f"{_name(args)}: associates the role with the ServiceAccount {account!r}; task "
                             f"identities go to {TASK_SERVICE_ACCOUNT} only (every pod of any other account, "
                             "e.g. default, would get the role)")
    elif _azure_type(typ, "managedidentity", "FederatedIdentityCredential"):
        if _get(props, "claimsMatchingExpression") is not None:
            report_violation(f"{_name(args)}: a claimsMatchingExpression matches more than one subject; "
                             "name one ServiceAccount in subject")
        subject = _get(props, "subject")
        name = _get(props, "federatedIdentityCredentialResourceName")
        if isinstance(subject, str):
            match = _AKS_KSA_SUBJECT.fullmatch(subject)
            if match is None:
                report_violation(f"{_name(args)}: the subject {subject!r} is not one Kubernetes ServiceAccount "
                                 "(system:serviceaccount:<namespace>:<name>)")
            elif (isinstance(name, str) and name.startswith(TASK_SERVICE_ACCOUNT)
                  and match.group("sa") != TASK_SERVICE_ACCOUNT):
                report_violation(f"{_name(args)}: the task credential {name!r} federates {subject!r}; a task "
                                 f"identity trusts <namespace>:{TASK_SERVICE_ACCOUNT} only")
    elif _K8S_SERVICE_ACCOUNT.fullmatch(typ):
        account = _path(props, "metadata", "name")
        annotations = _path(props, "metadata", "annotations")
        bound = [key for key in CLOUD_IDENTITY_ANNOTATIONS if _get(annotations, key) is not None]
        if bound and isinstance(account, str) and account != TASK_SERVICE_ACCOUNT:
            report_violation(f"ServiceAccount {account!r} ({_name(args)}): annotated {bound[0]}; only "
                             f"{TASK_SERVICE_ACCOUNT} carries a cloud identity, so a task gets one only by "
                             "naming it")


# ---- tenancy (issue 20): a stack rule ---------------------------------------------------------

# Mirrors components/admission.py and components/access.py (the tests check they agree).
SYSTEM_PRIORITY_CLASSES = ("system-node-critical", "system-cluster-critical")
USAGE_QUOTA_KEYS = ("requests.cpu", "requests.memory", "requests.nvidia.com/gpu", "pods", "count/pods")
# Queued (components/queueing.py), the ResourceQuota keeps the pod counts and the Deployment's
# ClusterQueue holds the rest; Kueue queues every pod of a namespace that has a LocalQueue named
# `default`.
POD_COUNT_QUOTA_KEYS = ("pods", "count/pods")
QUEUED_RESOURCES = ("cpu", "memory", "nvidia.com/gpu")
LOCAL_QUEUE = "default"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
_K8S_KIND = re.compile(r"kubernetes:(?P<group>[\w.-]*)/v\w+:(?P<kind>\w+)")


def _kind(resource) -> Optional[str]:
    match = _K8S_KIND.fullmatch(resource.resource_type)
    return match.group("kind") if match else None


def _allows(values: Any, wanted: str) -> bool:
    return any(value in (wanted, "*") for value in _strings(values))


def _pod_namespaces(resources) -> set:
    """Namespaces where a Role of the stack lets someone create pods: a Deployment's."""
    namespaces = set()
    for resource in resources:
        for kind, role in _rbac_objects(resource):
            if kind != "Role":
                continue
            creates_pods = any(
                _allows(_get(rule, "resources"), "pods") and _allows(_get(rule, "verbs"), "create")
                and (not _strings(_get(rule, "apiGroups")) or _allows(_get(rule, "apiGroups"), ""))
                for rule in _items(_get(role, "rules")))
            namespace = _path(role, "metadata", "namespace")
            if creates_pods and isinstance(namespace, str):
                namespaces.add(namespace)
    return namespaces


def _zero_pods(spec: Any) -> bool:
    pods = _path(spec, "hard", "pods")
    return pods is UNKNOWN or str(pods) == "0"


def _scope_selects(spec: Any, scope: str, values: tuple = ()) -> bool:
    for expression in _items(_path(spec, "scopeSelector", "matchExpressions")):
        if expression is UNKNOWN:
            return True
        if _get(expression, "scopeName") != scope:
            continue
        operator = _get(expression, "operator")
        if not values and operator == "Exists":
            return True
        if values and operator == "In" and set(values) <= set(_strings(_get(expression, "values"))):
            return True
    return False


def _selects_namespace(binding: Any, namespace: str) -> bool:
    selector = _path(binding, "spec", "matchResources", "namespaceSelector")
    if selector is UNKNOWN:
        return True
    if selector is None:  # no selector: every namespace
        return _path(binding, "spec", "matchResources", "objectSelector") is None
    labels = _get(selector, "matchLabels")
    expressions = _items(_get(selector, "matchExpressions"))
    if labels is UNKNOWN or UNKNOWN in expressions:
        return True
    if labels and _get(labels, NAMESPACE_NAME_LABEL) != namespace:
        return False
    for expression in expressions:
        if _get(expression, "key") != NAMESPACE_NAME_LABEL or _get(expression, "operator") != "In":
            return False
        if namespace not in _strings(_get(expression, "values")):
            return False
    return True


def _selects_only(selector: Any, namespace: str) -> bool:
    """A ClusterQueue's namespaceSelector that admits `namespace` and no other: matchLabels
    naming it by kubernetes.io/metadata.name (null selects none, {} every namespace)."""
    if selector is UNKNOWN:
        return True
    labels = _get(selector, "matchLabels")
    return labels is UNKNOWN or (_get(labels, NAMESPACE_NAME_LABEL) == namespace
                                 and not _items(_get(selector, "matchExpressions")))


def _queued(resources, namespace: str) -> bool:
    """Whether Kueue bounds the namespace's cpu, memory and GPUs: its LocalQueue `default` feeds a
    ClusterQueue of the stack that covers them and admits this namespace only (so no other
    Deployment's tasks draw on it)."""
    queues = {_path(r.props, "metadata", "name"): _get(r.props, "spec") for r in resources if _kind(r) == "ClusterQueue"}
    for local in (r.props for r in resources if _kind(r) == "LocalQueue"):
        if _path(local, "metadata", "namespace") not in (namespace, UNKNOWN) or \
                _path(local, "metadata", "name") not in (LOCAL_QUEUE, UNKNOWN):
            continue
        name = _path(local, "spec", "clusterQueue")
        spec = UNKNOWN if name is UNKNOWN or UNKNOWN in queues else queues.get(name)
        if spec is UNKNOWN:
            return True
        if spec is None or not _selects_only(_get(spec, "namespaceSelector"), namespace):
            continue
        groups = _items(_get(spec, "resourceGroups"))
        covered = {resource for group in groups for resource in _strings(_get(group, "coveredResources"))}
        if UNKNOWN in groups or set(QUEUED_RESOURCES) <= covered:
            return True
    return False


def _tenant_guards(resources, namespace: str) -> list[str]:
    """What the namespace lacks of what keeps its Deployment from hurting others."""
    quotas = [_get(r.props, "spec") for r in resources
              if _kind(r) == "ResourceQuota" and _path(r.props, "metadata", "namespace") in (namespace, UNKNOWN)]
    missing = []
    if not any(_zero_pods(q) and _scope_selects(q, "PriorityClass", SYSTEM_PRIORITY_CLASSES) for q in quotas):
        missing.append("a ResourceQuota admitting no pods of PriorityClass " + " or ".join(SYSTEM_PRIORITY_CLASSES)
                       + " (they preempt other tenants' tasks)")
    if not any(_zero_pods(q) and _scope_selects(q, "CrossNamespacePodAffinity") for q in quotas):
        missing.append("a ResourceQuota admitting no pods with CrossNamespacePodAffinity (they keep other "
                       "tenants' pods off nodes)")
    if not any(_zero_pods(q) and "BestEffort" in _strings(_get(q, "scopes")) for q in quotas):
        missing.append("a ResourceQuota admitting no BestEffort pods (no quota counts what they use)")
    usage = [q for q in quotas if q is UNKNOWN or (_get(q, "scopes") is None and _get(q, "scopeSelector") is None)]
    keys = POD_COUNT_QUOTA_KEYS if _queued(resources, namespace) else USAGE_QUOTA_KEYS
    if not any(q is UNKNOWN or _get(q, "hard") is UNKNOWN or all(_get(_get(q, "hard"), key) is not None
                                                                   for key in keys) for q in usage):
        missing.append("a ResourceQuota bounding " + ", ".join(USAGE_QUOTA_KEYS) + " (or, queued, "
                       + " and ".join(POD_COUNT_QUOTA_KEYS) + f", and a LocalQueue {LOCAL_QUEUE!r} whose "
                       "ClusterQueue holds " + ", ".join(QUEUED_RESOURCES) + " for this namespace only)")
    limit_ranges = [_get(r.props, "spec") for r in resources
                    if _kind(r) == "LimitRange" and _path(r.props, "metadata", "namespace") in (namespace, UNKNOWN)]
    if not any(item is UNKNOWN or (_get(item, "type") == "Container" and all(
            _path(item, part, resource) is not None for part in ("defaultRequest", "max") for resource in ("cpu", "memory")))
            for spec in limit_ranges for item in _items(_get(spec, "limits"))):
        missing.append("a LimitRange giving containers default cpu and memory requests and a max")
    policies = {_path(r.props, "metadata", "name"): r.props for r in resources if _kind(r) == "ValidatingAdmissionPolicy"}
    bound = False
    for binding in (r.props for r in resources if _kind(r) == "ValidatingAdmissionPolicyBinding"):
        name = _path(binding, "spec", "policyName")
        policy = UNKNOWN if name is UNKNOWN or UNKNOWN in policies else policies.get(name)
        actions = _get(_get(binding, "spec"), "validationActions")
        if policy is None or not _selects_namespace(binding, namespace):
            continue
        if actions is not UNKNOWN and "Deny" not in _strings(actions):
            continue
        if policy is UNKNOWN or (_path(policy, "spec", "failurePolicy") != "Ignore"
                                 and _items(_path(policy, "spec", "validations"))):
            bound = True
    if not bound:
        missing.append("a ValidatingAdmissionPolicy of the stack bound to it with Deny (remote-kpo's pod rules)")
    return missing


def validate_tenant_guards(args, report_violation) -> None:
    """A stack rule: `args.resources` is every resource of the stack."""
    resources = list(args.resources)
    for namespace in sorted(_pod_namespaces(resources)):
        for what in _tenant_guards(resources, namespace):
            report_violation(f"namespace {namespace}: a Role lets pods be created there, but the stack gives it no {what}")


# ---- the pack -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    validate: Callable[[Any, Callable[..., None]], None]
    # A stack rule sees every resource at once (`args.resources`); the others one at a time.
    stack: bool = False


RULES: tuple[Rule, ...] = (
    Rule("no-rbac-wildcard",
         "Role and ClusterRole rules name their apiGroups, resources, verbs and nonResourceURLs: "
         "no value contains '*'.",
         validate_no_rbac_wildcard),
    Rule("no-cluster-scoped-rbac",
         "No ClusterRole or ClusterRoleBinding at all, and no RoleBinding to a ClusterRole: a "
         "Deployment's rights are a Role in its own namespace, whose rules this pack checks.",
         validate_no_cluster_scoped_rbac),
    Rule("pods-exec-only-with-xcom",
         f"A Role (or ClusterRole) may grant pods/exec only if labelled {XCOM_LABEL}: \"true\", "
         "the label DeploymentAccess sets from the Deployment's xcom setting.",
         validate_pods_exec_only_with_xcom),
    Rule("namespace-pod-security",
         f"Every Namespace is labelled {POD_SECURITY_ENFORCE_LABEL}: baseline or restricted, so "
         "Pod Security admission refuses privileged, hostPath and hostNetwork pods.",
         validate_namespace_pod_security),
    Rule("no-iam-pod-rights",
         "No cloud IAM grant of pod rights: GCP custom roles with container.pods.* or grants of "
         "roles that include them; AWS policies allowing EKS API/access-entry actions (or '*', "
         "NotAction, AdministratorAccess/PowerUserAccess, trust of a whole account); Azure role "
         "definitions with pod data actions or admin-credential actions, or assignments of the "
         "AKS RBAC/Owner/Contributor roles.",
         validate_no_iam_pod_rights),
    Rule("gke-private-nodes",
         "GKE clusters have privateClusterConfig.enablePrivateNodes true, and no node pool turns "
         "it off.",
         validate_gke_private_nodes),
    Rule("gke-workload-identity",
         "GKE clusters set workloadIdentityConfig.workloadPool (Workload Identity).",
         validate_gke_workload_identity),
    Rule("gke-deletion-protection",
         "GKE clusters keep deletionProtection true (the provider's default when unset).",
         validate_gke_deletion_protection),
    Rule("gke-workload-metadata",
         "Every GKE node pool (and the cluster's default node config) runs the GKE metadata "
         "server: nodeConfig.workloadMetadataConfig.mode is GKE_METADATA.",
         validate_gke_workload_metadata),
    Rule("eks-secrets-encryption",
         "EKS clusters encrypt Kubernetes Secrets with a KMS key (encryptionConfig with resources "
         "['secrets'] and provider.keyArn).",
         validate_eks_secrets_encryption),
    Rule("eks-no-access-policy",
         "No EKS AccessPolicyAssociation (every access policy reaches beyond a Deployment's "
         "namespace Role) and no access entry mapped to system:masters.",
         validate_eks_no_access_policy),
    Rule("task-identity-one-service-account",
         f"A task identity is bound to one namespace's {TASK_SERVICE_ACCOUNT} ServiceAccount and "
         f"nothing wider: {WORKLOAD_IDENTITY_USER} only on a service account and only for "
         f"<pool>[<namespace>/{TASK_SERVICE_ACCOUNT}]; EKS Pod Identity associations only for "
         f"{TASK_SERVICE_ACCOUNT}; federated credentials for exactly one ServiceAccount (a task "
         f"credential for {TASK_SERVICE_ACCOUNT}); cloud identity annotations only on "
         f"{TASK_SERVICE_ACCOUNT}.",
         validate_task_identity_one_service_account),
    Rule("aks-local-accounts-off",
         "AKS clusters have disableLocalAccounts true, managed Entra ID (aadProfile.managed true) "
         "and Kubernetes RBAC on.",
         validate_aks_local_accounts_off),
    Rule("tenant-guards",
         "Every namespace where a Role lets pods be created gets, in the same stack, ResourceQuotas "
         "admitting no pods of the system PriorityClasses, with cross-namespace (anti-)affinity, or "
         "BestEffort; a ResourceQuota bounding requests.cpu, requests.memory, requests.nvidia.com/gpu, "
         "pods and count/pods (queued: pods and count/pods, and a LocalQueue 'default' whose Kueue "
         "ClusterQueue covers cpu, memory and nvidia.com/gpu for that namespace only); a LimitRange "
         "with default requests and a max; and a "
         "ValidatingAdmissionPolicy bound to it with Deny.",
         validate_tenant_guards, stack=True),
)
