"""Config of task pods (issue 16): `registries`, `taskIdentity`, `aks.acrIds`. Valid shapes, and
every bad input as one message naming the key (the style of test_config.py)."""

import json

import pytest

import config
from test_config import AZURE, GSA, ROLE, VALID, error_of, variant

TASK_GSA = "etl-tasks@acme-data.iam.gserviceaccount.com"
SUB = "/subscriptions/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0/resourceGroups/rg-kpo"
ACR = f"{SUB}/providers/Microsoft.ContainerRegistry/registries/acmeimages"
IDENTITY = f"{SUB}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/etl-reader"
LOGIN = {"server": "ghcr.io", "username": "acme-bot", "password": "s3cr3t"}
DOCKER_CONFIG = json.dumps({"auths": {"quay.io": {"auth": "cm9ib3Q6dG9rZW4="}}})
IDENTITY_OF = {"gke": {"gcpServiceAccount": GSA}, "eks": {"awsRoleArn": ROLE}, "aks": {"azure": AZURE}}


def with_deployment(cloud: str, **keys) -> dict:
    deployment = {"name": "a", **({"identity": IDENTITY_OF[cloud]} if cloud in IDENTITY_OF else {}), **keys}
    return variant(cloud, deployments=[deployment])


def aks_with(**keys) -> dict:
    return variant("aks", aks=VALID["aks"]["aks"] | keys)


@pytest.mark.parametrize("cloud, task_identity", [
    ("gke", {"gcpServiceAccount": TASK_GSA}),
    ("eks", {"awsRoleArn": "arn:aws:iam::123456789012:role/kpo-task"}),
    ("aks", {"azureIdentity": {}}),
    ("aks", {"azureIdentity": IDENTITY}),
    ("existing", {}),
])
def test_task_identity_of_each_cloud_is_valid(cloud, task_identity):
    (deployment,) = config.load(with_deployment(cloud, taskIdentity=task_identity)).deployments
    assert deployment.task_identity.model_dump(by_alias=True, exclude_none=True) == task_identity


def test_registries_take_logins_or_one_docker_config_json():
    (d,) = config.load(with_deployment("existing", registries=[LOGIN, LOGIN | {"server": "registry.acme.example:5000"}])).deployments
    assert [r.server for r in d.registries] == ["ghcr.io", "registry.acme.example:5000"]
    (d,) = config.load(with_deployment("gke", registries=[{"dockerConfigJson": DOCKER_CONFIG}])).deployments
    assert d.registries[0].docker_config_json == DOCKER_CONFIG


def test_acr_ids_default_to_none_and_keep_their_order():
    assert config.load(VALID["aks"]).aks.acr_ids == []
    other = ACR.replace("acmeimages", "sharedimages")
    assert config.load(aks_with(acrIds=[other, ACR])).aks.acr_ids == [other, ACR]


def test_a_bad_password_message_never_echoes_the_credential():
    message = error_of(with_deployment("existing", registries=[LOGIN | {"password": 12345678}]))
    assert message == "remote-kpo:deployments[0].registries[0].password: must be a string"
    message = error_of(with_deployment("existing", registries=[{"dockerConfigJson": '{"auths": "tok3n-value"}'}]))
    assert "tok3n-value" not in message


