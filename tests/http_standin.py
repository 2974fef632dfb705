"""A local HTTP server for the tests of instrumented HTTP clients.

It answers every ``GET`` with ``hello`` (status 200, or the code a path
``/status/<code>`` asks for), after :attr:`HTTPStandIn.delay` seconds, and
remembers the headers of each request, so tests can check what a client
propagated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
