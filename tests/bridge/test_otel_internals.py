"""The private parts of OpenTelemetry the bridge relies on are all still there, and still work.

If an upgrade removes or changes one of them, these tests fail naming it:
see :mod:`bridge._otel_internals` for what each is for.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.zipkin.node_endpoint import NodeEndpoint
from opentelemetry.instrumentation.utils import (
    suppress_http_instrumentation,
    suppress_instrumentation,
)
from opentelemetry.sdk.trace import Event, SpanLimits, TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext

from bridge import _otel_internals as internals


def test_every_hook_is_present():
    assert internals.missing_hooks() == [], "OpenTelemetry no longer has these hooks"


def test_span_key_is_where_a_context_keeps_its_span():
    span = NonRecordingSpan(SpanContext(1, 2, False))
    assert trace.set_span_in_context(span).get(internals.SPAN_KEY) is span


def test_suppression_keys_are_those_instrumentations_check():
    general, http = internals.SUPPRESSION_KEYS
    with suppress_instrumentation():
        assert otel_context.get_current().get(general) is True
    with suppress_http_instrumentation():
        assert otel_context.get_current().get(http) is True


def test_the_runtime_context_variable_holds_the_current_context():
    variable = internals.runtime_context_variable()
    assert variable is not None, "opentelemetry.context._RUNTIME_CONTEXT._current_context"
    token = otel_context.attach(otel_context.set_value("probe", 1))
    try:
        assert variable.get() is otel_context.get_current()
    finally:
        otel_context.detach(token)


def test_tracers_made_by_a_provider_are_found():
    provider = TracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("probe")
    found = internals.tracers_made_by(provider)
    assert found is not None, "TracerProvider._tracers"
    tracers, lock = found
    assert tracer in tracers.values()
    with lock:
        pass


def test_the_zipkin_encoder_hook_adjusts_each_span():
    seen: list[Any] = []

    def adjust(encoded: dict[str, Any], span: Any) -> None:
        seen.append(span)
        encoded["adjusted"] = True

    encoder = internals.zipkin_v2_encoder(128, adjust)
    provider = TracerProvider(shutdown_on_exit=False)
    span = provider.get_tracer("probe").start_span("one")
    span.end()
    [encoded] = json.loads(encoder.serialize([span], NodeEndpoint()))
    assert encoded["adjusted"] is True
    assert seen == [span]


def test_number_attributes_reach_the_span_as_set_attributes_would():
    provider = TracerProvider(shutdown_on_exit=False)
    span = provider.get_tracer(__name__).start_span("request")
    span.set_attribute("already", "there")
    internals.add_number_attributes(span, {"runtime.yields": 3, "runtime.cpu_time_ms": 1.5})
    span.end()
    assert dict(span.attributes) == {
        "already": "there",
        "runtime.yields": 3,
        "runtime.cpu_time_ms": 1.5,
    }


def test_number_attributes_respect_the_span_attribute_limit():
    provider = TracerProvider(shutdown_on_exit=False, span_limits=SpanLimits(max_span_attributes=2))
    span = provider.get_tracer(__name__).start_span("request")
    span.set_attribute("first", 1)
    internals.add_number_attributes(span, {"second": 2, "third": 3})
    span.end()
    assert len(span.attributes) == 2  # the SDK's own eviction applied, not an overflow


def test_an_event_object_reaches_the_span_as_it_is():
    provider = TracerProvider(shutdown_on_exit=False)
    span = provider.get_tracer(__name__).start_span("request")
    event = Event("made elsewhere", {"key": "value"})
    assert internals.add_event(span, event) is True
    span.end()
    assert span.events == (event,)
    assert span.events[0] is event


def test_an_ended_span_keeps_no_new_event_object():
    provider = TracerProvider(shutdown_on_exit=False)
    span = provider.get_tracer(__name__).start_span("request")
    span.end()
    internals.add_event(span, Event("too late"))
    assert span.events == ()


def test_a_spans_limits_are_those_of_its_provider():
    limits = SpanLimits(max_event_attributes=2, max_attribute_length=10)
    provider = TracerProvider(shutdown_on_exit=False, span_limits=limits)
    span = provider.get_tracer(__name__).start_span("request")
    assert internals.span_limits(span) is limits
    assert internals.span_limits(NonRecordingSpan(SpanContext(1, 2, False))) is None
