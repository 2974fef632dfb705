"""Several Baseplates in one process: each tracing client exports only its own spans."""

from __future__ import annotations

from types import SimpleNamespace

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from baseplate.core import Baseplate, TraceInfo
from baseplate.diagnostics.tracing import TracingClient
from bridge import provider
from bridge.export import ServiceNamingSpanExporter


def traced_baseplate(
    service_name: str, sample_rate: float = 1.0
) -> tuple[Baseplate, TracingClient, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    client = TracingClient(service_name, sample_rate, exporter)
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    return baseplate, client, exporter


def names(exporter: InMemorySpanExporter) -> list[str]:
    return [span.name for span in exporter.get_finished_spans()]


def request(baseplate: Baseplate, name: str, trace_info: TraceInfo | None = None):
    return baseplate.make_server_span(SimpleNamespace(), name, trace_info)


def test_each_baseplate_exports_its_own_spans(spans):
    first, first_client, first_spans = traced_baseplate("first")
    second, second_client, second_spans = traced_baseplate("second")

    with request(first, "one") as server, server.make_child("one.child"):
        pass
    server = request(second, "two")
    with server, server.make_child("two.local", local=True, component_name="c"):
        pass
    assert first_client.flush() and second_client.flush()

    assert names(first_spans) == ["one.child", "one"]
    assert names(second_spans) == ["two.local", "two"]
    # A processor added to the provider itself still sees every span.
    assert sorted(span.name for span in spans.get_finished_spans()) == sorted(
        ["one.child", "one", "two.local", "two"]
    )


def test_spans_of_other_libraries_follow_the_request_they_started_in(spans):
    first, first_client, first_spans = traced_baseplate("first")
    second, second_client, second_spans = traced_baseplate("second")
    tracer = trace.get_tracer("some.instrumentation")

    with (
        request(first, "one"),
        tracer.start_as_current_span("native.one"),
        tracer.start_as_current_span("native.nested"),
    ):
        pass
    with request(second, "two"), tracer.start_as_current_span("native.two"):
        pass
    assert first_client.flush() and second_client.flush()

    assert names(first_spans) == ["native.nested", "native.one", "one"]
    assert names(second_spans) == ["native.two", "two"]


def test_in_process_call_from_one_baseplate_to_another(spans):
    """The server span of the callee, started while the caller's client span is
    current, belongs to the callee: a service calling itself in a test."""
    caller, caller_client, caller_spans = traced_baseplate("caller")
    callee, callee_client, callee_spans = traced_baseplate("callee")

    with request(caller, "outer") as outer, outer.make_child("callee.method") as call:
        upstream = TraceInfo.from_upstream(call.trace_id, call.parent_id, call.id, True, None)
        with request(callee, "method", upstream) as inner, inner.make_child("db"):
            pass
    assert caller_client.flush() and callee_client.flush()

    assert names(caller_spans) == ["callee.method", "outer"]
    assert names(callee_spans) == ["db", "method"]
    method = callee_spans.get_finished_spans()[1]
    assert method.context.trace_id == outer.trace_id


def test_sample_rate_is_per_baseplate(spans):
    never, never_client, never_spans = traced_baseplate("never", sample_rate=0.0)
    always, always_client, always_spans = traced_baseplate("always", sample_rate=1.0)

    for _ in range(20):
        with request(never, "n"):
            pass
        with request(always, "a"):
            pass
    assert never_client.flush() and always_client.flush()

    assert names(never_spans) == []
    assert names(always_spans) == ["a"] * 20


def test_a_baseplate_without_tracing_exports_to_no_client(spans):
    traced, client, exported = traced_baseplate("traced")
    untraced = Baseplate()

    with request(traced, "mine"):
        pass
    with request(untraced, "not-mine"):
        trace.get_tracer("lib").start_span("native.not-mine").end()
    assert client.flush()

    assert names(exported) == ["mine"]


def test_native_spans_outside_requests_go_to_the_last_client(spans):
    _, first_client, first_spans = traced_baseplate("first")
    second, second_client, second_spans = traced_baseplate("second")
    with request(second, "installs-the-client"):
        pass
    trace.get_tracer("lib").start_span("background").end()
    assert first_client.flush() and second_client.flush()

    assert names(first_spans) == []
    assert names(second_spans) == ["installs-the-client", "background"]
    assert provider.get_tracer_provider().force_flush()


def test_resource_exporters_report_the_clients_service_name(spans):
    """Zipkin v2 and OTLP take the service from the span's resource: the
    wrapper makes it the client's, whatever the provider's resource says."""
    first_inner, second_inner = InMemorySpanExporter(), InMemorySpanExporter()
    first = Baseplate()
    first.configure_tracing(
        TracingClient("first", 1.0, ServiceNamingSpanExporter(first_inner, "first"))
    )
    second_client = TracingClient("second", 1.0, ServiceNamingSpanExporter(second_inner, "second"))
    second = Baseplate()
    second.configure_tracing(second_client)

    with request(first, "one"):
        pass
    with request(second, "two"):
        pass
    assert second_client.flush()
    provider.get_tracer_provider().force_flush()

    (one,) = first_inner.get_finished_spans()
    (two,) = second_inner.get_finished_spans()
    assert one.resource.attributes[SERVICE_NAME] == "first"
    assert two.resource.attributes[SERVICE_NAME] == "second"
