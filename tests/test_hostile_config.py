"""Hostile stack config: whatever a stack file holds, `config.load` returns a StackConfig or
raises ConfigError naming the key, and the program turns that into one RunError; never a
traceback.

Configs are drawn from valid ones per cloud, then broken: values replaced by wrong types,
unicode, very long strings, deep nesting, JSON text or half-JSON; keys deleted or added;
hundreds of deployments, duplicate names, names at the DNS limits. Values arrive as objects or,
as the engine passes them, as JSON text.
"""

import copy
import json
import os
import re

import pulumi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config
from harness import RecordingMocks, run_program

# A key path: plain keys (a-z, 0-9, _ and -), [index], or an odd key quoted as a JSON string.
PLAIN = r"[A-Za-z0-9_-]+"
QUOTED = r'\["(?:[^"\\\x00-\x1f]|\\.)*"\]'
PATH = rf"(?:{PLAIN}|{QUOTED})(?:\.{PLAIN}|\[\d+\]|{QUOTED})*"
LINE = re.compile(rf"remote-kpo:{PATH}: \S.*")

SETTINGS = settings(
    max_examples=200, deadline=None, database=None,
    # The same examples on every CI run; new ones locally.
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

GSA = "astro-a@acme-astro.iam.gserviceaccount.com"
ROLE = "arn:aws:iam::123456789012:role/astro-a"
AZURE = {"issuer": "https://oidc.example.com/x", "subject": "system:serviceaccount:ns:worker"}
TENANT = "3d1f6c2a-8b7e-4f05-9a1d-6c2e4b8f0a17"
VALID = {
    "existing": {"cloud": "existing", "clusterName": "kpo", "existing": {"server": "https://k.example.com"},
                 "deployments": [{"name": "a", "xcom": False, "quota": {"cpu": "2", "pods": 3},
                                  "podDefaults": {"requests": {"cpu": "100m"}}, "taskIdentity": {},
                                  "registries": [{"server": "ghcr.io", "username": "u", "password": "p"}]}]},
    "gke": {"cloud": "gke", "gke": {"project": "acme-data", "location": "us-central1",
                                    "masterAuthorizedNetworks": ["203.0.113.0/24"]},
            "gpuPool": {"enabled": True, "accelerator": {"type": "nvidia-tesla-t4", "count": 1}},
            "deployments": [{"name": "a", "identity": {"gcpServiceAccount": GSA}, "ephemeralNodePools": True,
                             "taskIdentity": {"gcpServiceAccount": "tasks-a@acme-data.iam.gserviceaccount.com"}}]},
    "eks": {"cloud": "eks", "eks": {"region": "us-east-1", "vpcCidr": "10.1.0.0/16", "version": "1.34"},
            "gpuPool": {"enabled": True, "maxNodes": 3, "accelerator": {"count": 1}},
            "deployments": [{"name": "a", "identity": {"awsRoleArn": ROLE}, "taskIdentity": {"awsRoleArn": ROLE},
                             "registries": [{"dockerConfigJson": '{"auths": {"ghcr.io": {"auth": "dTpw"}}}'}]}]},
    "aks": {"cloud": "aks", "aks": {"location": "westeurope", "tenantId": TENANT, "adminGroupObjectIds": [TENANT],
                                    "acrIds": [f"/subscriptions/{TENANT}/resourceGroups/rg/providers/"
                                               "Microsoft.ContainerRegistry/registries/acmeimages"]},
            "deployments": [{"name": "a", "identity": {"azure": AZURE}, "taskIdentity": {"azureIdentity": {}}}]},
}

# Generated configs are copies: VALID itself must never change (checked after every example).
VALID_TEXT = json.dumps(VALID, sort_keys=True)

# Top-level and nested keys the schema knows, so mutations often hit real fields.
KNOWN_KEYS = sorted({
    "cloud", "clusterName", "gke", "eks", "aks", "existing", "systemPool", "gpuPool", "deployments",
    "name", "namespace", "xcom", "identity", "ephemeralNodePools", "podDefaults", "quota",
    "gcpServiceAccount", "awsRoleArn", "azure", "issuer", "subject", "project", "location",
    "network", "subnetwork", "privateNodes", "deletionProtection", "region", "vpcCidr", "subnetIds",
    "machineType", "minNodes", "maxNodes", "enabled", "accelerator", "type", "count", "spot", "zones",
    "cpu", "memory", "gpu", "pods", "requests", "limits", "kubeconfig", "context", "server",
    "tenantId", "adminGroupObjectIds", "login", "resourceGroup", "releaseChannel",
    "subjects", "podSecurity", "controlPlaneCidr",
    "registries", "username", "password", "dockerConfigJson", "taskIdentity", "azureIdentity", "acrIds",
    "xcomSidecarImage", "queueing", "maxWaitSeconds", "reclaim", "borrowingLimit", "lendingLimit",
    "janitor", "finishedTtl", "maxTaskRuntime",
})

EDGE_STRINGS = [
    "", " ", "\n", "\x00", "true", "null", "0", "-1", "1e309", "NaN", "ünïcödé", "名前", "🚀",
    "a" * 63, "a" * 64, "a-" * 31 + "a", "-a", "a-", "A", "x" * 20_000, "${secret}", "remote-kpo:cloud",
    "[", "{", "[1,", '{"a":', "[]", "{}", '"quoted"', "[" * 5_000 + "]" * 5_000,
    "[" + "9" * 5_000 + "]", '{"name": "a"}', "arn:aws:iam::123456789012:role/", "https://", "10.0.0.0/33",
    "\u202eevil", "a\nremote-kpo:cloud: forged", "kpo-" + "a" * 59,
]
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80), st.sampled_from(EDGE_STRINGS),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=20),
                 st.sampled_from(["", "a.b", "a[0]", 'a"b', "ключ", "x" * 300, "a: b", "-"]))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


