"""Local HTTP servers for tests: of instrumented HTTP clients, and of the sidecars.

:class:`HTTPStandIn` answers every ``GET`` with ``hello`` (status 200, or
the code a path ``/status/<code>`` asks for), after
:attr:`HTTPStandIn.delay` seconds, and remembers the headers of each
request, so tests can check what a client propagated.

:class:`PostStandIn` is the base of the servers the sidecars post to (the
Zipkin and event collector stand-ins): it takes POSTs, lets its subclass
decide each answer, and can go down and come back on the same port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar


class _Handler(BaseHTTPRequestHandler):
    server: HTTPStandIn

    def do_GET(self) -> None:
        self.server.received_headers.append(dict(self.headers.items()))
        time.sleep(self.server.delay)
        status = int(self.path.split("/")[2]) if self.path.startswith("/status/") else 200
        body = b"hello"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class HTTPStandIn(ThreadingHTTPServer):
    """The server, on an ephemeral port of 127.0.0.1."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        #: The headers of each request received, in order.
        self.received_headers: list[dict[str, str]] = []
        #: Seconds each answer waits.
        self.delay = 0.0

    def url(self, path: str = "/thing") -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{path}"


@contextmanager
def serving() -> Iterator[HTTPStandIn]:
    """An :class:`HTTPStandIn` answering in a thread until the block ends."""
    server = HTTPStandIn()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class Request:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


_Started = TypeVar("_Started", bound="PostStandIn")


class PostStandIn:
    """A server on 127.0.0.1 that answers each POST as :meth:`receive` says.

    It can :meth:`stop` (connections are then refused) and :meth:`start`
    again on the same port, so that a test can take the server away from a
    client and bring it back. Subclasses say what a request gets in
    :meth:`receive` (which runs in the server's threads), and may serve TLS
    by overriding :meth:`wrap`.
    """

    #: The HTTP version of the answers.
    protocol_version = "HTTP/1.0"

    def __init__(self) -> None:
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    def receive(self, request: Request) -> int:
        """The status to answer ``request`` with (the answer has no body)."""
        raise NotImplementedError

    def wrap(self, listening: socket.socket) -> socket.socket:
        """The socket to serve on, made from the listening one: by default, itself."""
        return listening

    def start(self) -> None:
        """Listen (on the same port as before, after a :meth:`stop`)."""
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = stand_in.protocol_version

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = Request(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(stand_in.receive(request))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.socket = self.wrap(server.socket)
        self.port = server.server_address[1]
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self._server = server

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self: _Started) -> _Started:
        """Start; for fixtures: ``with ZipkinStandIn() as zipkin: yield zipkin``."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
