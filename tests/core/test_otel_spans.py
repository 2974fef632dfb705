"""Facade spans as OpenTelemetry spans: ids, parentage, kinds, attributes, sampling."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from baseplate.core import Baseplate, TraceInfo
from bridge import provider
from bridge.routing import ExportRoute


@pytest.fixture
def baseplate():
    return Baseplate()


def by_name(exporter):
    return {span.name: span for span in exporter.get_finished_spans()}


def run_request(baseplate, trace_info=None):
    server = baseplate.make_server_span(SimpleNamespace(), "handler", trace_info)
    with server:
        with server.make_child("client.call") as client:
            client.set_tag("peer", "db")
            client.set_tag("rows", 3)
            client.set_tag("odd", {"a": 1})
            client.log("retry", {"attempt": 2})
            client.log("plain")
        with server.make_child("op", local=True, component_name="comp"):
            pass
    return server, client


def test_upstream_ids_become_the_otel_ids(baseplate, spans):
    info = TraceInfo.from_upstream(1234, 2345, 3456, True, None)
    _, client = run_request(baseplate, info)
    exported = by_name(spans)

    otel_server = exported["handler"]
    assert otel_server.context.trace_id == 1234
    assert otel_server.context.span_id == 3456
    assert otel_server.parent.span_id == 2345
    assert otel_server.parent.is_remote
    assert otel_server.kind is SpanKind.SERVER

    otel_client = exported["client.call"]
    assert otel_client.context.span_id == client.id
    assert otel_client.parent.span_id == 3456
    assert otel_client.context.trace_id == 1234
    assert otel_client.kind is SpanKind.CLIENT
    assert exported["op"].kind is SpanKind.INTERNAL
    assert exported["op"].parent.span_id == 3456


def test_new_trace_is_a_root_with_64_bit_ids(baseplate, spans):
    server, _ = run_request(baseplate)
    otel_server = by_name(spans)["handler"]
    assert otel_server.parent is None
    assert otel_server.context.trace_id == server.trace_id == server.id
    assert otel_server.context.trace_id < 2**64


def test_parent_id_zero_makes_a_root_in_the_upstream_trace(baseplate, spans):
    run_request(baseplate, TraceInfo.from_upstream(2**64 - 1, 0, 2**63, True, None))
    otel_server = by_name(spans)["handler"]
    assert otel_server.parent is None
    assert otel_server.context.trace_id == 2**64 - 1
    assert otel_server.context.span_id == 2**63


@pytest.mark.parametrize(("trace_id", "span_id"), [(0, 77), (88, 0)])
def test_zero_upstream_ids_are_replaced_and_the_span_reports_the_new_ones(
    baseplate, spans, trace_id, span_id
):
    # Zero is invalid to OpenTelemetry, so the span cannot keep it: what the
    # facade span reports (and propagates) must be what was exported.
    server, client = run_request(
        baseplate, TraceInfo.from_upstream(trace_id, 0, span_id, True, None)
    )
    exported = by_name(spans)
    assert server.id != 0
    assert server.trace_id != 0
    assert exported["handler"].context.span_id == server.id
    assert exported["handler"].context.trace_id == server.trace_id
    assert exported["client.call"].parent.span_id == server.id
    assert client.parent_id == server.id
    assert client.trace_id == server.trace_id


def test_tags_and_logs_become_attributes_and_events(baseplate, spans):
    run_request(baseplate)
    otel_client = by_name(spans)["client.call"]
    assert dict(otel_client.attributes) == {"peer": "db", "rows": 3, "odd": "{'a': 1}"}
    assert [(e.name, dict(e.attributes)) for e in otel_client.events] == [
        ("retry", {"payload": "{'attempt': 2}"}),
        ("plain", {}),
    ]


@pytest.mark.parametrize(
    ("sampled", "flags", "exported"),
    [(True, None, True), (False, None, False), (False, 1, True), (False, 0, False)],
)
def test_upstream_sampling_decision_is_honoured(baseplate, spans, sampled, flags, exported):
    run_request(baseplate, TraceInfo.from_upstream(1, 2, 3, sampled, flags))
    names = set(by_name(spans))
    assert names == ({"handler", "client.call", "op"} if exported else set())


def test_unsampled_spans_are_recorded_while_a_processor_reads_every_span(baseplate, spans):
    server = baseplate.make_server_span(
        SimpleNamespace(), "handler", TraceInfo.from_upstream(1, 2, 3, False, None)
    )
    with server:
        current = trace.get_current_span()
        assert current.is_recording()
        assert not current.get_span_context().trace_flags.sampled


class KeptSpans:
    """A route's processor that keeps the name of every span it is handed."""

    def __init__(self):
        self.names = []

    def on_start(self, span, parent_context=None):
        pass

    def on_end(self, span):
        self.names.append(span.name)

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def routed_server_span(route, name, span_id, sampled):
    """A server span from upstream ids (trace 1, parent 2), sent down ``route``."""
    provider.add_route(route)
    server = Baseplate().make_server_span(
        SimpleNamespace(), name, TraceInfo.from_upstream(1, 2, span_id, sampled, None)
    )
    server.export_route = route
    return server


