"""Local HTTP servers standing in for trace collectors: they record what arrives."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Recorded = tuple[str, dict[str, str], bytes]
"""One request as it arrived: path, lower-cased headers, body."""


class CollectorStandIn:
    """Accepts POSTs on 127.0.0.1 and keeps (path, headers, body) of each.

    ``status`` sets the response code and ``delay`` makes every response slow.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.status = 200
        self.delay = 0.0
        self.arrived = threading.Condition()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stand_in.arrived:
                    stand_in.requests.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    stand_in.arrived.notify_all()
                time.sleep(stand_in.delay)
                self.send_response(stand_in.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(
        self, count: int, timeout: float = 10.0
    ) -> list[tuple[str, dict[str, str], bytes]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
