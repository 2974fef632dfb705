"""A local stand-in for the event collector, over HTTPS as the real one is.

It checks every POST as the collector does: the path names the protocol
version, the body is gzip, and ``X-Signature`` is ``key=<name>,
mac=<hex HMAC-SHA256 of the uncompressed body>`` for a key it knows. It
then decodes the batch (a v1 JSON array, or the v2 Thrift-JSON list) and
keeps the events of every batch it accepted. Statuses can be scripted
request by request, and it can stop and start again on the same port, so
tests can take the collector down and bring it back.

Its certificate, made fresh for each run, is for ``localhost`` and
``127.0.0.1``; a client trusts it through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import collections
import datetime
import gzip
import hashlib
import hmac
import json
import re
import socket
import ssl
import threading
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.http_standin import PostStandIn, Request

_SIGNATURE = re.compile(r"^key=(?P<name>[^,]+), mac=(?P<mac>[0-9a-f]{64})$")
_V2_HEADER = re.compile(rb'^\{"1":\{"lst":\["rec",(?P<count>\d+),')


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "collector.pem", directory / "collector.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class Post:
    """One request the collector accepted as well-formed and correctly signed."""

    path: str
    headers: dict[str, str]
    body: bytes
    """The uncompressed batch."""

    events: list[Any]
    """The batch's events: decoded JSON objects for v1, raw Thrift-JSON bytes for v2."""


class CollectorStandIn(PostStandIn):
    """The collector: verifies, decodes and records; answers as scripted."""

    protocol_version = "HTTP/1.1"

    def __init__(self, cert_path: Path, key_path: Path, keys: dict[str, bytes]) -> None:
        super().__init__()
        self.keys = keys
        self.accepted: list[Post] = []
        #: Why each refused request was refused (bad signature, bad gzip, ...).
        self.refused: list[str] = []
        #: How many requests arrived at all.
        self.attempts = 0
        #: Statuses for the next requests, in order; then ``default_status``.
        self.statuses: collections.deque[int] = collections.deque()
        self.default_status = 200
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert_path, key_path)
        self._lock = threading.Lock()

    @property
    def hostname(self) -> str:
        """What ``collector.hostname`` is set to."""
        return f"localhost:{self.port}"

    def wrap(self, listening: socket.socket) -> socket.socket:
        return self._context.wrap_socket(listening, server_side=True)

    def events(self) -> list[Any]:
        """Every event of every accepted batch, in the order they arrived."""
        with self._lock:
            return [event for post in self.accepted for event in post.events]

    def receive(self, request: Request) -> int:
        with self._lock:
            self.attempts += 1
            scripted = self.statuses.popleft() if self.statuses else None
        problem, post = self._check(request.path, request.headers, request.body)
        with self._lock:
            if problem is not None:
                self.refused.append(problem)
                return 400
            status = scripted or self.default_status
            if status < 300:
                assert post is not None
                self.accepted.append(post)
        return status

    def _check(
        self, path: str, headers: dict[str, str], compressed: bytes
    ) -> tuple[str | None, Post | None]:
        if path not in ("/v1", "/v2"):
            return f"unknown path {path}", None
        if headers.get("Content-Encoding") != "gzip":
            return "not gzip", None
        try:
            body = gzip.decompress(compressed)
        except (OSError, EOFError) as exc:
            return f"bad gzip: {exc}", None
        signature = _SIGNATURE.match(headers.get("X-Signature", ""))
        if signature is None:
            return f"unreadable signature {headers.get('X-Signature')!r}", None
        secret = self.keys.get(signature["name"])
        if secret is None:
            return f"unknown key {signature['name']}", None
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature["mac"]):
            return "signature mismatch", None
        try:
            events = _decode_v1(body) if path == "/v1" else _decode_v2(body)
        except ValueError as exc:
            return f"undecodable batch: {exc}", None
        return None, Post(path, headers, body, events)


def _decode_v1(body: bytes) -> list[Any]:
    events = json.loads(body)
    if not isinstance(events, list) or not events:
        raise ValueError("a v1 batch is a non-empty JSON array")
    return events


def _decode_v2(body: bytes) -> list[bytes]:
    """The events of a v2 batch: struct field 1, a list of structs, in Thrift's JSON."""
    header = _V2_HEADER.match(body)
    if header is None or not body.endswith(b"]}}"):
        raise ValueError("not a v2 batch")
    parsed = json.loads(body)  # it must be JSON as a whole
    items = parsed["1"]["lst"][2:]
    if len(items) != int(header["count"]) or not items:
        raise ValueError(f"the list says {header['count']} events but holds {len(items)}")
    return [json.dumps(item, separators=(",", ":")).encode() for item in items]