def test_unsampled_spans_of_an_exporting_route_are_current_but_not_recorded(unread):
    kept = KeptSpans()
    route = ExportRoute(kept)
    server = routed_server_span(route, "handler", 3, sampled=False)
    with server:
        with server.make_child("call") as child:
            current = trace.get_current_span()
            assert current is child.otel_span
            assert not current.is_recording()
            context = current.get_span_context()
            assert (context.trace_id, context.span_id) == (1, child.id)
            assert not context.trace_flags.sampled
        assert not server.otel_span.is_recording()
        assert server.otel_span.get_span_context().span_id == 3
    assert kept.names == []
    # The same route's sampled requests are recorded and handed to it.
    with routed_server_span(route, "sampled", 4, sampled=True) as server:
        assert server.otel_span.is_recording()
    assert kept.names == ["sampled"]


def test_unsampled_spans_are_recorded_for_a_route_that_reads_them(unread):
    """Tail sampling decides on unsampled traces when they end: their spans are recorded."""
    kept = KeptSpans()
    server = routed_server_span(ExportRoute(kept, records_unsampled=True), "handler", 3, False)
    with server:
        with server.make_child("call") as child:
            assert child.otel_span.is_recording()
        assert server.otel_span.is_recording()
    assert kept.names == ["call", "handler"]


@pytest.mark.parametrize(("ratio", "exported"), [(0.0, 0), (1.0, 20)])
def test_undecided_roots_use_the_root_ratio(baseplate, spans, ratio, exported):
    sampler = provider.root_sampler()
    sampler.root_ratio = ratio
    for _ in range(20):
        with baseplate.make_server_span(SimpleNamespace(), "handler"):
            pass
    assert len(spans.get_finished_spans()) == exported


def test_undecided_upstream_with_parent_uses_the_root_ratio(baseplate, spans):
    provider.root_sampler().root_ratio = 0.0
    run_request(baseplate, TraceInfo.from_upstream(1, 2, 3, None, None))
    assert spans.get_finished_spans() == ()


def test_children_follow_the_server_span_decision(baseplate, spans):
    provider.root_sampler().root_ratio = 0.5
    for _ in range(40):
        run_request(baseplate)
    exported = spans.get_finished_spans()
    traces = {}
    for span in exported:
        traces.setdefault(span.context.trace_id, set()).add(span.name)
    assert 0 < len(traces) < 40
    assert all(names == {"handler", "client.call", "op"} for names in traces.values())


def test_bad_ratio_is_rejected(spans):
    with pytest.raises(ValueError, match="between 0 and 1"):
        provider.root_sampler().root_ratio = 1.5


# -- spans nothing reads -------------------------------------------------------


@pytest.fixture
def unread():
    """A fresh provider with no processor that reads spans (no tracing, no test exporter)."""
    provider.reset_state()
    yield
    provider.reset_state()


def test_spans_nothing_reads_are_not_recorded_but_keep_their_ids(unread):
    from baseplate.testing import RecordingObserver

    baseplate = Baseplate()
    recorder = RecordingObserver()
    baseplate.register(recorder)
    info = TraceInfo.from_upstream(1234, 2345, 3456, True, None)
    with baseplate.make_server_span(SimpleNamespace(), "handler", info) as server:
        with server.make_child("call") as child:
            assert not child.otel_span.is_recording()
            context = child.otel_span.get_span_context()
            assert (context.trace_id, context.span_id) == (1234, child.id)
            assert context.trace_flags.sampled
            assert trace.get_current_span() is child.otel_span
        # A library's own span under it is still a child the observers hear of.
        with trace.get_tracer("a-library").start_as_current_span("native") as native:
            assert native.get_span_context().trace_id == 1234
        assert not server.otel_span.is_recording()
    assert ("handler", "on_child_span_created", "call") in recorder.events
    assert ("handler", "on_child_span_created", "native") in recorder.events
    assert ("native", "on_finish", None) in recorder.events


def test_spans_are_recorded_once_a_processor_reads_them(unread):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    baseplate = Baseplate()
    with baseplate.make_server_span(SimpleNamespace(), "before") as before:
        assert not before.otel_span.is_recording()
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    with baseplate.make_server_span(SimpleNamespace(), "after") as after:
        assert after.otel_span.is_recording()
    assert [span.name for span in exporter.get_finished_spans()] == ["after"]


def test_child_ids_come_from_random_getrandbits(baseplate, monkeypatch):
    """Applications' tests (the original's among them) patch it to get known ids."""
    import random

    server = baseplate.make_server_span(SimpleNamespace(), "handler")
    monkeypatch.setattr(random, "getrandbits", lambda bits: 0xCAFE)
    assert server.make_child("call").id == 0xCAFE
    assert server.make_child("op", local=True, component_name="c").id == 0xCAFE
