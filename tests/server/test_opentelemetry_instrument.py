"""``opentelemetry-instrument baseplate-serve app.ini``, end to end.

The OpenTelemetry distro sets the SDK up in ``sitecustomize`` (its OTLP
exporter behind a batch span processor, ``parentbased_always_on``), before
``baseplate-serve`` patches the process with gevent; Baseplate then uses that
provider. A stand-in OTLP/HTTP collector on 127.0.0.1 receives what the
server exports, which the SDK flushes when the server stops on SIGTERM.
"""

from __future__ import annotations

import gzip
import http.server
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests._helpers import wait_until
from tests.server import (
    STOP_TIMEOUT,
    child_environ,
    command,
    free_port,
    http_get,
    write,
)

SERVICE_NAME = "instrumented-example"
# The upstream's Baseplate headers: X-Trace, X-Parent, X-Span.
X_TRACE, X_PARENT, X_SPAN = 0x6E2F9A4B1C3D5E7F, 0x2B4D6F8091A3C5E7, 0x4C6E8FA1B3D5F709
UNSAMPLED_TRACE = 0x1A2B3C4D5E6F7081

APP = """
from pyramid.config import Configurator
from pyramid.response import Response

from baseplate import tracing_client_from_config
from baseplate.core import Baseplate
from baseplate.integration.pyramid import BaseplateConfigurator


def hello(request):
    with request.trace.make_child("downstream"):
        pass
    return Response(f"{request.trace.trace_id} {request.trace.id}")


def make_app(app_config):
    baseplate = Baseplate()
    baseplate.configure_tracing(tracing_client_from_config(app_config))
    config = Configurator()
    config.include(BaseplateConfigurator(baseplate, trust_trace_headers=True).includeme)
    config.add_route("hello", "/hello")
    config.add_view(hello, route_name="hello")
    return config.make_wsgi_app()
"""

# The application's own exporter (the distro's) sends the spans: Baseplate's is "none".
INI = """
[server:main]
factory = baseplate.server.wsgi
stop_timeout = 5

[app:main]
factory = instrumented:make_app
tracing.service_name = not-used-by-the-distro
tracing.exporter = none
"""

#: What the collector answers on each path: an empty Export*ServiceResponse.
REPLIES = {
    "/v1/traces": ExportTraceServiceResponse().SerializeToString(),
    "/v1/metrics": ExportMetricsServiceResponse().SerializeToString(),
    "/v1/logs": ExportLogsServiceResponse().SerializeToString(),
}


class _CollectorHandler(http.server.BaseHTTPRequestHandler):
    server: CollectorStandIn

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        reply = REPLIES.get(self.path)
        if reply is None:
            self.send_error(404)
            return
        if self.path == "/v1/traces":
            self.server.received(ExportTraceServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what was received, not the access log."""


class CollectorStandIn(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP collector on 127.0.0.1 that keeps every span posted to it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.spans: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def received(self, request: ExportTraceServiceRequest) -> None:
        """Keep each span with its service name, ids as integers."""
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = {
                    attribute.key: attribute.value.string_value
                    for attribute in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(_describe(span, resource) for span in scope_spans.spans)


def _describe(span: Any, resource: dict[str, str]) -> dict[str, Any]:
    return {
        "name": span.name,
        "service": resource.get("service.name"),
        "trace_id": int.from_bytes(span.trace_id, "big"),
        "span_id": int.from_bytes(span.span_id, "big"),
        "parent_id": int.from_bytes(span.parent_span_id, "big") if span.parent_span_id else None,
    }


@pytest.fixture
def collector() -> Iterator[CollectorStandIn]:
    server = CollectorStandIn()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    thread.join(STOP_TIMEOUT)
    server.server_close()


class ServerHandle:
    """The server process, its address and its output so far."""

    def __init__(self, process: subprocess.Popen[bytes], address: str, log_path: Path) -> None:
        self.process = process
        self.address = address
        self.log_path = log_path

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(STOP_TIMEOUT)


@pytest.fixture
def instrumented_server(tmp_path: Path, collector: CollectorStandIn) -> Iterator[Any]:
    """``opentelemetry-instrument baseplate-serve`` on a free port; output in ``server.log``."""
    write(tmp_path / "instrumented.py", APP)
    write(tmp_path / "app.ini", INI)
    environ = {key: value for key, value in child_environ().items() if not key.startswith("OTEL_")}
    environ.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_SERVICE_NAME=SERVICE_NAME,
        # The distro's default protocol is gRPC, whose exporter is not installed.
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
    )
    address = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                command("opentelemetry-instrument"),
                command("baseplate-serve"),
                "app.ini",
                "--bind",
                address,
            ],
            cwd=tmp_path,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerHandle(process, address, log_path)
    try:
        wait_until(lambda: "listening on" in server.output or process.poll() is not None)
        assert process.poll() is None, server.output
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(STOP_TIMEOUT)


def hello(server: ServerHandle, headers: dict[str, str] | None = None) -> tuple[int, int]:
    """``GET /hello``: the facade's trace id and span id for the request."""
    status, body = http_get(server.address, "/hello", headers=headers)
    assert status == 200, body
    trace_id, span_id = body.split()
    return int(trace_id), int(span_id)


def baseplate_headers(trace_id: int, parent_id: int, span_id: int, sampled: str) -> dict[str, str]:
    return {
        "X-Trace": str(trace_id),
        "X-Parent": str(parent_id),
        "X-Span": str(span_id),
        "X-Sampled": sampled,
    }


def test_the_distros_exporter_sends_baseplates_spans_with_upstream_ids(
    instrumented_server, collector
):
    upstream = hello(instrumented_server, baseplate_headers(X_TRACE, X_PARENT, X_SPAN, "1"))
    fresh = hello(instrumented_server)
    hello(instrumented_server, baseplate_headers(UNSAMPLED_TRACE, X_PARENT, X_SPAN + 1, "0"))
    assert upstream == (X_TRACE, X_SPAN)

    assert instrumented_server.stop() == 0
    # The SDK flushed at exit: everything is in before the process is gone.
    output = instrumented_server.output
    servers = {span["trace_id"]: span for span in collector.spans if span["name"] == "hello"}
    assert sorted(servers) == sorted([X_TRACE, fresh[0]]), (collector.spans, output)
    assert {span["service"] for span in collector.spans} == {SERVICE_NAME}

    shared = servers[X_TRACE]
    assert (shared["span_id"], shared["parent_id"]) == (X_SPAN, X_PARENT)
    children = [span for span in collector.spans if span["name"] == "downstream"]
    assert {(span["trace_id"], span["parent_id"]) for span in children} == {
        (X_TRACE, X_SPAN),
        (fresh[0], fresh[1]),
    }

    new = servers[fresh[0]]
    assert 0 < new["trace_id"] < 2**64
    assert (new["span_id"], new["parent_id"]) == (fresh[1], None)

    assert "using the application's own TracerProvider; wrapped its" in output
    assert "Traceback" not in output
    assert "Exception ignored" not in output