def deeply_nested(depth: int):
    value: object = {"name": "a"}
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def dns_names(draw):
    """Names around the DNS-label limits: 63 for a name, 59 for one with the default `kpo-`
    namespace; with edge characters first, inside and last."""
    length = draw(st.sampled_from([1, 2, 58, 59, 60, 62, 63, 64, 65]))
    first, fill, last = (draw(st.sampled_from(chars)) for chars in ("a0-A", "a-9.ü", "z0-_"))
    return (first + fill * (length - 2) + last)[:length]


@st.composite
def many_deployments(draw, cloud: str, counts=(1, 2, 3, 63, 64, 500)):
    """Up to 500 deployments, some with names at the DNS limits, maybe a duplicate."""
    # One copy of VALID's entry per example, shared (shallowly) by its deployments: cheap, and
    # a mutation of a nested value in one example never reaches VALID or another example.
    template = copy.deepcopy(VALID[cloud]["deployments"][0])
    count = draw(st.sampled_from(counts))
    deployments = [{**template, "name": f"d{i}"} for i in range(count)]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, count - 1))
        deployments[i]["name"] = draw(dns_names())
        if draw(st.booleans()):
            deployments[i]["namespace"] = draw(dns_names())
    if count > 1 and draw(st.booleans()):
        deployments[-1]["name"] = deployments[0]["name"]
    return deployments


def _mutate(draw, root: dict) -> None:
    """Replace, delete or add one value somewhere in the tree."""
    node = root
    while True:
        children = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not children:
            break
        key = draw(st.sampled_from(children))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            node[key] = draw(json_values)
        elif action == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[draw(keys)] = draw(json_values)
        else:
            node.append(draw(json_values))
        return
    if isinstance(node, dict):
        node[draw(keys)] = draw(json_values)
    else:
        node.append(draw(json_values))


def _as_engine_text(draw, raw: dict) -> dict:
    """Structured values as the JSON text the engine passes; scalars as strings or as they are."""
    out = {}
    for key, value in raw.items():
        if isinstance(value, (dict, list)) and draw(st.booleans()):
            out[key] = json.dumps(value)
        elif isinstance(value, (int, float, bool)) and not isinstance(value, bool) and draw(st.booleans()):
            out[key] = str(value) if abs(value) < 10**100 else value
        else:
            out[key] = value
    return out


@st.composite
def hostile_configs(draw) -> dict:
    cloud = draw(st.sampled_from(sorted(VALID)))
    raw = copy.deepcopy(VALID[cloud])
    shape = draw(st.sampled_from(["mutate", "mutate", "deployments", "random", "nested"]))
    if shape == "deployments":
        raw["deployments"] = draw(many_deployments(cloud, counts=(1, 2, 64)))
    elif shape == "random":
        raw = draw(st.dictionaries(keys, json_values, max_size=6))
    elif shape == "nested":
        raw["deployments"] = deeply_nested(draw(st.sampled_from([2, 50, 500])))
    for _ in range(draw(st.integers(0 if shape == "deployments" else 1, 3))):
        _mutate(draw, raw)
    return _as_engine_text(draw, raw) if draw(st.booleans()) else raw


def assert_named_error_or_config(raw: dict) -> str | None:
    """The contract: a StackConfig, or ConfigError lines `remote-kpo:<path>: <what>`."""
    assert json.dumps(VALID, sort_keys=True) == VALID_TEXT, "a generator changed VALID"
    try:
        cfg = config.load(raw)
    except config.ConfigError as exc:
        message = str(exc)
        assert message, "empty ConfigError"
        for line in message.split("\n"):
            assert LINE.fullmatch(line), f"bad error line {line[:300]!r}"
        return message
    assert isinstance(cfg, config.StackConfig)
    assert cfg.deployments and cfg.cloud in config.CLOUDS
    return None


@SETTINGS
@given(hostile_configs())
def test_any_config_loads_or_fails_with_named_key_lines(raw):
    assert_named_error_or_config(raw)


