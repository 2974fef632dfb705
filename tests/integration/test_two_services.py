"""One trace across two processes: Baseplate and OpenTelemetry-instrumented callers.

Service A is a Baseplate Pyramid app that calls service B over HTTP with
``requests``, instrumented by opentelemetry-instrumentation-requests; B is a
Baseplate Pyramid app. Both run under ``baseplate-serve`` and export to a
local Zipkin stand-in, with no ``OTEL_*`` variable set anywhere. The calls
must make one trace in which B's server span is a child of A's ``requests``
span. The second scenario replaces A by a plain OpenTelemetry application,
which sends only W3C ``traceparent``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import run_python, wait_until
from tests.diagnostics.tracing.standins import CollectorStandIn
from tests.server import child_environ, http_get, write

APP = """
import requests
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from pyramid.config import Configurator

from baseplate import config, tracing_client_from_config
from baseplate.core import Baseplate
from baseplate.integration.pyramid import BaseplateConfigurator


def make_app(app_config):
    settings = config.parse_config(app_config, {"downstream": config.Optional(config.String)})
    baseplate = Baseplate()
    baseplate.configure_tracing(tracing_client_from_config(app_config))
    RequestsInstrumentor().instrument()

    def call(request):
        answer = requests.get(settings.downstream + "/work", timeout=10)
        return {"downstream": answer.json()}

    def work(request):
        span = request.trace
        trace_headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("x-trace", "x-parent", "x-span", "x-sampled", "traceparent")
        }
        return {
            "trace_id": span.trace_id,
            "span_id": span.id,
            "parent_id": span.parent_id,
            "headers": trace_headers,
        }

    configurator = Configurator()
    configurator.include(BaseplateConfigurator(baseplate, trust_trace_headers=True).includeme)
    configurator.add_route("call", "/call")
    configurator.add_view(call, route_name="call", renderer="json")
    configurator.add_route("work", "/work")
    configurator.add_view(work, route_name="work", renderer="json")
    return configurator.make_wsgi_app()
"""

INI = """
[server:main]
factory = baseplate.server.wsgi
stop_timeout = 5

[app:main]
factory = twoapp:make_app
tracing.service_name = {service}
tracing.exporter = zipkin
tracing.zipkin.endpoint = {endpoint}
tracing.sample_rate = 100%
tracing.span_batch_interval = 100 milliseconds
{extra}
"""

PLAIN_OTEL_CALLER = """
import json
import sys

import requests
from opentelemetry import trace
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "plain-otel"}))
provider.add_span_processor(SimpleSpanProcessor(ZipkinExporter(endpoint=sys.argv[1])))
trace.set_tracer_provider(provider)
RequestsInstrumentor().instrument()

with trace.get_tracer("caller").start_as_current_span("caller") as root:
    answer = requests.get(sys.argv[2] + "/work", timeout=10)