BAD_INPUT = [
    ("registry without password", with_deployment("existing", registries=[{"server": "ghcr.io", "username": "u"}]),
     "remote-kpo:deployments[0].registries[0].password: required (or give dockerConfigJson alone)"),
    ("registry without server", with_deployment("gke", registries=[{"username": "u", "password": "p"}]),
     "remote-kpo:deployments[0].registries[0].server: required (or give dockerConfigJson alone)"),
    ("registry server not a host", with_deployment("existing", registries=[LOGIN | {"server": "ghcr io"}]),
     "remote-kpo:deployments[0].registries[0].server: not a registry host like ghcr.io or registry.example.com:5000"),
    ("empty username", with_deployment("existing", registries=[LOGIN | {"username": ""}]),
     "remote-kpo:deployments[0].registries[0].username: String should have at least 1 character"),
    ("duplicate registry", with_deployment("existing", registries=[LOGIN, LOGIN]),
     "remote-kpo:deployments[0].registries[1].server: duplicate of registries[0]"),
    ("docker config json and a login", with_deployment("existing", registries=[{"dockerConfigJson": DOCKER_CONFIG, "server": "ghcr.io"}]),
     "remote-kpo:deployments[0].registries[0].server: set either dockerConfigJson or server, username and password, not both"),
    ("docker config json beside logins", with_deployment("existing", registries=[LOGIN, {"dockerConfigJson": DOCKER_CONFIG}]),
     "remote-kpo:deployments[0].registries[1].dockerConfigJson: must be the only entry: it holds every registry's login"),
    ("docker config json not json", with_deployment("existing", registries=[{"dockerConfigJson": "user:pass"}]),
     "remote-kpo:deployments[0].registries[0].dockerConfigJson: not a Docker config JSON with a non-empty auths object "
     "(the content of ~/.docker/config.json)"),
    ("empty registries", with_deployment("existing", registries=[]),
     "remote-kpo:deployments[0].registries: needs at least 1 entry"),
    ("unknown registry key", with_deployment("existing", registries=[LOGIN | {"email": "x@y.z"}]),
     "remote-kpo:deployments[0].registries[0].email: unknown key"),
    ("task identity role ARN malformed", with_deployment("eks", taskIdentity={"awsRoleArn": "arn:aws:iam::12:role/x"}),
     "remote-kpo:deployments[0].taskIdentity.awsRoleArn: not an IAM role ARN"),
    ("task identity of the wrong cloud", with_deployment("eks", taskIdentity={"gcpServiceAccount": TASK_GSA}),
     "remote-kpo:deployments[0].taskIdentity.gcpServiceAccount: identity of the wrong cloud: cloud eks takes awsRoleArn"),
    ("azure task identity on gke", with_deployment("gke", taskIdentity={"azureIdentity": {}}),
     "remote-kpo:deployments[0].taskIdentity.azureIdentity: identity of the wrong cloud: cloud gke takes gcpServiceAccount"),
    ("empty task identity on eks", with_deployment("eks", taskIdentity={}),
     "remote-kpo:deployments[0].taskIdentity.awsRoleArn: required when cloud is eks"),
    ("empty task identity on aks", with_deployment("aks", taskIdentity={}),
     "remote-kpo:deployments[0].taskIdentity.azureIdentity: required when cloud is aks ({} has one created)"),
    ("cloud task identity on existing", with_deployment("existing", taskIdentity={"awsRoleArn": ROLE}),
     "remote-kpo:deployments[0].taskIdentity.awsRoleArn: not used on cloud existing: taskIdentity {} makes the ServiceAccount only"),
    ("task service account not user-managed", with_deployment("gke", taskIdentity={"gcpServiceAccount": "123-compute@developer.gserviceaccount.com"}),
     "remote-kpo:deployments[0].taskIdentity.gcpServiceAccount: not a user-managed Google service account email "
     "(name@project.iam.gserviceaccount.com)"),
    ("azure identity not an identity id", with_deployment("aks", taskIdentity={"azureIdentity": ACR}),
     "remote-kpo:deployments[0].taskIdentity.azureIdentity: not {} (have one created) or a user-assigned identity resource id "
     "(/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)"),
    ("azure identity a non-empty object", with_deployment("aks", taskIdentity={"azureIdentity": {"clientId": "x"}}),
     "remote-kpo:deployments[0].taskIdentity.azureIdentity: not {} (have one created) or a user-assigned identity resource id "
     "(/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)"),
    ("unknown task identity key", with_deployment("gke", taskIdentity={"gcpServiceAcount": TASK_GSA}),
     "remote-kpo:deployments[0].taskIdentity.gcpServiceAcount: unknown key; did you mean `gcpServiceAccount`?"),
    ("acr id not a registry", aks_with(acrIds=[IDENTITY]),
     "remote-kpo:aks.acrIds[0]: not an Azure container registry resource id (/subscriptions/<id>/resourceGroups/<group>/"
     "providers/Microsoft.ContainerRegistry/registries/<name>)"),
    ("duplicate acr id", aks_with(acrIds=[ACR, ACR.replace("acmeimages", "AcmeImages")]),
     "remote-kpo:aks.acrIds[1]: duplicate of acrIds[0]"),
    ("acr ids off aks", variant("gke", gke=VALID["gke"]["gke"] | {"acrIds": [ACR]}),
     "remote-kpo:gke.acrIds: unknown key"),
]


@pytest.mark.parametrize("raw, expected", [(raw, expected) for _, raw, expected in BAD_INPUT],
                         ids=[case for case, _, _ in BAD_INPUT])
def test_bad_task_pod_input_gives_one_message_naming_the_key(raw, expected):
    assert error_of(raw) == expected