# A narrower space (six counts, a few renamed entries) than the test above: 100 examples cover it.
@settings(SETTINGS, max_examples=100)
@given(st.sampled_from(sorted(VALID)), st.data())
def test_many_deployments_and_dns_limit_names_validate_like_one(cloud, data):
    raw = copy.deepcopy(VALID[cloud])
    raw["deployments"] = data.draw(many_deployments(cloud))
    message = assert_named_error_or_config(raw)
    names = [d["name"] for d in raw["deployments"]]
    if message is None:
        assert len(set(names)) == len(names)
        assert all(len(n) <= 63 for n in names)
    elif (len(set(names)) < len(names) and not any("namespace" in d for d in raw["deployments"])
          and all(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", n) and len(n) <= 59 for n in names)):
        assert "name: duplicate of deployments[" in message


# ---- the edges, one by one ---------------------------------------------------------------

def _edge(base: str = "existing", **changes) -> dict:
    return {**copy.deepcopy(VALID[base]), **changes}


EDGES = {
    "500 deployments": _edge(deployments=[{"name": f"d{i}"} for i in range(500)]),
    "duplicate at 499": _edge(deployments=[{"name": f"d{i}"} for i in range(499)] + [{"name": "d7"}]),
    "name of 63 with namespace": _edge(deployments=[{"name": "a" * 63, "namespace": "b" * 63}]),
    "name of 59 (default namespace of 63)": _edge(deployments=[{"name": "a" * 59}]),
    "name of 60 (default namespace of 64)": _edge(deployments=[{"name": "a" * 60}]),
    "name of 64": _edge(deployments=[{"name": "a" * 64, "namespace": "ns"}]),
    "deployments as JSON text": _edge(deployments=json.dumps([{"name": "a"}])),
    "deployments as broken JSON text": _edge(deployments='[{"name": "a"'),
    "deployments nested 5000 deep as JSON text": _edge(deployments="[" * 5_000 + "]" * 5_000),
    "deployments nested 500 deep": _edge(deployments=deeply_nested(500)),
    "a 5000-digit number in JSON text": _edge(systemPool='{"minNodes": ' + "9" * 5_000 + "}"),
    "a 5000-digit number": _edge(systemPool={"minNodes": 10**5_000}),
    "infinite maxNodes": _edge(systemPool={"maxNodes": float("inf")}),
    "NaN in JSON text": _edge(systemPool='{"maxNodes": NaN}'),
    "every value None": {key: None for key in VALID["gke"]},
    "unicode unknown key": _edge(**{"ключ": 1}),
    "unknown key with a newline": _edge(**{"a\nremote-kpo:cloud: forged": 1}),
    "empty key": _edge(**{"": 1}),
    "unknown nested key with quotes": _edge(deployments=[{"name": "a", 'x"y': 1}]),
    "a very long name": _edge(deployments=[{"name": "a" * 100_000}]),
    "name not a string": _edge(deployments=[{"name": ["a"]}]),
    "identity as a list": _edge("eks", deployments=[{"name": "a", "identity": [ROLE]}]),
    "cloud as an object": _edge(cloud={"gke": True}),
    "cloud as JSON text of an object": _edge(cloud='{"gke": true}'),
}


@pytest.mark.parametrize("name", list(EDGES))
def test_edge_configs_load_or_fail_with_named_key_lines(name):
    assert_named_error_or_config(EDGES[name])


def test_the_edges_that_must_load_do_and_the_rest_name_their_key():
    assert len(config.load(EDGES["500 deployments"]).deployments) == 500
    assert config.load(EDGES["name of 59 (default namespace of 63)"]).deployments[0].namespace == "kpo-" + "a" * 59
    assert config.load(EDGES["deployments as JSON text"]).deployments[0].name == "a"
    expected = {
        "duplicate at 499": "remote-kpo:deployments[499].name: duplicate of deployments[7]",
        "name of 60 (default namespace of 64)":
            f"remote-kpo:deployments[0].name: too long for the default namespace kpo-{'a' * 60}; set namespace",
        "a 5000-digit number in JSON text": "remote-kpo:systemPool: must be an object (key: value)",
        "unknown key with a newline": 'remote-kpo:["a\\nremote-kpo:cloud: forged"]: unknown key',
        "empty key": 'remote-kpo:[""]: unknown key',
        "unknown nested key with quotes": 'remote-kpo:deployments[0]["x\\"y"]: unknown key',
        "unicode unknown key": 'remote-kpo:["\\u043a\\u043b\\u044e\\u0447"]: unknown key',
    }
    for name, message in expected.items():
        with pytest.raises(config.ConfigError) as caught:
            config.load(EDGES[name])
        assert str(caught.value) == message, name


# ---- through the program: one RunError, nothing registered ---------------------------------

@pytest.mark.parametrize("name", ["duplicate at 499", "unknown key with a newline",
                                  "deployments nested 5000 deep as JSON text", "every value None"])
def test_a_hostile_config_stops_the_program_with_one_run_error_and_no_resource(name):
    raw = EDGES[name]
    # What the engine passes: structured values as JSON text.
    engine = {key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()}
    with pytest.raises(config.ConfigError) as expected:
        config.load(engine)
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_program(raw, mocks=mocks)
    assert str(caught.value) == str(expected.value)
    assert type(caught.value) is pulumi.RunError and caught.value.__cause__ is None
    assert mocks.resources == []
