"""Stack config (namespace `remote-kpo:`) as typed, validated models.

Validation is declared on the models; `load` turns the first failures into one message that
names the key path, e.g. `remote-kpo:deployments[1].identity.awsRoleArn: not an IAM role ARN`.
Defaults that depend on the cloud (machine types) are resolved here, so components receive
complete values.
"""

import difflib
import ipaddress
import json
import re
import typing
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Optional, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import ErrorDetails, PydanticCustomError

NAMESPACE = "remote-kpo"
CLOUDS = ("gke", "eks", "aks", "existing")


class ConfigError(Exception):
    """Bad stack config: the message names the key path and what is wrong."""


def _matching(regex: str, what: str) -> AfterValidator:
    """The validator of a string that must fully match `regex`, else fails with `not <what>`."""
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise PydanticCustomError("format", "not {what}", {"what": what})
        return value

    return AfterValidator(check)


def _parsing(parse: typing.Callable[[str], object], what: str) -> AfterValidator:
    """After `_matching`: a string of the right shape must also name a real date or time
    (2025-02-30 fits the pattern); else fails with `not <what>`, at its key."""

    def check(value: str) -> str:
        try:
            parse(value)
        except ValueError:
            raise PydanticCustomError("format", "not {what}", {"what": what}) from None
        return value

    return AfterValidator(check)


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise PydanticCustomError("format", "not a CIDR block like 203.0.113.0/24") from None
    return value


