"""When each Kubernetes minor version leaves the clouds' standard support: the one table the
`up` warning reads (issue 21). Unset versions follow the cloud's default and are not checked.

EKS: "Amazon EKS Kubernetes release calendar", column "End of standard support"
(https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html#kubernetes-release-calendar);
1.35 from the same calendar as endoflife.date/amazon-eks tracks it (released 2026-01-28). Past
that date EKS bills extended support and, with extended support off, upgrades the cluster itself.

AKS: "AKS Kubernetes release calendar", column "End of life"
(https://learn.microsoft.com/azure/aks/supported-kubernetes-versions#aks-kubernetes-release-calendar);
a month without a day means its last day. Past it, AKS creates no new cluster on the version
(only LTS, which this program does not enable, keeps it).
"""

import datetime
from typing import Optional

import pulumi

EKS_CALENDAR = "https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html#kubernetes-release-calendar"
AKS_CALENDAR = "https://learn.microsoft.com/azure/aks/supported-kubernetes-versions#aks-kubernetes-release-calendar"

Date = datetime.date

# The day standard support ends (EKS bills extended support from its start), per minor version.
STANDARD_SUPPORT_ENDS: dict[str, dict[str, Date]] = {
    "eks": {
        "1.29": Date(2025, 3, 23),
        "1.30": Date(2025, 7, 23),
        "1.31": Date(2025, 11, 26),
        "1.32": Date(2026, 3, 23),
        "1.33": Date(2026, 7, 29),
        "1.34": Date(2026, 12, 2),
        "1.35": Date(2027, 3, 27),
    },
    "aks": {
        "1.29": Date(2025, 3, 31),
        "1.30": Date(2025, 8, 22),
        "1.31": Date(2025, 11, 1),
        "1.32": Date(2026, 3, 31),
        "1.33": Date(2026, 7, 31),
        "1.34": Date(2026, 11, 30),
        "1.35": Date(2027, 3, 31),
        "1.36": Date(2027, 6, 30),
        "1.37": Date(2027, 10, 31),
    },
}
CALENDAR = {"eks": EKS_CALENDAR, "aks": AKS_CALENDAR}


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def standard_support_ended(cloud: str, version: str, today: Date) -> Optional[Date]:
    """The day standard support of `version` ended, if it has by `today`; None while supported
    or when the version is newer than the table (its end not yet announced)."""
    table = STANDARD_SUPPORT_ENDS[cloud]
    wanted = _minor(version)
    oldest = min(table, key=_minor)
    end = table.get(f"{wanted[0]}.{wanted[1]}")
    if end is None:
        # Older than the table: long past; newer: not yet announced.
        end = table[oldest] if wanted < _minor(oldest) else None
    return end if end is not None and end <= today else None


def warn_if_past_standard_support(cloud: str, key: str, version: Optional[str],
                                  today: Optional[Date] = None) -> None:
    if version is None:
        return
    ended = standard_support_ended(cloud, version, today or datetime.datetime.now(datetime.timezone.utc).date())
    if ended is not None:
        pulumi.log.warn(
            f"remote-kpo:{key}: Kubernetes {version} left {cloud.upper()} standard support on {ended.isoformat()} "
            f"({CALENDAR[cloud]}): set a newer version, or unset it for the cloud's default")
