"""Names at the limits: a 63-character Deployment name (the longest DNS label) and a
40-character cluster name still give cloud names within each cloud's length limit."""

import re

import pytest

from components import names
from harness import run_program
from test_aks_stack import IDENTITY, AzureMocks
from test_eks_stack import EksMocks
from test_gke_stack import CUSTOM_ROLE, GkeMocks, PROJECT_MEMBER

CLUSTER = "c" * 39 + "z"
DEPLOYMENT = "d" * 62 + "x"
OTHER = "d" * 62 + "y"  # the same first 62 characters: must still get distinct names
pytestmark = pytest.mark.filterwarnings(r"ignore:gcp\.compute\.\w+ has been deprecated:DeprecationWarning")
DEPLOYMENTS = [{"name": DEPLOYMENT, "namespace": "kpo-long-1"}, {"name": OTHER, "namespace": "kpo-long-2"}]


def test_a_name_that_fits_is_kept_as_it_is():
    assert names.fit("analytics-access-role", 56) == "analytics-access-role"
    assert names.fit("kpo-gpu-prod", 30, suffix="-nodes") == "kpo-gpu-prod-nodes"


def test_a_long_name_is_cut_to_the_limit_ends_with_a_hash_and_stays_distinct_and_stable():
    first, second = (names.fit(f"{n}-access-role", 56) for n in (DEPLOYMENT, OTHER))
    assert len(first) == len(second) == 56
    assert first != second and first == names.fit(f"{DEPLOYMENT}-access-role", 56)
    assert re.fullmatch(r"d+-[0-9a-f]{8}", first)


def test_the_suffix_and_separator_survive_the_cut():
    cut = names.fit("remoteKpo_" + "c" * 60, 64, suffix="_nodePoolOps", separator="_")
    assert len(cut) == 64 and cut.endswith("_nodePoolOps") and "-" not in cut


def test_eks_access_role_names_fit_iam_64_characters_with_pulumis_random_suffix():
    run = run_program({"cloud": "eks", "clusterName": CLUSTER, "eks": {"region": "us-east-1"},
                       "deployments": [d | {"identity": {"awsRoleArn": f"arn:aws:iam::123456789012:role/{d['namespace']}"}}
                                       for d in DEPLOYMENTS]}, stack="long", mocks=EksMocks())
    roles = [r.name for r in run.of_type("aws:iam/role:Role")]
    access = [name for name in roles if "-access-role" in name or re.search(r"d{20}", name)]
    assert len(access) == 2 and len(set(access)) == 2
    assert all(len(name) + names.AUTONAME_SUFFIX <= 64 for name in roles), roles


def test_aks_identity_names_fit_azure_128_characters():
    azure = {"issuer": "https://oidc.example.com/x"}
    run = run_program({"cloud": "aks", "clusterName": CLUSTER,
                       "aks": {"location": "westeurope", "tenantId": "3d1f6c2a-8b7e-4f05-9a1d-6c2e4b8f0a17",
                               "adminGroupObjectIds": ["9b2e7d41-5c3a-4e8f-b1d6-0a7c3f9e2b58"]},
                       "deployments": [d | {"identity": {"azure": azure | {"subject": f"system:serviceaccount:a:{d['namespace']}"}}}
                                       for d in DEPLOYMENTS]}, stack="long", mocks=AzureMocks())
    identities = [r.inputs["resourceName"] for r in run.of_type(IDENTITY)]
    assert len(set(identities)) == 2 and all(3 <= len(name) <= 128 for name in identities)


def test_gke_ids_fit_google_limits():
    run = run_program({"cloud": "gke", "clusterName": CLUSTER, "gke": {"project": "acme-data", "location": "europe-west10-a"},
                       "deployments": [d | {"ephemeralNodePools": True,
                                            "identity": {"gcpServiceAccount": f"{d['namespace']}@acme.iam.gserviceaccount.com"}}
                                       for d in DEPLOYMENTS]}, stack="long", mocks=GkeMocks())
    role_ids = [r.inputs["roleId"] for r in run.of_type(CUSTOM_ROLE)]
    assert len(role_ids) == 4 and all(re.fullmatch(r"[a-zA-Z0-9_.]{3,64}", role_id) for role_id in role_ids)
    (account,) = run.of_type("gcp:serviceaccount/account:Account")
    assert re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", account.inputs["accountId"])
    titles = [r.inputs["condition"]["title"] for r in run.of_type(PROJECT_MEMBER) if "condition" in r.inputs]
    assert len(titles) == 2 and all(len(title) <= 100 for title in titles)


@pytest.mark.parametrize("limit", [8, 9])
def test_a_limit_with_no_room_for_the_name_is_an_error_not_a_silent_clash(limit):
    with pytest.raises(ValueError):
        names.fit("a" * 20, limit)