DnsLabel = Annotated[str, _matching(
    r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", "a DNS label (a-z, 0-9, '-', at most 63)")]
# An Airflow connection id: Airflow reads it from AIRFLOW_CONN_<ID upper-cased>, and the smoke
# DAG finds the AIRFLOW_CONN_KPO_* ones.
ConnectionId = Annotated[str, _matching(
    r"kpo_[a-z0-9_]{1,100}", "kpo_ then a-z, 0-9 and '_' (at most 104)")]
# GKE allows 40 characters, EKS 100, AKS 63: the strictest rule keeps one name valid everywhere.
ClusterName = Annotated[str, _matching(
    r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", "a cluster name (a-z first, a-z 0-9 '-', at most 40)")]
GcpServiceAccount = Annotated[str, _matching(
    r"[a-z0-9][-a-z0-9]{0,62}@[a-z0-9][-a-z0-9.]*\.gserviceaccount\.com",
    "a Google service account email (name@project.iam.gserviceaccount.com)",
)]
# Every partition AwsRegion accepts: aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b (and later
# ISO partitions, aws-iso-<letter>).
AwsRoleArn = Annotated[str, _matching(
    r"arn:aws(-cn|-us-gov|-iso(-[a-z])?)?:iam::\d{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}", "an IAM role ARN"
)]
AwsRegion = Annotated[str, _matching(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d", "an AWS region like us-east-1")]
SubnetId = Annotated[str, _matching(r"subnet-[0-9a-f]{8,17}", "a subnet id like subnet-0123abcd")]
Uuid = Annotated[str, _matching(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", "a UUID")]
HttpsUrl = Annotated[str, _matching(r"https://[^\s/]+(/\S*)?", "an https:// URL")]
ServiceAccountSubject = Annotated[str, _matching(
    r"system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?",
    "a Kubernetes service account subject system:serviceaccount:<namespace>:<name>",
)]
Quantity = Annotated[str, _matching(
    r"\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?", "a Kubernetes quantity like 500m or 2Gi")]
Cidr = Annotated[str, AfterValidator(_cidr)]
GcpProject = Annotated[str, _matching(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", "a Google Cloud project id")]
# Regions end in one or two digits (us-east5, europe-west10, me-central2); a zone adds -<letter>.
GCP_REGION = r"[a-z]+-[a-z]+\d{1,2}"
GcpLocation = Annotated[str, _matching(
    rf"{GCP_REGION}(-[a-z])?", "a Google Cloud region or zone like us-central1")]
GcpZone = Annotated[str, _matching(rf"{GCP_REGION}-[a-z]", "a Google Cloud zone like us-central1-a")]
AzureRegion = Annotated[str, _matching(r"[a-z]+[a-z0-9]*", "an Azure region like westeurope")]
ResourceGroupName = Annotated[str, _matching(r"[-\w.()]{1,89}[-\w()]", "an Azure resource group name")]
KubernetesMinor = Annotated[str, _matching(r"1\.\d{2}", "a Kubernetes minor version like 1.34")]
# AKS: major.minor only. Its patch auto-upgrade channel moves the cluster to newer patches, and
# AKS reads an unchanged major.minor as no upgrade (ManagedClusterProperties.kubernetesVersion,
# azure-rest-api-specs containerservice managedClusters.json: "Updating the cluster with the same
# <major.minor> once it has been created (e.g. 1.14.x -> 1.14) will not trigger an upgrade"); a
# pinned 1.xx.y would ask for a downgrade once the channel has patched the cluster.
AksKubernetesVersion = Annotated[str, _matching(
    r"1\.\d{2}", "a Kubernetes minor version like 1.35 (major.minor only: the patch auto-upgrade channel picks the patch)")]
_AZURE_ID_PREFIX = r"/subscriptions/[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}/resourceGroups/[-\w.()]{1,90}/providers/"
AcrId = Annotated[str, _matching(
    _AZURE_ID_PREFIX + r"Microsoft\.ContainerRegistry/registries/[a-zA-Z0-9]{5,50}",
    "an Azure container registry resource id (/subscriptions/<id>/resourceGroups/<group>/providers/"
    "Microsoft.ContainerRegistry/registries/<name>)",
)]
AZURE_IDENTITY_ID = re.compile(
    _AZURE_ID_PREFIX + r"Microsoft\.ManagedIdentity/userAssignedIdentities/[a-zA-Z0-9][-\w]{2,127}")
# Task pods act as a user-managed account only (never a Google-managed or default compute one);
# its project, which holds its IAM policy, is the email's domain.
TaskGcpServiceAccount = Annotated[str, _matching(
    r"[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com",
    "a user-managed Google service account email (name@project.iam.gserviceaccount.com)",
)]
# A container image reference: [registry[:port]/]path[:tag][@sha256:digest], lower-case path
# components (distribution/reference's grammar, simplified).
ImageReference = Annotated[str, _matching(
    r"([a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?(:\d{1,5})?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
    r"(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?",
    "an image reference like registry.example.com/mirror/alpine:3.24",
)]
# A registry as Docker and the kubelet name it: a host with an optional port and path.
RegistryServer = Annotated[str, _matching(
    r"(https?://)?[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?(:\d{1,5})?(/[^\s]*)?",
    "a registry host like ghcr.io or registry.example.com:5000",
)]


class Model(BaseModel):
    """Config keys are camelCase; unknown keys are errors so typos cannot pass silently."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, validate_default=True
    )


def _slash_28(value: str) -> str:
    prefix = ipaddress.ip_network(value).prefixlen
    if prefix != 28:
        raise PydanticCustomError("format", "/{prefix}: GKE takes a /28 for the control plane", {"prefix": prefix})
    return value


def _zulu_seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# GKE's maintenance times: RFC3339 in UTC, as GKE returns them (terraform-provider-google's
# maintenance_policy doc: another form "will return values in UTC, causing a permanent diff").
_ZULU = "a UTC time like 2025-01-04T00:00:00Z"
ZuluTime = Annotated[str, _matching(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", _ZULU), _parsing(_zulu_seconds, _ZULU)]
RRule = Annotated[str, _matching(r"FREQ=(DAILY|WEEKLY|MONTHLY)(;[A-Z]+=[-+A-Z0-9,]+)*",
                                 "an RFC 5545 RRULE like FREQ=WEEKLY;BYDAY=SA,SU")]
# GKE counts only windows of at least four contiguous hours ("Configure maintenance windows and
# exclusions": at least 48 hours in a 32-day rolling window, which GKE itself checks).
MIN_GKE_WINDOW_SECONDS = 4 * 3600


class GkeMaintenanceWindow(Model):
    # The first window's start and end (its length); `recurrence` repeats it, days in UTC.
    start: ZuluTime
    end: ZuluTime
    recurrence: RRule

    @model_validator(mode="after")
    def _at_least_four_hours(self):
        if _zulu_seconds(self.end) - _zulu_seconds(self.start) < MIN_GKE_WINDOW_SECONDS:
            raise _at("end", "at least 4 hours after start: GKE counts no shorter window")
        return self


class GkeMaintenanceExclusion(Model):
    name: str = Field(min_length=1, max_length=63)
    start: ZuluTime
    end: ZuluTime
    # NO_MINOR_OR_NODE_UPGRADES: no node is upgraded (drained) under running tasks; control
    # plane patches still apply.
    scope: Literal["NO_UPGRADES", "NO_MINOR_UPGRADES", "NO_MINOR_OR_NODE_UPGRADES"] = "NO_MINOR_OR_NODE_UPGRADES"

    @model_validator(mode="after")
    def _end_after_start(self):
        if _zulu_seconds(self.end) <= _zulu_seconds(self.start):
            raise _at("end", "must be after start")
        return self


# Saturdays and Sundays (UTC), all day: node upgrades, which drain nodes whatever a task's
# annotations say, happen at weekends only. 2025-01-04 is a Saturday.
DEFAULT_GKE_MAINTENANCE_WINDOW = {"start": "2025-01-04T00:00:00Z", "end": "2025-01-05T00:00:00Z",
                                  "recurrence": "FREQ=WEEKLY;BYDAY=SA,SU"}
# terraform-provider-google, google_container_cluster maintenance_policy: "up to 20 maintenance
# exclusions at a time".
MAX_GKE_MAINTENANCE_EXCLUSIONS = 20


class GkeConfig(Model):
    project: GcpProject
    location: GcpLocation
    network: Optional[str] = None
    subnetwork: Optional[str] = None
    release_channel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] = "REGULAR"
    master_authorized_networks: list[Cidr] = []
    private_nodes: bool = True
    # With private nodes, the control plane's internal range in the legacy VPC-peering mode.
    # Unset (the default): GKE's Private Service Connect mode, which needs no range.
    control_plane_cidr: Optional[Annotated[Cidr, AfterValidator(_slash_28)]] = None
    deletion_protection: bool = True
    # How this program's own Kubernetes provider gets its token from gke-gcloud-auth-plugin:
    # gcloud (a person's `gcloud auth login`) or adc (application default credentials, e.g.
    # CI with GOOGLE_APPLICATION_CREDENTIALS and no gcloud login).
    login: Literal["gcloud", "adc"] = "gcloud"
    maintenance_window: GkeMaintenanceWindow = GkeMaintenanceWindow.model_validate(DEFAULT_GKE_MAINTENANCE_WINDOW)
    maintenance_exclusions: list[GkeMaintenanceExclusion] = Field(default=[], max_length=MAX_GKE_MAINTENANCE_EXCLUSIONS)

    @model_validator(mode="after")
    def _distinct_exclusion_names(self):
        names = [e.name for e in self.maintenance_exclusions]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise _at(f"maintenanceExclusions[{i}].name", f"duplicate of maintenanceExclusions[{names.index(name)}]")
        return self

    @model_validator(mode="after")
    def _subnetwork_needs_network(self):
        if self.subnetwork and not self.network:
            raise _at("network", "required when subnetwork is set")
        return self

    @model_validator(mode="after")
    def _control_plane_cidr_needs_private_nodes(self):
        if self.control_plane_cidr and not self.private_nodes:
            raise _at("controlPlaneCidr", "only with privateNodes: true")
        return self


def _eks_vpc_cidr(value: str) -> str:
    # The block is split into six subnets over up to three zones.
    prefix = ipaddress.ip_network(value).prefixlen
    if not 16 <= prefix <= 24:
        raise PydanticCustomError(
            "format", "/{prefix} does not fit: use a block from /16 to /24 (it is split into six subnets)",
            {"prefix": prefix})
    return value


class EksConfig(Model):
    region: AwsRegion
    # The VPC made when no subnetIds are given.
    vpc_cidr: Optional[Annotated[Cidr, AfterValidator(_eks_vpc_cidr)]] = None
    subnet_ids: Optional[list[SubnetId]] = None
    # Unset: EKS's default version at creation.
    version: Optional[KubernetesMinor] = None
    public_access_cidrs: list[Cidr] = []
    deletion_protection: bool = True

    @model_validator(mode="after")
    def _auto_mode_version(self):
        if self.version is not None and _minor(self.version) < MIN_KUBERNETES_MINOR:
            raise _at("version", f"{self.version} is too old: {TOO_OLD}")
        return self

    @model_validator(mode="after")
    def _one_network_source(self):
        if self.vpc_cidr and self.subnet_ids is not None:
            raise _at("subnetIds", "set either vpcCidr or subnetIds, not both")
        if self.subnet_ids is not None and len(self.subnet_ids) < 2:
            raise _at("subnetIds", "EKS needs at least two subnets in different availability zones")
        if self.subnet_ids is None and self.vpc_cidr is None:
            self.vpc_cidr = "10.0.0.0/16"
        return self


# ValidatingAdmissionPolicy, which keeps tenants apart (components/admission.py), is GA (on by
# default) from Kubernetes 1.30; EKS Auto Mode itself needs 1.29 (EKS user guide, "Create a cluster
# with Amazon EKS Auto Mode").
MIN_KUBERNETES_MINOR = 30
TOO_OLD = "the tenant admission policies need Kubernetes 1.30 or newer (ValidatingAdmissionPolicy)"


def _minor(version: str) -> int:
    return int(version.split(".")[1])


_AZURE_DATE = "a date like 2025-12-24"
AzureDate = Annotated[str, _matching(r"\d{4}-\d{2}-\d{2}", _AZURE_DATE), _parsing(date.fromisoformat, _AZURE_DATE)]


class AksDateSpan(Model):
    start: AzureDate
    end: AzureDate

    @model_validator(mode="after")
    def _end_not_before_start(self):
        if self.end < self.start:
            raise _at("end", "must not be before start")
        return self


class AksMaintenanceWindow(Model):
    # Weekly, in UTC. AKS's MaintenanceWindow (the REST API's, as pulumi_azure_native's
    # containerservice.MaintenanceWindowArgs documents it): startTime '00:00' to '23:59',
    # durationHours 4 to 24.
    day_of_week: Literal["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"] = "Saturday"
    start_time: Annotated[str, _matching(r"([01]\d|2[0-3]):[0-5]\d", "a time like 00:00 (UTC)")] = "00:00"
    duration_hours: int = Field(default=24, ge=4, le=24)
    # Days on which neither cluster nor node OS upgrades start, whatever the window says.
    not_allowed_dates: list[AksDateSpan] = []


class AksConfig(Model):
    location: AzureRegion
    resource_group: Optional[ResourceGroupName] = None
    tenant_id: Uuid
    # Unset: AKS's default version at creation.
    kubernetes_version: Optional[AksKubernetesVersion] = None
    # Local accounts are off, so Entra groups are the only way in for admins.
    admin_group_object_ids: list[Uuid] = Field(min_length=1)
    authorized_ip_ranges: list[Cidr] = []
    # How this program's own Kubernetes provider logs in through kubelogin.
    login: Literal["azurecli", "workloadidentity", "spn"] = "azurecli"
    # Registries the nodes' kubelet identity may pull from (AcrPull on each).
    acr_ids: list[AcrId] = []
    # Pulumi `protect` on the cluster: `destroy` stops before deleting anything (README, aks).
    deletion_protection: bool = True
    # When AKS may upgrade the cluster (patch channel) and reimage nodes (NodeImage channel):
    # both drain nodes whatever a task's annotations say. All of Saturday, UTC, by default.
    maintenance_window: AksMaintenanceWindow = AksMaintenanceWindow()

    @model_validator(mode="after")
    def _version_with_admission_policies(self):
        if self.kubernetes_version is not None and _minor(self.kubernetes_version) < MIN_KUBERNETES_MINOR:
            raise _at("kubernetesVersion", f"{self.kubernetes_version} is too old: {TOO_OLD}")
        return self

    @model_validator(mode="after")
    def _distinct_acr_ids(self):
        seen: dict[str, int] = {}
        for i, acr_id in enumerate(self.acr_ids):
            if acr_id.lower() in seen:
                raise _at(f"acrIds[{i}]", f"duplicate of acrIds[{seen[acr_id.lower()]}]")
            seen[acr_id.lower()] = i
        return self


class ExistingConfig(Model):
    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    server: Optional[HttpsUrl] = None


class KubeClient(Model):
    """The client-side rate limit of this program's own Kubernetes providers (client-go's token
    bucket: `burst` requests at once, then `qps` a second). The defaults and why they are safe:
    README, "Config reference"; how they were measured: bench/README.md."""

    qps: float = Field(default=200, gt=0)
    burst: int = Field(default=400, ge=1)


# A Go duration as Karpenter's NodePool CRD accepts it (pkg/apis/v1/nodepool.go: the pattern of
# terminationGracePeriod and expireAfter, without expireAfter's `Never`).
KarpenterDuration = Annotated[str, _matching(r"([0-9]+(s|m|h))+", "a duration like 24h or 90m (h, m, s)")]
_DURATION_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
AUTO_MODE_MAX_NODE_SECONDS = 21 * 24 * 3600


def karpenter_seconds(duration: str) -> int:
    return sum(int(n) * _DURATION_UNIT_SECONDS[unit] for n, unit in re.findall(r"([0-9]+)([smh])", duration))


def _at_most_21_days(value: str) -> str:
    if karpenter_seconds(value) > AUTO_MODE_MAX_NODE_SECONDS:
        raise PydanticCustomError("range", "above 504h: EKS Auto Mode replaces a node after 21 days at most")
    return value


class NodePool(Model):
    machine_type: Optional[str] = None
    min_nodes: int = Field(default=1, ge=0)
    max_nodes: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _min_not_above_max(self):
        if self.min_nodes > self.max_nodes:
            raise _at("minNodes", f"{self.min_nodes} is above maxNodes {self.max_nodes}")
        return self


class Accelerator(Model):
    # The GKE accelerator (required there); EKS and AKS take the GPU from machineType.
    type: Optional[str] = Field(default=None, min_length=1)
    # GPUs per node: attached on GKE, the NodePool's GPU limit per node on EKS.
    count: int = Field(default=1, ge=1)




class NodeLifetime(Model):
    """EKS (a Karpenter NodePool of the program's): how long a task may keep a drifted or expired
    node before it is deleted (a day), and a node's lifetime: 336h is Auto Mode's default, 21 days
    its most (EKS user guide, "Create a Node Pool for EKS Auto Mode"). Never unbounded: a stuck
    task must not hold a node forever."""

    termination_grace_period: KarpenterDuration = "24h"
    expire_after: Annotated[KarpenterDuration, AfterValidator(_at_most_21_days)] = "336h"


class TaskPool(NodeLifetime):
    """EKS: the NodePool ordinary tasks run on (components/disruption.py); it sizes itself."""


class GpuPool(NodePool, NodeLifetime):
    enabled: bool = False
    accelerator: Optional[Accelerator] = None
    # Scale to zero: GPU nodes exist only while a task needs one.
    min_nodes: int = Field(default=0, ge=0)
    max_nodes: int = Field(default=2, ge=1)
    spot: bool = False
    # GKE: the zones of the cluster's region where the accelerator is offered.
    zones: Optional[list[GcpZone]] = Field(default=None, min_length=1)

    @property
    def gpus_per_node(self) -> int:
        return self.accelerator.count if self.accelerator else 1


# Entra ID allows at most 20 federated credentials on one managed identity.
# https://learn.microsoft.com/en-us/entra/workload-id/workload-identity-federation-considerations
MAX_FEDERATED_CREDENTIALS = 20


class AzureIdentity(Model):
    issuer: HttpsUrl
    # One service account, or several: a deferrable task runs in Astro's triggerer, which may
    # use another service account than the worker. One federated credential each.
    subject: Optional[ServiceAccountSubject] = None
    subjects: Optional[list[ServiceAccountSubject]] = Field(
        default=None, min_length=1, max_length=MAX_FEDERATED_CREDENTIALS)

    @model_validator(mode="after")
    def _subject_or_subjects(self):
        if self.subject is not None and self.subjects is not None:
            raise _at("subjects", "set either subject or subjects, not both")
        if self.subject is None and self.subjects is None:
            raise _at("subject", "required (or subjects, a list)")
        subjects = self.subjects or []
        for i, subject in enumerate(subjects):
            if subject in subjects[:i]:
                raise _at(f"subjects[{i}]", f"duplicate of subjects[{subjects.index(subject)}]")
        return self

    @property
    def all_subjects(self) -> list[str]:
        return [self.subject] if self.subject is not None else list(self.subjects or [])


class Identity(Model):
    gcp_service_account: Optional[GcpServiceAccount] = None
    aws_role_arn: Optional[AwsRoleArn] = None
    azure: Optional[AzureIdentity] = None


IDENTITY_KEY = {"gke": "gcpServiceAccount", "eks": "awsRoleArn", "aks": "azure"}


_QUANTITY_SUFFIX = {"m": "0.001", "": "1", "k": "1e3", "M": "1e6", "G": "1e9", "T": "1e12",
                    "Ki": "1024", "Mi": "1048576", "Gi": "1073741824", "Ti": "1099511627776"}


def quantity_value(quantity: str) -> Decimal:
    """The number a Quantity (as the Quantity type above admits it) stands for, to compare two."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", quantity)
    if match is None or match.group(2) not in _QUANTITY_SUFFIX:
        raise ValueError(f"not a quantity: {quantity!r}")
    return Decimal(match.group(1)) * Decimal(_QUANTITY_SUFFIX[match.group(2)])


# What every Deployment gets unless it says otherwise (issue 20): containers that set no resources
# get requests and limits (so no task runs BestEffort, unaccounted for on a shared node), none may
# exceed `max`, and the namespace's quota bounds the whole, with no GPU unless given.
class PodRequests(Model):
    cpu: Quantity = "100m"
    memory: Quantity = "256Mi"


class PodLimits(Model):
    cpu: Quantity = "1"
    memory: Quantity = "1Gi"


class PodMax(Model):
    cpu: Quantity = "4"
    memory: Quantity = "16Gi"


class PodDefaults(Model):
    """The namespace's LimitRange, per container: default requests and limits for what a
    container leaves unset, and the most a container may request or be limited to."""

    requests: PodRequests = PodRequests()
    limits: PodLimits = PodLimits()
    max: PodMax = PodMax()

    @model_validator(mode="after")
    def _requests_within_limits_within_max(self):
        # The API server refuses such a LimitRange (default request <= default limit <= max);
        # said here, before anything is created.
        for resource in ("cpu", "memory"):
            steps = [("requests", getattr(self.requests, resource)), ("limits", getattr(self.limits, resource)),
                     ("max", getattr(self.max, resource))]
            for (low_key, low), (high_key, high) in zip(steps, steps[1:]):
                if quantity_value(low) > quantity_value(high):
                    raise _at(f"{low_key}.{resource}", f"{low} is above {high_key}.{resource} {high}")
        return self


# Finished pods the namespace may keep per running pod, when totalPods is not given.
FINISHED_PODS_PER_POD = 3


class QueueLimits(Model):
    """Per resource, how much of the cohort's quota a Deployment's ClusterQueue may borrow or lend
    (Kueue's borrowingLimit and lendingLimit, components/queueing.py)."""

    cpu: Optional[Quantity] = None
    memory: Optional[Quantity] = None
    gpu: Optional[int] = Field(default=None, ge=0)


class Quota(Model):
    """The namespace's ResourceQuota. `pods` counts pods that have not finished (Kubernetes'
    `pods`); `totalPods` counts every stored pod, finished ones too (`count/pods`): those that
    KPO's on_finish_action `keep_pod` or `delete_succeeded_pod` leaves behind. With `queueing`,
    cpu, memory and gpu are the Deployment's ClusterQueue's nominal quota instead, and
    `borrowingLimit` (what it may take from idle Deployments; nothing unless given) and
    `lendingLimit` (what of its own idle quota others may take; all unless given) apply."""

    cpu: Quantity = "8"
    memory: Quantity = "32Gi"
    gpu: int = Field(default=0, ge=0)
    pods: int = Field(default=50, ge=0)
    total_pods: Optional[int] = Field(default=None, ge=0)
    borrowing_limit: Optional[QueueLimits] = None
    lending_limit: Optional[QueueLimits] = None

    @model_validator(mode="after")
    def _total_pods(self):
        if self.total_pods is None:
            self.total_pods = self.pods * (1 + FINISHED_PODS_PER_POD)
        elif self.total_pods < self.pods:
            raise _at("totalPods", f"{self.total_pods} is below pods {self.pods}: totalPods counts running pods too")
        return self

    @model_validator(mode="after")
    def _lending_within_quota(self):
        # Kueue refuses a lendingLimit above the nominal quota (its ClusterQueue webhook); said
        # here, before anything is created.
        lending = self.lending_limit
        if lending is None:
            return self
        for resource in ("cpu", "memory"):
            limit = getattr(lending, resource)
            if limit is not None and quantity_value(limit) > quantity_value(getattr(self, resource)):
                raise _at(f"lendingLimit.{resource}", f"{limit} is above quota.{resource} {getattr(self, resource)}: "
                          "a Deployment lends only its own quota")
        if lending.gpu is not None and lending.gpu > self.gpu:
            raise _at("lendingLimit.gpu", f"{lending.gpu} is above quota.gpu {self.gpu}: a Deployment lends only its own quota")
        return self


# KubernetesPodOperator's default schedule timeout (its startup_timeout_seconds, 120 s) is what
# a queued task may wait at least.
MIN_QUEUE_WAIT_SECONDS = 120


class Queueing(Model):
    """Kueue queueing for the cluster (README, Queueing): a task over its Deployment's quota waits
    in line instead of being refused."""

    enabled: bool = False
    # How long a task may wait in line before KPO gives up on it (schedule_timeout_seconds).
    max_wait_seconds: int = Field(default=3600, ge=MIN_QUEUE_WAIT_SECONDS, le=7 * 24 * 3600)
    # A Deployment whose lent quota is in use by another's tasks: waits for them to end (wait),
    # or has Kueue evict them at once (preempt: the borrowing task's pod is deleted and it fails).
    reclaim: Literal["wait", "preempt"] = "wait"


def _at_least(seconds: int, why: str) -> AfterValidator:
    """The validator of a KarpenterDuration that must be at least `seconds` long."""

    def check(value: str) -> str:
        if karpenter_seconds(value) < seconds:
            raise PydanticCustomError("range", "below {least}: {why}", {"least": _duration(seconds), "why": why})
        return value

    return AfterValidator(check)


def _duration(seconds: int) -> str:
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


# KPO reads a finished pod once more after it ends: a deferrable task when it resumes on a worker
# (KubernetesPodOperator.trigger_reentry reads the pod), which may wait for a free worker slot.
MIN_FINISHED_TTL_SECONDS = 5 * 60
# The Running rule counts from the pod's creation, startup wait included: the longest any task
# shape may wait (gpuTask: schedule and startup timeouts of 900 s each) stays well inside it.
MIN_MAX_TASK_RUNTIME_SECONDS = 3600


class Janitor(Model):
    """The maintenance DAG dags/remote_kpo_janitor.py for this Deployment's namespace: which of
    its KPO pods it removes (README, "Orphaned task pods")."""

    enabled: bool = True
    finished_ttl: Annotated[KarpenterDuration, _at_least(
        MIN_FINISHED_TTL_SECONDS, "a deferrable task reads its finished pod when it resumes on a worker")] = "1h"
    max_task_runtime: Annotated[KarpenterDuration, _at_least(
        MIN_MAX_TASK_RUNTIME_SECONDS, "it counts from the pod's creation, the startup wait (up to 30m for a GPU "
        "task) included")] = "24h"


class Registry(Model):
    """One private registry's login, or (alone in the list) a whole Docker config JSON. The
    password and the JSON are credentials: set them with `pulumi config set --secret --path`."""

    server: Optional[RegistryServer] = None
    username: Optional[str] = Field(default=None, min_length=1)
    password: Optional[str] = Field(default=None, min_length=1)
    docker_config_json: Optional[str] = None

    @model_validator(mode="after")
    def _login_or_docker_config(self):
        login = {"server": self.server, "username": self.username, "password": self.password}
        if self.docker_config_json is not None:
            given = [key for key, value in login.items() if value is not None]
            if given:
                raise _at(given[0], "set either dockerConfigJson or server, username and password, not both")
            if not _is_docker_config(self.docker_config_json):
                # Never echoes the value: it holds credentials.
                raise _at("dockerConfigJson", "not a Docker config JSON with a non-empty auths object "
                                              "(the content of ~/.docker/config.json)")
            return self
        for key, value in login.items():
            if value is None:
                raise _at(key, "required (or give dockerConfigJson alone)")
        return self


def _is_docker_config(text: str) -> bool:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return False
    auths = document.get("auths") if isinstance(document, dict) else None
    return isinstance(auths, dict) and bool(auths) and all(isinstance(v, dict) for v in auths.values())


def _azure_task_identity(value: Any) -> Any:
    """`{}` (have an identity created) or an existing user-assigned identity's resource id."""
    if value is None or value == {}:
        return value
    if isinstance(value, str) and AZURE_IDENTITY_ID.fullmatch(value):
        return value
    raise PydanticCustomError(
        "format", "not {} (have one created) or a user-assigned identity resource id (/subscriptions/<id>/"
                  "resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)")


class TaskIdentity(Model):
    """The cloud identity task pods get by running as the `remote-kpo-task` ServiceAccount."""

    gcp_service_account: Optional[TaskGcpServiceAccount] = None
    aws_role_arn: Optional[AwsRoleArn] = None
    azure_identity: Annotated[Optional[str | dict], PlainValidator(_azure_task_identity)] = None


TASK_IDENTITY_KEY = {"gke": "gcpServiceAccount", "eks": "awsRoleArn", "aks": "azureIdentity"}


class Deployment(Model):
    name: DnsLabel
    namespace: Optional[DnsLabel] = None
    xcom: bool = True
    identity: Optional[Identity] = None
    ephemeral_node_pools: bool = False
    pod_defaults: PodDefaults = PodDefaults()
    quota: Quota = Quota()
    # The Pod Security Standard enforced on its namespace: baseline stops privileged, hostPath,
    # hostNetwork and similar node takeovers; restricted also requires non-root, no privilege
    # escalation, dropped capabilities and a seccomp profile.
    pod_security: Literal["baseline", "restricted"] = "baseline"
    # The Airflow connection id, kpo_<name> (dashes to underscores) by default. Give it the
    # cluster or stack (kpo_gke_analytics) when several stacks hand connections to one Astro
    # Deployment: the same id twice would be one environment variable written twice.
    connection_id: Optional[ConnectionId] = None
    registries: Optional[list[Registry]] = Field(default=None, min_length=1)
    task_identity: Optional[TaskIdentity] = None
    # KPO's XCom sidecar image (the provider's default is alpine from Docker Hub): a private
    # mirror avoids Docker Hub's pull limits and a second registry on every XCom task's path.
    xcom_sidecar_image: Optional[ImageReference] = None
    janitor: Janitor = Janitor()

    @model_validator(mode="after")
    def _sidecar_image_needs_xcom(self):
        if self.xcom_sidecar_image is not None and not self.xcom:
            raise _at("xcomSidecarImage", "only with xcom: true (without pods/exec no task reads an XCom sidecar)")
        return self

    @model_validator(mode="after")
    def _registries_distinct(self):
        servers: dict[str, int] = {}
        registries = self.registries or []
        for i, registry in enumerate(registries):
            if registry.docker_config_json is not None and len(registries) > 1:
                raise _at(f"registries[{i}].dockerConfigJson", "must be the only entry: it holds every registry's login")
            if registry.server is not None:
                if registry.server in servers:
                    raise _at(f"registries[{i}].server", f"duplicate of registries[{servers[registry.server]}]")
                servers[registry.server] = i
        return self

    @model_validator(mode="after")
    def _default_namespace(self):
        if self.namespace is None:
            default = f"kpo-{self.name}"
            if len(default) > 63:
                raise _at("name", f"too long for the default namespace {default}; set namespace")
            self.namespace = default
        return self

    @property
    def namespace_name(self) -> str:
        """The namespace (set by the validator above, so never None once loaded)."""
        if self.namespace is None:
            raise ValueError("Deployment.namespace is resolved by validation")
        return self.namespace

    @property
    def airflow_conn_id(self) -> str:
        return self.connection_id or "kpo_" + self.name.replace("-", "_")

    @property
    def env_var(self) -> str:
        return "AIRFLOW_CONN_" + self.airflow_conn_id.upper()


# Per-cloud defaults for pools left unset: small general-purpose system nodes (EKS Auto Mode
# sizes its own), and one NVIDIA T4 per GPU node (the cheapest current GPU on each cloud;
# g4dn is among the instance types EKS Auto Mode launches, EKS user guide "Learn about Amazon
# EKS Auto Mode Managed instances").
SYSTEM_MACHINE_TYPE = {"gke": "e2-standard-4", "aks": "Standard_D4s_v5"}
GPU_MACHINE_TYPE = {"gke": "n1-standard-4", "eks": "g4dn.xlarge", "aks": "Standard_NC4as_T4_v3"}


class StackConfig(Model):
    cloud: Literal["gke", "eks", "aks", "existing"]
    cluster_name: Optional[ClusterName] = None
    gke: Optional[GkeConfig] = None
    eks: Optional[EksConfig] = None
    aks: Optional[AksConfig] = None
    existing: Optional[ExistingConfig] = None
    system_pool: NodePool = NodePool()
    gpu_pool: GpuPool = GpuPool()
    task_pool: TaskPool = TaskPool()
    kube_client: KubeClient = KubeClient()
    queueing: Queueing = Queueing()
    deployments: list[Deployment] = Field(min_length=1)

    @model_validator(mode="after")
    def _cloud_sections(self):
        for other in CLOUDS:
            if other != self.cloud and getattr(self, other) is not None:
                raise _at(other, f"set, but cloud is {self.cloud}")
        if self.cloud == "existing":
            if self.existing is None:
                self.existing = ExistingConfig()
        elif getattr(self, self.cloud) is None:
            raise _at(self.cloud, f"required when cloud is {self.cloud}")
        return self

    @model_validator(mode="after")
    def _pool_defaults(self):
        self._check_pools_per_cloud()
        if self.cloud == "existing":
            # The program makes no nodes there: `enabled` alone says the cluster's own GPU nodes
            # carry the pool's label and taint (components/gpu.py), so `gpuTask` can name them.
            given = [to_camel(key) for key in GpuPool.model_fields
                     if key != "enabled" and key in self.gpu_pool.model_fields_set]
            if given:
                raise _at(f"gpuPool.{given[0]}", "not used on existing: the program makes no nodes there; "
                          "`gpuPool: {enabled: true}` says the cluster's GPU nodes carry the label "
                          "remote-kpo/gpu=true and the taint nvidia.com/gpu=present:NoSchedule")
            return self
        # AKS keeps cluster add-ons on the System pool, which cannot scale to zero.
        if self.cloud == "aks" and self.system_pool.min_nodes < 1:
            raise _at("systemPool.minNodes", "an AKS system pool needs at least 1 node")
        if self.cloud != "eks" and self.system_pool.machine_type is None:
            pool = self.system_pool.model_copy(update={"machine_type": SYSTEM_MACHINE_TYPE[self.cloud]})
            self.system_pool = pool
        if self.gpu_pool.enabled:
            accelerator = self.gpu_pool.accelerator
            if self.cloud == "gke" and (accelerator is None or accelerator.type is None):
                raise _at("gpuPool.accelerator.type", "required for a GKE GPU pool")
            if self.gpu_pool.machine_type is None:
                self.gpu_pool = self.gpu_pool.model_copy(update={"machine_type": GPU_MACHINE_TYPE[self.cloud]})
        return self

    def _check_pools_per_cloud(self) -> None:
        """Pool keys a cloud has no use for are errors, not silently ignored; GPU zones lie in the
        cluster's region."""
        system_keys = [to_camel(key) for key in NodePool.model_fields if key in self.system_pool.model_fields_set]
        if self.cloud == "eks" and system_keys:
            raise _at(f"systemPool.{system_keys[0]}",
                      "not used on eks: EKS Auto Mode runs cluster add-ons on its built-in system pool, which sizes itself")
        task_keys = [to_camel(key) for key in TaskPool.model_fields if key in self.task_pool.model_fields_set]
        if self.cloud != "eks" and task_keys:
            raise _at(f"taskPool.{task_keys[0]}", f"only used on eks (the NodePool tasks run on there), not on {self.cloud}")
        gpu = self.gpu_pool
        if gpu.zones is not None and self.cloud != "gke":
            raise _at("gpuPool.zones", f"only used on gke (where accelerators are offered per zone), not on {self.cloud}")
        if gpu.accelerator is not None:
            if self.cloud == "aks":
                raise _at("gpuPool.accelerator", "not used on aks: the VM size in machineType sets the GPU type and count")
            if self.cloud == "eks" and gpu.accelerator.type is not None:
                raise _at("gpuPool.accelerator.type",
                          "not used on eks: machineType sets the GPU (accelerator.count is the GPUs per node)")
        if self.cloud == "eks" and gpu.min_nodes > 0:
            raise _at("gpuPool.minNodes", "must be 0 on eks: an EKS Auto Mode NodePool starts GPU nodes only for pending tasks")
        if self.cloud == "gke" and gpu.zones is not None:
            region = _gcp_region(present(self.gke, "gke").location)
            for i, zone in enumerate(gpu.zones):
                if _gcp_region(zone) != region:
                    raise _at(f"gpuPool.zones[{i}]", f"{zone} is not in the cluster's region {region}")

    @model_validator(mode="after")
    def _deployments(self):
        seen_names: dict[str, int] = {}
        seen_namespaces: dict[str, int] = {}
        seen_conn_ids: dict[str, int] = {}
        for i, deployment in enumerate(self.deployments):
            # Always set by Deployment._default_namespace.
            namespace = str(deployment.namespace)
            if deployment.name in seen_names:
                raise _at(f"deployments[{i}].name", f"duplicate of deployments[{seen_names[deployment.name]}]")
            if namespace in seen_namespaces:
                first = seen_namespaces[namespace]
                raise _at(f"deployments[{i}].namespace", f"{namespace} is already used by deployments[{first}]")
            if deployment.airflow_conn_id in seen_conn_ids:
                first = seen_conn_ids[deployment.airflow_conn_id]
                raise _at(f"deployments[{i}].connectionId",
                          f"{deployment.airflow_conn_id} is already used by deployments[{first}]")
            seen_names[deployment.name] = i
            seen_namespaces[namespace] = i
            seen_conn_ids[deployment.airflow_conn_id] = i
            self._check_identity(i, deployment)
            self._check_task_identity(i, deployment)
            self._check_queue_limits(i, deployment)
        return self

    def _check_queue_limits(self, i: int, deployment: Deployment) -> None:
        if self.queueing.enabled:
            return
        for key in ("borrowingLimit", "lendingLimit"):
            if getattr(deployment.quota, to_snake(key)) is not None:
                raise _at(f"deployments[{i}].quota.{key}",
                          "only with queueing.enabled: true (Kueue's ClusterQueues borrow and lend; a ResourceQuota cannot)")

    def _check_task_identity(self, i: int, deployment: Deployment) -> None:
        if deployment.task_identity is not None:
            self._check_cloud_key(
                f"deployments[{i}].taskIdentity", deployment.task_identity, TASK_IDENTITY_KEY,
                on_existing=": taskIdentity {} makes the ServiceAccount only",
                required_hint=" ({} has one created)" if self.cloud == "aks" else "")

    def _check_identity(self, i: int, deployment: Deployment) -> None:
        self._check_cloud_key(f"deployments[{i}].identity", deployment.identity, IDENTITY_KEY,
                              on_existing=" (a ServiceAccount token is issued)")

    def _check_cloud_key(self, path: str, section: Optional[BaseModel], keys: dict[str, str],
                         on_existing: str, required_hint: str = "") -> None:
        """An identity-like `section` sets exactly this cloud's key of `keys`; none on existing."""
        given = [] if section is None else [
            key for key, value in section.model_dump(by_alias=True).items() if value is not None]
        if self.cloud == "existing":
            if given:
                raise _at(f"{path}.{given[0]}", f"not used on cloud existing{on_existing}")
            return
        wanted = keys[self.cloud]
        for key in given:
            if key != wanted:
                raise _at(f"{path}.{key}", f"identity of the wrong cloud: cloud {self.cloud} takes {wanted}")
        if wanted not in given:
            raise _at(f"{path}.{wanted}", f"required when cloud is {self.cloud}{required_hint}")

    def resolved_cluster_name(self, stack: str) -> str:
        return self.cluster_name or f"remote-kpo-{stack}"


def check_task_role_accounts(cfg: StackConfig, account: str) -> None:
    """On eks, each taskIdentity.awsRoleArn must be a role of the cluster's account: EKS Pod
    Identity associates only those (CreatePodIdentityAssociation: the role is in the cluster's
    account; another account's role is reached only by chaining, targetRoleArn)."""
    for i, deployment in enumerate(cfg.deployments):
        role = deployment.task_identity.aws_role_arn if deployment.task_identity else None
        if role is not None and role.split(":")[4] != account:
            raise ConfigError(
                f"{NAMESPACE}:deployments[{i}].taskIdentity.awsRoleArn: a role of account {role.split(':')[4]}, "
                f"but the cluster is in account {account} (the credentials running pulumi up): "
                "EKS Pod Identity associates only roles of the cluster's account")


_Value = TypeVar("_Value")


def present(value: Optional[_Value], key: str) -> _Value:
    """A value the validators guarantee once config has loaded (the chosen cloud's section,
    a Deployment's identity on that cloud, a pool's resolved machine type), for code typed
    against the Optional fields; names the key if it is missing all the same."""
    if value is None:
        raise ConfigError(f"{NAMESPACE}:{key}: required")
    return value


def _gcp_region(location: str) -> str:
    """us-central1 for us-central1 or us-central1-a."""
    return re.sub(r"-[a-z]$", "", location)


def _at(key: str, message: str) -> PydanticCustomError:
    # Carries the key inside the error context; _path() appends it to pydantic's location.
    return PydanticCustomError("at_key", "{message}", {"key": key, "message": message})


_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown key",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object (key: value)",
    "model_attributes_type": "must be an object (key: value)",
}


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _path(loc: tuple, ctx: Optional[dict]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):
            # A key typed with other characters (none, dots, quotes, unicode, a newline): quoted
            # as ASCII JSON, so each problem stays one unambiguous line.
            path += f"[{json.dumps(part)}]"
        else:
            path += f".{part}" if path else part
    if ctx and "key" in ctx:
        path = f"{path}.{ctx['key']}" if path else ctx["key"]
    return path


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind == "too_short":
        return f"needs at least {ctx['min_length']} entry"
    if kind == "too_long":
        return f"at most {ctx['max_length']} entries"
    return error["msg"]


def _model_in(annotation: Any) -> Optional[type[BaseModel]]:
    """The config model inside a field's type (Optional[list[Deployment]] -> Deployment)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (model := _model_in(arg)) is not None:
            return model
    return None


def _keys_at(loc: tuple) -> list[str]:
    """The keys the config takes where `loc` points (camelCase), e.g. a Deployment's for
    ('deployments', 0)."""
    model: Optional[type[BaseModel]] = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue  # a list entry: the list's model, already found
        fields = {field.alias or name: field for name, field in (model.model_fields if model else {}).items()}
        model = _model_in(fields[part].annotation) if part in fields else None
    return [field.alias or name for name, field in model.model_fields.items()] if model else []


def _unknown_key(loc: tuple) -> str:
    """`unknown key`, with the nearest key the config takes there: a typo names its fix."""
    key = loc[-1]
    nearest = difflib.get_close_matches(str(key), _keys_at(loc[:-1]), n=1, cutoff=0.6)
    return f"unknown key; did you mean `{nearest[0]}`?" if nearest else "unknown key"


def format_errors(exc: ValidationError) -> str:
    """One line per problem (usually one): `remote-kpo:<key path>: <what is wrong>`; unknown
    keys first, as a misspelt key is often why another key seems missing."""
    errors = sorted(exc.errors(include_url=False), key=lambda error: error["type"] != "extra_forbidden")
    lines = []
    for error in errors:
        what = _unknown_key(error["loc"]) if error["type"] == "extra_forbidden" else _describe(error)
        lines.append(f"{NAMESPACE}:{_path(error['loc'], error.get('ctx'))}: {what}")
    return "\n".join(dict.fromkeys(lines))


def _decode(value):
    # Structured config arrives as JSON text; scalars arrive as plain strings.
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            # Not JSON, or JSON nested too deep or with a number too long to read: validated as
            # the string it is, so the error names the key.
            return value
    return value


def load(raw: dict) -> StackConfig:
    """Validate config given as {key without namespace: value}. Raises ConfigError."""
    try:
        return StackConfig.model_validate({key: _decode(value) for key, value in raw.items()})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None


def from_pulumi() -> StackConfig:
    """Read every `remote-kpo:` key the engine passed to this program."""
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{NAMESPACE}:"
    return load({key[len(prefix):]: value for key, value in values.items() if key.startswith(prefix)})
