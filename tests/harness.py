"""Run the Pulumi program under mocks and collect what it registered and exported."""

import base64
import http.server
import json
import runpy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from unittest import mock

import pulumi
import yaml
from pulumi.runtime.sync_await import _sync_await

from stacks.existing import LiveCluster

# An `existing` cluster's admin kubeconfig for programs run under mocks (nothing dials it).
ADMIN_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:26443", certificate-authority-data: Q0EtREFUQQ==}
contexts:
- name: admin
  context: {cluster: local, user: admin}
current-context: admin
users:
- name: admin
  user: {token: admin-secret-token}
"""

ROOT = Path(__file__).resolve().parent.parent
# The `janitor` entry of a Deployment that sets none: 1h, 24h, and KPO's two waits of 120 s (900 s
# for the gpuTask shape) each, plus 5 minutes.
DEFAULT_JANITOR = {"enabled": True, "finishedTtlSeconds": 3600, "maxTaskRuntimeSeconds": 86400,
                   "pendingDeadlineSeconds": 540, "gpuPendingDeadlineSeconds": 2100}


def token_for(resource_name: str) -> str:
    """The token the mocked token controller writes into a ServiceAccount token Secret."""
    return f"token-of-{resource_name}"


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args):
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "kubernetes:core/v1:Secret" and args.inputs.get("type") == "kubernetes.io/service-account-token":
            # What kube-controller-manager's token controller does on a real cluster.
            outputs["data"] = {"token": base64.b64encode(token_for(args.name).encode()).decode()}
        return [f"{args.name}-id", outputs]

    def call(self, args):
        return {}


@dataclass
class Run:
    resources: list
    outputs: dict = field(default_factory=dict)
    secret: dict = field(default_factory=dict)
    # The ResourceOptions each resource was constructed with, by resource name (mocks do not
    # see options such as ignore_changes and depends_on).
    options: dict = field(default_factory=dict)
    # The options each resource was registered with: after its own and its ancestors'
    # transformations, with what it inherits from its parent.
    registered_options: dict = field(default_factory=dict)

    def of_type(self, typ: str) -> list:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str):
        (match,) = [r for r in self.resources if r.name == name]
        return match


def stack_config(stack: str) -> dict:
    """The `remote-kpo:` keys of Pulumi.<stack>.yaml, without the namespace."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    prefix = "remote-kpo:"
    return {key[len(prefix):]: value for key, value in document["config"].items() if key.startswith(prefix)}


def run_program(raw_config: dict, stack: str = "dev", mocks: RecordingMocks | None = None,
                namespaces: dict | None = None, kueue_crds: dict | None = None) -> Run:
    """Run __main__.py under mocks with `raw_config` (keys without `remote-kpo:`).

    Cloud tests pass a RecordingMocks subclass whose new_resource adds the outputs the cloud
    would compute (endpoints, ids, certificates). On existing, `namespaces` stands in for the
    cluster's (name -> LiveNamespace; none and no token Secret by default) and `kueue_crds` for
    its Kueue CRDs (name -> served versions; none by default): the real read is tested end to
    end (tests/e2e/test_two_stacks_real.py).
    """
    mocks = mocks or RecordingMocks()
    # The organization a file backend reports (`pulumi whoami`'s default org is "organization").
    pulumi.runtime.set_mocks(mocks, project="remote-kpo", stack=stack, preview=False, organization="organization")
    # The engine hands structured config to the program as JSON text.
    pulumi.runtime.set_all_config({
        f"remote-kpo:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in raw_config.items()
    })
    exports: dict = {}
    values: dict = {}
    options: dict = {}
    registered_options: dict = {}
    resource_init = pulumi.Resource.__init__
    register = pulumi.resource.register_resource

    def recording_register(res, t, name, custom, remote, new_dependency, props, opts, *args, **kwargs):
        registered_options[name] = opts
        return register(res, t, name, custom, remote, new_dependency, props, opts, *args, **kwargs)

    def recording_init(self, t, name, custom, props=None, opts=None, *args, **kwargs):
        options[name] = opts
        resource_init(self, t, name, custom, props, opts, *args, **kwargs)

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        return pulumi.Output.all(**exports).apply(values.update)

    with mock.patch.object(pulumi, "export", exports.__setitem__), \
            mock.patch.object(pulumi.Resource, "__init__", recording_init), \
            mock.patch.object(pulumi.resource, "register_resource", recording_register), \
            mock.patch("stacks.existing.read_cluster", lambda *_, **__: LiveCluster(namespaces or {}, set(), kueue_crds or {})):
        program()
    secret = {name: _sync_await(pulumi.Output.from_input(value).is_secret()) for name, value in exports.items()}
    return Run(mocks.resources, values, secret, options, registered_options)


def assert_objects_replaced_with_cluster(run: "Run", identifier: str, cluster: tuple[str, str]) -> None:
    """The Kubernetes provider keeps the name earlier versions stored as its identifier, so
    upgrading an existing stack replaces nothing; each object on the cluster is replaced (deleted
    first) with `cluster` (type, name) instead (components/on_cluster.py)."""
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["clusterIdentifier"] == identifier
    objects = [r for r in run.resources if r.typ.startswith("kubernetes:")]
    assert {"kubernetes:core/v1:Namespace", "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
            "kubernetes:rbac.authorization.k8s.io/v1:Role"} <= {r.typ for r in objects}
    for name in [r.name for r in objects]:
        opts = run.registered_options[name]
        assert [(r._type, r._name) for r in opts.replace_with] == [cluster], name
        assert opts.delete_before_replace is True, name


def json_api(answer: Callable[[str, dict, dict], tuple[int, dict]]) -> http.server.ThreadingHTTPServer:
    """A stand-in for an HTTP JSON API that cannot run here, on a free local port in a thread:
    every POST, PUT or GET gets answer(path, headers, request body, {} for a GET) as (status, JSON
    body). `.server_port` is its port; `.shutdown()` stops it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            status, body = answer(self.path, dict(self.headers), request)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_PUT = do_GET = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
