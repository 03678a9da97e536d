"""Short-lived tokens the local API server really validates (test_token_expiry_airflow.py,
bench/tokens.py).

- An OIDC issuer on https://127.0.0.1:<port>: a CA of its own signs its serving certificate, and it
  serves its discovery document and its JWKS (one RS256 key), as kube-apiserver's JWT authenticator
  fetches them (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#using-authentication-configuration).
- The API server's AuthenticationConfiguration (apiserver.config.k8s.io/v1beta1, served by 1.30+),
  passed by scripts/local-cluster as --authentication-config (REMOTE_KPO_AUTHN_CONFIG): that issuer,
  its CA as `certificateAuthority`, an audience, `sub` as the username and `groups` as groups.
- A stand-in exec plugin in place of a cloud's, under the cloud's command name: at every call it
  mints a token valid for LIFETIME seconds and prints an ExecCredential with
  `expirationTimestamp`, as `aws eks get-token` does (about 15 minutes there), and logs the call.

Keys and certificates come from openssl (the project's venv has no crypto library); the plugin runs
with the Airflow venv's Python, which has PyJWT and cryptography (Airflow's own dependencies).
"""

import base64
import http.server
import json
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from realenv import ROOT

AUDIENCE = "remote-kpo-local"
LIFETIME = 60  # seconds a minted token is valid
KEY_ID = "remote-kpo-e2e"
PLUGIN_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _b64url(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_keys(folder: Path) -> None:
    """ca.crt/ca.key, the issuer's serving certificate (issuer.crt/.key for 127.0.0.1) and the
    token signing key (signing.key, signing.pub)."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=remote-kpo-e2e-issuer-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)
    (folder / "issuer.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                                       "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "issuer.key",
             "-out", "issuer.csr", cwd=folder)
    _openssl("x509", "-req", "-in", "issuer.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
             "-extfile", "issuer.ext", "-out", "issuer.crt", cwd=folder)
    _openssl("genrsa", "-out", "signing.key", "2048", cwd=folder)
    _openssl("rsa", "-in", "signing.key", "-pubout", "-out", "signing.pub", cwd=folder)


def jwks(folder: Path) -> dict:
    """The signing key as a JWK set (RFC 7517): its modulus from openssl, exponent 65537."""
    modulus = subprocess.run(["openssl", "rsa", "-pubin", "-in", str(folder / "signing.pub"), "-noout", "-modulus"],
                             check=True, capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KEY_ID,
                      "n": _b64url(int(modulus, 16)), "e": _b64url(65537)}]}


class Issuer:
    """The discovery document and JWKS over HTTPS on 127.0.0.1, on a port the kernel picks (bound
    before its URL is written anywhere, so nothing else can hold it); counts the requests."""

    def __init__(self, folder: Path):
        self.requests: list[str] = []
        documents = {"/.well-known/openid-configuration": None, "/jwks": jwks(folder)}
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                if self.path not in documents:
                    self.send_error(404)
                    return
                body = json.dumps(documents[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        documents["/.well-known/openid-configuration"] = {
            "issuer": self.url, "jwks_uri": f"{self.url}/jwks", "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"]}
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(folder / "issuer.crt", folder / "issuer.key")
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def authentication_config(issuer_url: str, ca_pem: str) -> dict:
    return {
        "apiVersion": "apiserver.config.k8s.io/v1beta1",
        "kind": "AuthenticationConfiguration",
        "jwt": [{
            "issuer": {"url": issuer_url, "certificateAuthority": ca_pem, "audiences": [AUDIENCE]},
            # A username claim other than `email` must say its prefix; none here.
            "claimMappings": {"username": {"claim": "sub", "prefix": ""},
                              "groups": {"claim": "groups", "prefix": ""}},
        }],
    }


PLUGIN = '''#!{python}
"""Stand-in for {command}: a token valid {lifetime} s from the local issuer at every call."""
import datetime, json, os, sys, time
import jwt

now = int(time.time())
claims = {{"iss": {issuer!r}, "aud": {audience!r}, "sub": {user!r}, "groups": {groups!r},
          "iat": now, "nbf": now, "exp": now + {lifetime}}}
token = jwt.encode(claims, open({key!r}).read(), algorithm="RS256", headers={{"kid": {kid!r}}})
with open({log!r}, "a") as log:
    log.write(json.dumps({{"at": time.time(), "exp": claims["exp"], "pid": os.getppid(), "token": token,
                          "tag": os.environ.get("REMOTE_KPO_E2E_TOKEN_TAG", ""), "args": sys.argv[1:]}}) + "\\n")
expiry = datetime.datetime.fromtimestamp(claims["exp"], datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "spec": {{}}, "status": {{"token": token, "expirationTimestamp": expiry}}}}))
'''


@dataclass
class Plugin:
    path: Path
    log: Path

    def calls(self, tag: str | None = None) -> list[dict]:
        """Every token minted (one JSON line each), for one tag (REMOTE_KPO_E2E_TOKEN_TAG) or all."""
        if not self.log.exists():
            return []
        minted = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [m for m in minted if tag is None or m["tag"] == tag]


def write_plugin(folder: Path, command: str, issuer_url: str, keys: Path, user: str, groups: list[str]) -> Plugin:
    """`folder/command`, an exec plugin minting LIFETIME-second tokens for `user` in `groups`."""
    folder.mkdir(parents=True, exist_ok=True)
    path, log = folder / command, folder / f"{command}.tokens.jsonl"
    path.write_text(PLUGIN.format(python=PLUGIN_PYTHON, command=command, lifetime=LIFETIME, issuer=issuer_url,
                                  audience=AUDIENCE, user=user, groups=groups, key=str(keys / "signing.key"),
                                  kid=KEY_ID, log=str(log)))
    path.chmod(0o755)
    return Plugin(path, log)
