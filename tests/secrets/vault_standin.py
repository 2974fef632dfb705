"""Local stand-ins for Vault's HTTP API and the EC2 instance metadata service.

Both are real HTTP servers on 127.0.0.1 (an ephemeral port, in a thread), so
the code under test talks to them with the real ``hvac`` and ``requests``
clients. They implement only what Baseplate uses, with Vault's response
shapes:

* ``POST /v1/auth/<mount>/login`` for the AWS EC2 method (``pkcs7``, ``role``,
  ``nonce``) and the Kubernetes method (``role``, ``jwt``);
* ``POST /v1/auth/token/renew-self`` and ``GET /v1/auth/token/lookup-self``;
* ``GET /v1/<path>`` reads and ``POST``/``PUT /v1/<path>`` writes of KV
  (version 1) secrets;
* on the metadata stand-in, ``PUT /latest/api/token`` (IMDSv2) and
  ``GET /latest/dynamic/instance-identity/pkcs7``.

Every Vault request but a login must carry a live token in ``X-Vault-Token``.
:meth:`VaultStandin.stop` makes Vault "down" (connections are refused) and
:attr:`VaultStandin.fail_status` makes every request fail with that status.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: The default lease Vault gives KV version 1 reads (32 days).
KV_LEASE_DURATION = 2764800

_ERROR_MESSAGES = {
    400: "invalid request",
    403: "permission denied",
    404: "",
    500: "internal error",
    503: "Vault is sealed",
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.server.standin.handle(
            self.command, self.path, dict(self.headers.items()), body
        )
        if isinstance(payload, str):
            content, content_type = payload.encode(), "text/plain"
        elif payload is None:
            content, content_type = b"", "application/json"
        else:
            content, content_type = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        if content or status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    # http.server looks the handlers up by these names.
    do_GET = do_POST = do_PUT = do_DELETE = do_LIST = _dispatch  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: _Standin


class _Standin:
    """A server that can be started, stopped ("down") and started again on its port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Every request received, as ``(method, path)``.
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.standin = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = None

    def __enter__(self) -> _Standin:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path))
            return self.route(method, path, {k.lower(): v for k, v in headers.items()}, body)

    def route(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        raise NotImplementedError


def _errors(status: int, *messages: str) -> tuple[int, dict[str, Any]]:
    if not messages:
        messages = (_ERROR_MESSAGES.get(status, "error"),) if _ERROR_MESSAGES.get(status) else ()
    return status, {"errors": list(messages)}


@dataclass
class TokenRecord:
    """A token the stand-in issued."""

    token: str
    ttl: int
    renewable: bool
    policies: list[str]
    metadata: dict[str, str]
    #: ``time.monotonic()`` at creation and at the last renewal.
    created: float = field(default_factory=time.monotonic)
    renewed: float = field(default_factory=time.monotonic)
    max_ttl: int | None = None

    def expired(self) -> bool:
        return self.ttl > 0 and time.monotonic() > self.renewed + self.ttl


class VaultStandin(_Standin):
    """Vault's HTTP API, as much of it as the fetcher and ``context.vault`` use.

    Configure it through its attributes before (or between) requests.
    """

    def __init__(self) -> None:
        super().__init__()
        #: auth mount point -> "aws" or "kubernetes".
        self.auth_mounts = {"aws-ec2": "aws", "aws": "aws", "kubernetes": "kubernetes"}
        #: AWS role -> the PKCS#7 document (newlines removed) it accepts.
        self.aws_roles: dict[str, str] = {}
        #: Kubernetes role -> the service-account JWT it accepts.
        self.kubernetes_roles: dict[str, str] = {}
        #: The nonce the (single) EC2 instance registered at its first login.
        self.instance_nonce: str | None = None
        #: What logins grant.
        self.token_ttl = 3600
        self.token_renewable = True
        self.token_max_ttl: int | None = None
        #: KV secrets: path -> (data, lease_duration).
        self.secrets: dict[str, tuple[dict[str, Any], int]] = {}
        #: Paths every token is denied (403), to stand in for policies.
        self.denied_paths: set[str] = set()
        self.tokens: dict[str, TokenRecord] = {}
        #: When set, every /v1 request fails with this status.
        self.fail_status: int | None = None
        #: The decoded JSON body of every login, in order.
        self.logins: list[dict[str, Any]] = []

    # -- set-up helpers ----------------------------------------------------------

    def add_secret(
        self, path: str, data: dict[str, Any], lease_duration: int = KV_LEASE_DURATION
    ) -> None:
        self.secrets[path.strip("/")] = (data, lease_duration)

    def issue_token(
        self, ttl: int | None = None, renewable: bool | None = None, policies: tuple[str, ...] = ()
    ) -> str:
        with self._lock:
            return self._issue(
                self.token_ttl if ttl is None else ttl,
                self.token_renewable if renewable is None else renewable,
                ["default", *policies],
                {},
            ).token

    def _issue(
        self, ttl: int, renewable: bool, policies: list[str], metadata: dict[str, str]
    ) -> TokenRecord:
        record = TokenRecord(
            token="hvs." + uuid.uuid4().hex,
            ttl=ttl,
            renewable=renewable,
            policies=policies,
            metadata=metadata,
            max_ttl=self.token_max_ttl,
        )
        self.tokens[record.token] = record
        return record

    def revoke(self, token: str) -> None:
        with self._lock:
            self.tokens.pop(token, None)

    # -- responses -----------------------------------------------------------------

    @staticmethod
    def _envelope(**fields: Any) -> dict[str, Any]:
        response: dict[str, Any] = {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": None,
            "wrap_info": None,
            "warnings": None,
            "auth": None,
            "mount_type": "",
        }
        response.update(fields)
        return response

    def _auth_response(self, record: TokenRecord, lease_duration: int) -> dict[str, Any]:
        return self._envelope(
            auth={
                "client_token": record.token,
                "accessor": "accessor-" + record.token[-8:],
                "policies": record.policies,
                "token_policies": record.policies,
                "metadata": record.metadata,
                "lease_duration": lease_duration,
                "renewable": record.renewable,
                "entity_id": "",
                "token_type": "service",
                "orphan": True,
            }
        )

    def _token_record(self, headers: Mapping[str, str]) -> TokenRecord | None:
        record = self.tokens.get(headers.get("x-vault-token", ""))
        if record is None or record.expired():
            return None
        return record

    # -- routing -------------------------------------------------------------------

    def route(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        if not path.startswith("/v1/"):
            return _errors(404)
        if self.fail_status is not None:
            return _errors(self.fail_status)
        path = path[len("/v1/") :].split("?", 1)[0].strip("/")
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return _errors(400, "failed to parse JSON input")

        if path.startswith("auth/") and path.endswith("/login") and method in ("POST", "PUT"):
            mount = path[len("auth/") : -len("/login")]
            return self._login(mount, payload)

        record = self._token_record(headers)
        if record is None:
            return _errors(403)
        if path == "auth/token/renew-self" and method in ("POST", "PUT"):
            return self._renew(record)
        if path == "auth/token/lookup-self" and method == "GET":
            return self._lookup(record)
        if path in self.denied_paths:
            return _errors(403)
        if method == "GET":
            if path not in self.secrets:
                return _errors(404)
            data, lease_duration = self.secrets[path]
            return 200, self._envelope(data=data, lease_duration=lease_duration)
        if method in ("POST", "PUT"):
            self.secrets[path] = (payload, KV_LEASE_DURATION)
            return 204, None
        if method == "DELETE":
            self.secrets.pop(path, None)
            return 204, None
        return _errors(405, "unsupported operation")

    def _login(self, mount: str, payload: Mapping[str, Any]) -> tuple[int, Any]:
        self.logins.append(dict(payload))
        kind = self.auth_mounts.get(mount)
        role = payload.get("role")
        if kind == "aws":
            expected = self.aws_roles.get(role) if isinstance(role, str) else None
            if expected is None:
                return _errors(400, f"entry for role {role} not found")
            if payload.get("pkcs7") != expected:
                return _errors(400, "failed to verify the instance identity document")
            nonce = payload.get("nonce")
            metadata = {"role": role, "instance_id": "i-0123456789abcdef0"}
            if self.instance_nonce is None:
                self.instance_nonce = nonce if nonce else uuid.uuid4().hex
                if not nonce:
                    metadata["nonce"] = self.instance_nonce
            elif nonce != self.instance_nonce:
                return _errors(400, "client nonce mismatch")
        elif kind == "kubernetes":
            expected = self.kubernetes_roles.get(role) if isinstance(role, str) else None
            if expected is None:
                return _errors(400, f'invalid role name "{role}"')
            if payload.get("jwt") != expected:
                return _errors(403)
            metadata = {"role": role, "service_account_name": "default"}
        else:
            return _errors(400, f"no handler for route 'auth/{mount}/login'")
        record = self._issue(self.token_ttl, self.token_renewable, ["default", role], metadata)
        return 200, self._auth_response(record, record.ttl)

    def _renew(self, record: TokenRecord) -> tuple[int, Any]:
        if not record.renewable:
            return _errors(400, "lease is not renewable")
        now = time.monotonic()
        granted = self.token_ttl
        if record.max_ttl is not None:
            granted = max(0, min(granted, int(record.created + record.max_ttl - now)))
        record.ttl = granted
        record.renewed = now
        return 200, self._auth_response(record, granted)

    def _lookup(self, record: TokenRecord) -> tuple[int, Any]:
        remaining = 0
        if record.ttl:
            remaining = max(0, int(record.renewed + record.ttl - time.monotonic()))
        return 200, self._envelope(
            data={
                "id": record.token,
                "accessor": "accessor-" + record.token[-8:],
                "policies": record.policies,
                "meta": record.metadata,
                "creation_ttl": record.ttl,
                "ttl": remaining,
                "renewable": record.renewable,
                "type": "service",
                "path": "auth/token/create",
            }
        )


#: A PKCS#7 instance identity document as the metadata service returns it:
#: base64 text wrapped at 64 columns (this one is made up).
SAMPLE_PKCS7 = "\n".join(
    [
        "MIAGCSqGSIb3DQEHAqCAMIACAQExCzAJBgUrDgMCGgUAMIAGCSqGSIb3DQEHAaCAJIAEggHbewog",
        "ICJhY2NvdW50SWQiIDogIjEyMzQ1Njc4OTAxMiIsCiAgImFyY2hpdGVjdHVyZSIgOiAieDg2XzY0",
        "IiwKICAiaW5zdGFuY2VJZCIgOiAiaS0wMTIzNDU2Nzg5YWJjZGVmMCIKfQAAAAAAADGCARcwggET",
        "AgEBMGkwXDELMAkGA1UEBhMCVVMxGTAXBgNVBAgTEFdhc2hpbmd0b24gU3RhdGUxEDAOBgNVBAcT",
    ]
)


class MetadataStandin(_Standin):
    """The EC2 instance metadata service: IMDSv2 tokens and the PKCS#7 document."""

    def __init__(self, pkcs7: str = SAMPLE_PKCS7) -> None:
        super().__init__()
        self.pkcs7 = pkcs7
        #: When false the service is IMDSv1-only: token requests are refused
        #: and the document is served without one.
        self.imdsv2 = True
        self._session_tokens: set[str] = set()

    def route(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        if path == "/latest/api/token" and method == "PUT":
            if not self.imdsv2:
                return 403, "Forbidden"
            if "x-aws-ec2-metadata-token-ttl-seconds" not in headers:
                return 400, "Missing TTL"
            token = uuid.uuid4().hex
            self._session_tokens.add(token)
            return 200, token
        if path == "/latest/dynamic/instance-identity/pkcs7" and method == "GET":
            if self.imdsv2 and headers.get("x-aws-ec2-metadata-token") not in self._session_tokens:
                return 401, "Unauthorized"
            return 200, self.pkcs7
        return 404, "Not Found"

    @property
    def login_pkcs7(self) -> str:
        """The document as a Vault login must present it: newlines removed."""
        return self.pkcs7.replace("\n", "")
