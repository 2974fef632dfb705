"""Local HTTP servers standing in for trace collectors: they record what arrives.

And :func:`tracing_client_to`, a tracing client aimed at one of them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from baseplate import tracing_client_from_config
from baseplate.diagnostics.tracing import TracingClient

Recorded = tuple[str, dict[str, str], bytes]
"""One request as it arrived: path, lower-cased headers, body."""


#: The longest a held request waits for :meth:`CollectorStandIn.release`: a
#: test that forgets to release, or code that waits for the answer when it
#: must not, fails after this instead of hanging.
HOLD_LIMIT = 30.0


class CollectorStandIn:
    """Accepts POSTs on 127.0.0.1 and keeps (path, headers, body) of each.

    ``status`` sets the response code. After :meth:`hold`, requests are
    recorded as they arrive but not answered until :meth:`release`, so a test
    can see what its code does while an export waits on the collector;
    ``answered`` counts the responses sent (or being sent).
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.status = 200
        self.answered = 0
        self.arrived = threading.Condition()
        self._answering = threading.Event()
        self._answering.set()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stand_in.arrived:
                    stand_in.requests.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    stand_in.arrived.notify_all()
                stand_in._answering.wait(HOLD_LIMIT)
                with stand_in.arrived:  # counted before the client can see the answer
                    stand_in.answered += 1
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

    def hold(self) -> None:
        """Leave requests unanswered from now on, until :meth:`release`."""
        self._answering.clear()

    def release(self) -> None:
        """Answer the held requests, and the next ones at once."""
        self._answering.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def tracing_client_to(
    port: int,
    exporter: str = "zipkin",
    service_name: str = "svc",
    sample_rate: str = "100%",
    extra: Mapping[str, str] | None = None,
) -> TracingClient:
    """A client exporting with ``exporter`` (zipkin, otlp or remote) to 127.0.0.1:``port``."""
    endpoints = {
        "zipkin": ("tracing.zipkin.endpoint", f"http://127.0.0.1:{port}/api/v2/spans"),
        "otlp": ("tracing.otlp.endpoint", f"http://127.0.0.1:{port}/v1/traces"),
        "remote": ("tracing.endpoint", f"127.0.0.1:{port}"),
    }
    key, endpoint = endpoints[exporter]
    return tracing_client_from_config(
        {
            "tracing.service_name": service_name,
            "tracing.exporter": exporter,
            key: endpoint,
            "tracing.sample_rate": sample_rate,
            **(extra or {}),
        }
    )
