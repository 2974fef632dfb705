"""``baseplate-healthcheck``: ask a service whether it is healthy.

A Thrift service is healthy when ``BaseplateService.is_healthy()`` returns
true over THeader; a WSGI service when ``GET /health`` answers 200. Every
failure, including a timeout, is one line saying what went wrong; a Thrift
check answered by something that does not speak Thrift (an HTTP server, say)
shows the first line of that answer.
"""

from __future__ import annotations

import http.client
import importlib
import socket
from collections.abc import Callable
from typing import Any

from baseplate import config

HEALTH_CHECK_PATH = "/health"

Checker = Callable[[config.EndpointConfiguration, float], "str | None"]


def _connect(endpoint: config.EndpointConfiguration, timeout: float) -> socket.socket:
    if isinstance(endpoint.address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(endpoint.address)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection(endpoint.address, timeout=timeout)


def check_thrift(endpoint: config.EndpointConfiguration, timeout: float) -> str | None:
    """Call ``is_healthy``; None if it returned true, else what went wrong."""
    try:
        service: Any = importlib.import_module("baseplate.thrift.BaseplateService")
    except ImportError as exc:
        return f"cannot check Thrift services: {exc}"
    from thrift.protocol.THeaderProtocol import THeaderProtocol
    from thrift.Thrift import TException
    from thrift.transport.THeaderTransport import THeaderClientType
    from thrift.transport.TSocket import TSocket
    from thrift.transport.TTransport import TTransportException

    try:
        sock = _connect(endpoint, timeout)
    except TimeoutError:
        return f"cannot connect to {endpoint}: timed out after {timeout:g} seconds"
    except OSError as exc:
        return f"cannot connect to {endpoint}: {exc.strerror or exc}"
    recorder = _RecordingSocket(sock)
    transport = TSocket()
    transport.handle = recorder
    try:
        protocol = THeaderProtocol(transport, (THeaderClientType.HEADERS,))
        healthy = service.Client(protocol).is_healthy()
    except TimeoutError:
        return f"is_healthy timed out after {timeout:g} seconds"
    except TTransportException as exc:
        if exc.type == TTransportException.TIMED_OUT:
            return f"is_healthy timed out after {timeout:g} seconds"
        if exc.type in (TTransportException.SIZE_LIMIT, TTransportException.INVALID_CLIENT_TYPE):
            # No Thrift server answers is_healthy with a frame of 16 MB or
            # more, or one that is not Thrift: something else answered.
            answer = recorder.first_line(_LINE_WAIT)
            if answer:
                return f"{endpoint} does not speak Thrift: {_looks_like(answer)}"
        return f"is_healthy failed: {exc or type(exc).__name__}"
    except (TException, OSError) as exc:
        return f"is_healthy failed: {exc or type(exc).__name__}"
    finally:
        sock.close()
    return None if healthy else "the service says it is not healthy"


#: How much of an answer that is not Thrift is shown.
_ANSWER_SAMPLE = 80
#: How long to wait for the rest of the first line of an answer that is not Thrift.
_LINE_WAIT = 0.5


class _RecordingSocket:
    """A socket that keeps the first bytes it receives, to tell what answered."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.received = b""

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        if len(self.received) < _ANSWER_SAMPLE:
            self.received += data[: _ANSWER_SAMPLE - len(self.received)]
        return data

    def first_line(self, wait: float) -> bytes:
        """The first line of the answer, as much of it as comes within ``wait`` seconds."""
        self._sock.settimeout(wait)
        while b"\n" not in self.received and len(self.received) < _ANSWER_SAMPLE:
            try:
                data = self.recv(_ANSWER_SAMPLE - len(self.received))
            except OSError:
                break
            if not data:
                break
        return self.received.partition(b"\n")[0].rstrip(b"\r")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _looks_like(answer: bytes) -> str:
    """What the first line of an answer that is not Thrift looks like."""
    if answer.startswith(b"HTTP/"):
        return f"it answered like an HTTP server: {answer.decode('latin-1')}"
    return f"its answer begins with {answer!r}"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path
        self.connect_timeout = timeout

    def connect(self) -> None:
        endpoint = config.EndpointConfiguration(socket.AF_UNIX, self.socket_path)
        self.sock = _connect(endpoint, self.connect_timeout)


def check_wsgi(endpoint: config.EndpointConfiguration, timeout: float) -> str | None:
    """``GET /health``; None if the answer was 200, else what went wrong."""
    connection: http.client.HTTPConnection
    if isinstance(endpoint.address, str):
        connection = _UnixHTTPConnection(endpoint.address, timeout)
    else:
        connection = http.client.HTTPConnection(*endpoint.address, timeout=timeout)
    try:
        connection.request("GET", HEALTH_CHECK_PATH)
        response = connection.getresponse()
        response.read()
    except TimeoutError:
        return f"GET {HEALTH_CHECK_PATH} on {endpoint} timed out after {timeout:g} seconds"
    except OSError as exc:
        return f"GET {HEALTH_CHECK_PATH} on {endpoint} failed: {exc.strerror or exc}"
    except http.client.HTTPException as exc:
        return f"GET {HEALTH_CHECK_PATH} on {endpoint} failed: {type(exc).__name__} {exc}"
    finally:
        connection.close()
    if response.status != 200:
        return f"GET {HEALTH_CHECK_PATH} answered {response.status} {response.reason}"
    return None


CHECKERS: dict[str, Checker] = {"thrift": check_thrift, "wsgi": check_wsgi}


def check(protocol: str, endpoint_text: str, timeout: float) -> str | None:
    """Check the service at ``endpoint_text``; None if healthy, else the reason."""
    from baseplate.server._listener import parse_bind

    try:
        endpoint = parse_bind(endpoint_text)
    except ValueError as exc:
        return f"bad endpoint {endpoint_text!r}: {exc}"
    return CHECKERS[protocol](endpoint, timeout)
