"""The standard-support table behind the `up` version warning (issue 21)."""

import datetime

import pytest

import config
from components import versions
from harness import stack_config

Date = datetime.date


@pytest.mark.parametrize("cloud, version, today, ended", [
    # EKS bills extended support from the first day past standard support, so that day counts.
    ("eks", "1.34", Date(2026, 12, 1), None),
    ("eks", "1.34", Date(2026, 12, 2), Date(2026, 12, 2)),
    ("eks", "1.35", Date(2026, 12, 5), None),
    ("eks", "1.25", Date(2026, 12, 5), Date(2025, 3, 23)),   # older than the table: long past
    ("eks", "1.40", Date(2030, 1, 1), None),                 # newer than the table: not announced
    # AKS gives a month; its end of life is the month's last day.
    ("aks", "1.33", Date(2026, 7, 30), None),
    ("aks", "1.33", Date(2026, 7, 31), Date(2026, 7, 31)),
    ("aks", "1.34", Date(2026, 12, 5), Date(2026, 11, 30)),
    ("aks", "1.35", Date(2026, 12, 5), None),
])
def test_standard_support_ends_on_the_calendars_day(cloud, version, today, ended):
    assert versions.standard_support_ended(cloud, version, today) == ended


@pytest.mark.parametrize("stack, key", [("eks", "version"), ("aks", "kubernetes_version")])
def test_no_example_stack_pins_a_version_past_standard_support(stack, key):
    pinned = getattr(getattr(config.load(stack_config(stack)), stack), key)
    today = datetime.datetime.now(datetime.timezone.utc).date()
    assert pinned is None or versions.standard_support_ended(stack, pinned, today) is None