provider.shutdown()
print(json.dumps({"trace_id": root.get_span_context().trace_id, "answer": answer.json()}))
"""


def environ_without_otel() -> dict[str, str]:
    return {key: value for key, value in child_environ().items() if not key.startswith("OTEL_")}


@pytest.fixture
def zipkin() -> Any:
    stand_in = CollectorStandIn()
    yield stand_in
    stand_in.close()


def start_service(servers, tmp_path: Path, service: str, endpoint: str, extra: str = "") -> str:
    directory = tmp_path / service
    directory.mkdir()
    write(directory / "twoapp.py", APP)
    write(directory / "app.ini", INI.format(service=service, endpoint=endpoint, extra=extra))
    server = servers.start(
        "app.ini", "--bind", "127.0.0.1:0", cwd=directory, env=environ_without_otel()
    )
    return server.address()


def zipkin_spans(zipkin: CollectorStandIn) -> list[dict[str, Any]]:
    return [span for _, _, body in list(zipkin.requests) for span in json.loads(body)]


def wait_for_spans(zipkin: CollectorStandIn, wanted: set[tuple[str, str]]) -> list[dict]:
    """Wait until spans with these (service, kind) pairs arrived; all spans so far."""

    def arrived() -> list[dict[str, Any]] | None:
        spans = zipkin_spans(zipkin)
        have = {(span["localEndpoint"]["serviceName"], span.get("kind")) for span in spans}
        return spans if wanted <= have else None

    return wait_until(arrived, f"spans of {wanted}")


def one(spans: list[dict[str, Any]], service: str, kind: str) -> dict[str, Any]:
    [span] = [
        span
        for span in spans
        if span["localEndpoint"]["serviceName"] == service and span.get("kind") == kind
    ]
    return span


def test_a_baseplate_caller_with_instrumented_requests(servers, tmp_path, zipkin):
    endpoint = f"http://127.0.0.1:{zipkin.port}/api/v2/spans"
    b_address = start_service(servers, tmp_path, "service-b", endpoint)
    a_address = start_service(
        servers, tmp_path, "service-a", endpoint, f"downstream = http://{b_address}"
    )

    status, body = http_get(a_address, "/call")
    assert status == 200, body
    seen_by_b = json.loads(body)["downstream"]

    spans = wait_for_spans(
        zipkin, {("service-a", "SERVER"), ("service-a", "CLIENT"), ("service-b", "SERVER")}
    )
    a_server = one(spans, "service-a", "SERVER")
    a_requests = one(spans, "service-a", "CLIENT")
    b_server = one(spans, "service-b", "SERVER")

    assert len({a_server["traceId"], a_requests["traceId"], b_server["traceId"]}) == 1
    assert a_requests["parentId"] == a_server["id"]
    assert b_server["parentId"] == a_requests["id"]  # a child of A's requests span
    assert b_server["id"] != a_requests["id"]
    assert "shared" not in b_server
    assert not any(span.get("debug") for span in spans)
    # B's facade saw the same ids its span was exported with.
    assert seen_by_b["span_id"] == int(b_server["id"], 16)
    assert seen_by_b["parent_id"] == int(a_requests["id"], 16)
    assert seen_by_b["trace_id"] == int(b_server["traceId"], 16) & (2**64 - 1)
    # With no OTEL_PROPAGATORS, A's instrumented client sent both header families.
    sent = seen_by_b["headers"]
    assert set(sent) == {"X-Trace", "X-Parent", "X-Span", "X-Sampled", "Traceparent"}
    assert sent["X-Span"] == str(int(a_requests["id"], 16))
    assert sent["X-Parent"] == str(int(a_server["id"], 16))


def test_a_plain_opentelemetry_caller_sending_only_traceparent(servers, tmp_path, zipkin):
    endpoint = f"http://127.0.0.1:{zipkin.port}/api/v2/spans"
    b_address = start_service(servers, tmp_path, "service-b", endpoint)
    caller = tmp_path / "caller.py"
    write(caller, PLAIN_OTEL_CALLER)
    result = run_python(
        str(caller), endpoint, f"http://{b_address}", env=environ_without_otel(), cwd=tmp_path
    )
    output = json.loads(result.stdout)

    spans = wait_for_spans(
        zipkin, {("plain-otel", "CLIENT"), ("plain-otel", None), ("service-b", "SERVER")}
    )
    caller_requests = one(spans, "plain-otel", "CLIENT")
    b_server = one(spans, "service-b", "SERVER")
    assert b_server["parentId"] == caller_requests["id"]
    assert b_server["traceId"] == caller_requests["traceId"] == f"{output['trace_id']:032x}"
    assert output["trace_id"] >> 64  # a 128-bit trace id, kept whole by B's export
    assert output["answer"]["trace_id"] == output["trace_id"] & (2**64 - 1)
    assert "shared" not in b_server
    assert set(output["answer"]["headers"]) == {"Traceparent"}
