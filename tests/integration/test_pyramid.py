"""The Pyramid integration: a server span per request of a real Pyramid app.

Most tests drive the WSGI app with WebTest; the last ones serve it with
gevent's ``pywsgi.WSGIServer`` on 127.0.0.1 and send real HTTP requests.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # WebOb 1.8 imports the cgi module, deprecated since Python 3.11.
    warnings.filterwarnings("ignore", "'cgi' is deprecated", DeprecationWarning)
    import webob  # noqa: F401

import base64
import http.client
import json
import re
import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import gevent
import pytest
import webtest
from gevent import pywsgi
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPFound, HTTPNotFound, HTTPServiceUnavailable
from pyramid.response import Response

from baseplate import error_reporter_from_config, metrics_client_from_config
from baseplate.context import ContextFactory
from baseplate.core import Baseplate, EdgeRequestContextFactory, ServerSpan, Span
from baseplate.diagnostics.tracing import TracingClient
from baseplate.integration.pyramid import (
    BaseplateConfigurator,
    ServerSpanInitialized,
    add_health_check,
)
from baseplate.testing import RecordingObserver
from tests import vectors
from tests._helpers import closed_afterwards
from tests.diagnostics.test_sentry import SentryStandIn

TIMER = r"[0-9]+(?:\.[0-9]+)?"
PEER = {"REMOTE_ADDR": "10.1.2.3"}
TRUSTED_SAMPLED = {"X-Trace": "1234", "X-Parent": "2345", "X-Span": "3456", "X-Sampled": "1"}


class ViewError(Exception):
    """What the failing views raise."""


def make_config(
    baseplate: Baseplate, trust: bool = False, edge_context_factory: Any = None
) -> Configurator:
    """A configurator with the integration and the routes the tests use."""
    config = Configurator()
    config.include(
        BaseplateConfigurator(
            baseplate, trust_trace_headers=trust, edge_context_factory=edge_context_factory
        ).includeme
    )
    config.add_route("example", "/example")
    config.add_view(describe_trace, route_name="example", renderer="json")
    return config


def describe_trace(request: Any) -> dict[str, Any]:
    """What the headers vectors compare (see their format string)."""
    raw = getattr(request, "raw_request_context", None)
    return {
        "trace_id": request.trace.trace_id,
        "parent_id": request.trace.parent_id,
        "span_id": request.trace.id,
        "sampled": request.trace.sampled,
        "flags": request.trace.flags,
        "name": request.trace.name,
        "raw_request_context": None if raw is None else raw.decode("latin-1"),
    }


def make_app(config: Configurator) -> webtest.TestApp:
    return webtest.TestApp(config.make_wsgi_app(), extra_environ=PEER)


def recording_baseplate() -> tuple[Baseplate, RecordingObserver]:
    baseplate = Baseplate()
    recorder = RecordingObserver()
    baseplate.register(recorder)
    return baseplate, recorder


def finish_events(recorder: RecordingObserver) -> list[tuple[Any, ...]]:
    return recorder.events_named("on_finish")


def tags(recorder: RecordingObserver, span_name: str) -> dict[str, Any]:
    return {
        event[2]: event[3] for event in recorder.events_named("on_set_tag") if event[0] == span_name
    }


# -- the headers vectors -------------------------------------------------------


@pytest.mark.parametrize("case", vectors.cases("headers"))
def test_headers_vectors(case):
    app = make_app(make_config(Baseplate(), trust=case["trust"]))
    reported = app.get("/example", headers=case["headers"]).json
    expected = dict(case["expected"])
    if expected.pop("new_trace", False):
        assert 0 <= reported["trace_id"] < 2**64
        assert reported["span_id"] == reported["trace_id"]
        assert reported["parent_id"] is None
        assert reported["sampled"] is None
        assert reported["flags"] is None
        assert reported["trace_id"] not in {
            int(value) for value in case["headers"].values() if value.isdigit()
        }
        assert {key: reported[key] for key in expected} == expected
    else:
        assert reported == expected


def test_new_traces_get_fresh_ids_for_every_request():
    app = make_app(make_config(Baseplate()))
    trace_ids = {app.get("/example", headers=TRUSTED_SAMPLED).json["trace_id"] for _ in range(5)}
    assert len(trace_ids) == 5


# -- edge request context ------------------------------------------------------


class FakeEdgeContextFactory:
    """Records what it is given; what it makes is a tuple holding the bytes."""

    def __init__(self) -> None:
        self.given: list[bytes | None] = []

    def from_upstream(self, edge_header: bytes | None) -> Any:
        self.given.append(edge_header)
        return ("edge", edge_header)


def edge_config(factory: FakeEdgeContextFactory, trust: bool) -> Configurator:
    config = make_config(Baseplate(), trust=trust, edge_context_factory=factory)
    config.add_route("edge", "/edge")

    def view(request: Any) -> dict[str, Any]:
        context = getattr(request, "request_context", None)
        raw = getattr(request, "raw_request_context", None)
        return {
            "request_context": None if context is None else [context[0], context[1].hex()],
            "raw_request_context": None if raw is None else raw.hex(),
        }

    config.add_view(view, route_name="edge", renderer="json")
    return config


def test_edge_context_factory_gets_the_header_bytes_when_trusted():
    factory = FakeEdgeContextFactory()
    app = make_app(edge_config(factory, trust=True))
    # WSGI decodes header bytes as latin-1; the factory gets the bytes sent.
    reported = app.get("/edge", headers={"X-Edge-Request": "caf\xe9\x00\x01"}).json
    assert factory.given == [b"caf\xe9\x00\x01"]
    assert reported == {
        "request_context": ["edge", b"caf\xe9\x00\x01".hex()],
        "raw_request_context": b"caf\xe9\x00\x01".hex(),
    }


def test_real_edge_context_factory():
    # From spec/wire/edge.md: loid_id="t2_1", loid_created_ms=1, session_id="s".
    header = base64.b64decode(
        "DAABCwABAAAABHQyXzEKAAIAAAAAAAAAAQAMAAILAAEAAAABcwAMAAQADAAFAAwABgAMAAcAAA=="
    )
    # Only the token needs the secrets store; this request carries none.
    factory = EdgeRequestContextFactory(SimpleNamespace())
    config = make_config(Baseplate(), trust=True, edge_context_factory=factory)
    config.add_route("edge", "/edge")

    def view(request: Any) -> dict[str, Any]:
        edge = request.request_context
        return {
            "loid": edge.user.loid,
            "created": edge.user.cookie_created_ms,
            "session": edge.session.id,
            "raw": request.raw_request_context.hex(),
        }

    config.add_view(view, route_name="edge", renderer="json")
    reported = make_app(config).get("/edge", headers={"X-Edge-Request": header.decode("latin-1")})
    assert reported.json == {"loid": "t2_1", "created": 1, "session": "s", "raw": header.hex()}


def test_edge_context_survives_invalid_trace_headers():
    factory = FakeEdgeContextFactory()
    app = make_app(edge_config(factory, trust=True))
    reported = app.get("/edge", headers={"X-Trace": "abc", "X-Edge-Request": "payload"}).json
    assert factory.given == [b"payload"]
    assert reported["raw_request_context"] == b"payload".hex()


def test_edge_context_factory_unused_when_untrusted_or_absent():
    factory = FakeEdgeContextFactory()
    untrusted = make_app(edge_config(factory, trust=False))
    assert untrusted.get("/edge", headers={"X-Edge-Request": "payload"}).json == {
        "request_context": None,
        "raw_request_context": None,
    }
    trusted = make_app(edge_config(factory, trust=True))
    assert trusted.get("/edge").json == {"request_context": None, "raw_request_context": None}
    assert factory.given == []


# -- the span and the context ------------------------------------------------------


def test_observer_event_sequence():
    baseplate, recorder = recording_baseplate()
    app = make_app(make_config(baseplate))
    app.get("/example?x=1")
    assert recorder.events == [
        ("example", "on_server_span_created"),
        ("example", "on_start"),
        ("example", "on_set_tag", "http.url", "http://localhost/example?x=1"),
        ("example", "on_set_tag", "http.method", "GET"),
        ("example", "on_set_tag", "peer.ipv4", "10.1.2.3"),
        ("example", "on_set_tag", "http.status_code", 200),
        ("example", "on_finish", None),
    ]


class CounterFactory(ContextFactory):
    """Makes a new dict per request, naming the span it was made for."""

    def make_object_for_context(self, name: str, span: Span) -> Any:
        return {"attribute": name, "span": span.name}


def test_request_is_the_context():
    baseplate, recorder = recording_baseplate()
    baseplate.add_to_context("thing", CounterFactory())
    config = make_config(baseplate)
    config.add_route("context", "/context")
    seen: dict[str, Any] = {}

    def view(request: Any) -> Response:
        seen["trace"] = request.trace
        seen["thing"] = request.thing
        seen["current"] = trace.get_current_span()
        with request.trace.make_child("work", local=True, component_name="handler") as child:
            seen["child_thing"] = child.context.thing
            seen["child_trace"] = child.context.trace
        seen["thing_after_child"] = request.thing
        return Response("ok")

    config.add_view(view, route_name="context")
    make_app(config).get("/context")

    assert isinstance(seen["trace"], ServerSpan)
    assert seen["trace"].name == "context"
    assert seen["current"] is seen["trace"].otel_span
    assert seen["thing"] == {"attribute": "thing", "span": "context"}
    # The local span has an object of its own, made for it; the request's is unchanged.
    assert seen["child_thing"] == {"attribute": "thing", "span": "work"}
    assert seen["thing_after_child"] is seen["thing"]
    assert seen["child_trace"].name == "work"
    assert ("context", "on_child_span_created", "work") in recorder.events
    # Nothing stays current once the request is over.
    assert not trace.get_current_span().get_span_context().is_valid


def test_server_span_initialized_is_fired_with_the_started_span():
    baseplate, recorder = recording_baseplate()
    baseplate.add_to_context("thing", CounterFactory())
    config = make_config(baseplate)
    fired: list[tuple[Any, ...]] = []

    def subscriber(event: ServerSpanInitialized) -> None:
        request = event.request
        fired.append((request.trace.name, request.thing["span"], list(recorder.events)))

    config.add_subscriber(subscriber, ServerSpanInitialized)
    make_app(config).get("/example")

    [(name, thing_span, events_so_far)] = fired
    assert (name, thing_span) == ("example", "example")
    assert ("example", "on_start") in events_so_far
    assert ("example", "on_set_tag", "http.method", "GET") in events_so_far
    assert not any(event[1] == "on_finish" for event in events_so_far)


def test_unmatched_route_has_no_span():
    baseplate, recorder = recording_baseplate()
    app = make_app(make_config(baseplate))
    app.get("/nowhere", status=404)
    assert recorder.events == []


def test_matched_route_without_a_view_finishes_with_404():
    baseplate, recorder = recording_baseplate()
    config = make_config(baseplate)
    config.add_route("post_only", "/post-only")
    config.add_view(
        lambda request: Response("posted"), route_name="post_only", request_method="POST"
    )
    make_app(config).get("/post-only", status=404)
    assert finish_events(recorder) == [("post_only", "on_finish", None)]
    assert tags(recorder, "post_only")["http.status_code"] == 404


# -- failures ----------------------------------------------------------------------


def failing_config(baseplate: Baseplate) -> Configurator:
    config = make_config(baseplate)

    def fail(request: Any) -> Response:
        raise ViewError("it broke")

    def redirect(request: Any) -> Response:
        raise HTTPFound(location="/example")

    def not_found(request: Any) -> Response:
        raise HTTPNotFound()

    def unavailable(request: Any) -> Response:
        raise HTTPServiceUnavailable()

    for name, view in [
        ("fail", fail),
        ("redirect", redirect),
        ("not_found", not_found),
        ("unavailable", unavailable),
    ]:
        config.add_route(name, f"/{name}")
        config.add_view(view, route_name=name)
    return config


def test_unhandled_exception_fails_the_span_and_is_reraised():
    baseplate, recorder = recording_baseplate()
    app = make_app(failing_config(baseplate))
    with pytest.raises(ViewError, match="it broke"):
        app.get("/fail")
    [(name, _, exc_info)] = finish_events(recorder)
    assert name == "fail"
    assert exc_info[0] is ViewError
    assert "http.status_code" not in tags(recorder, "fail")
    assert not trace.get_current_span().get_span_context().is_valid


def test_exception_handled_by_an_exception_view_still_fails_the_span():
    baseplate, recorder = recording_baseplate()
    config = failing_config(baseplate)

    def error_view(exc: ViewError, request: Any) -> Response:
        return Response(f"sorry: {exc}", status=500)

    config.add_exception_view(error_view, context=ViewError)
    response = make_app(config).get("/fail", status=500)
    assert response.text == "sorry: it broke"
    [(name, _, exc_info)] = finish_events(recorder)
    assert (name, exc_info[0]) == ("fail", ViewError)
    assert tags(recorder, "fail")["http.status_code"] == 500


@pytest.mark.parametrize(
    ("path", "status", "failed"),
    [("/redirect", 302, False), ("/not_found", 404, False), ("/unavailable", 503, True)],
)
def test_http_exceptions_fail_the_span_only_from_500(path, status, failed):
    baseplate, recorder = recording_baseplate()
    make_app(failing_config(baseplate)).get(path, status=status)
    [(_, _, exc_info)] = finish_events(recorder)
    assert (exc_info is not None) is failed
    assert tags(recorder, path[1:])["http.status_code"] == status


def test_failure_is_reported_to_sentry(spans):
    sentry = SentryStandIn()
    reporter = error_reporter_from_config({"sentry.dsn": sentry.dsn}, __name__)
    try:
        baseplate = Baseplate()
        baseplate.configure_error_reporting(reporter)
        config = failing_config(baseplate)
        config.add_exception_view(
            lambda exc, request: Response("sorry", status=500), context=ViewError
        )
        make_app(config).get("/fail", status=500)
        reporter.flush(timeout=10)
        with sentry.lock:
            events = list(sentry.events)
    finally:
        reporter.close(timeout=10)
        sentry.close()
    [event] = events
    exception = event["exception"]["values"][-1]
    assert (exception["type"], exception["value"]) == ("ViewError", "it broke")
    assert event["transaction"] == "fail"


# -- streaming responses ---------------------------------------------------------------


def streaming_config(
    baseplate: Baseplate, fail_after: int | None = None, trust: bool = False
) -> Configurator:
    config = make_config(baseplate, trust=trust)
    config.add_route("stream", "/stream")

    def chunks() -> Iterator[bytes]:
        for number in range(3):
            if fail_after is not None and number == fail_after:
                raise ViewError("stream broke")
            yield b"chunk%d\n" % number

    def view(request: Any) -> Response:
        return Response(app_iter=chunks(), content_type="text/plain", content_length=21)

    config.add_view(view, route_name="stream")
    return config


def call_wsgi(app: Callable[..., Any], path: str) -> tuple[list[Any], Any]:
    """Call the WSGI app directly, returning (start_response args, the body iterable)."""
    started: list[Any] = []
    environ = webtest.TestRequest.blank(path, environ=PEER).environ
    body = app(environ, lambda status, headers, exc_info=None: started.append((status, headers)))
    return started, body


def test_streaming_response_finishes_when_the_body_is_consumed():
    baseplate, recorder = recording_baseplate()
    started, body = call_wsgi(streaming_config(baseplate).make_wsgi_app(), "/stream")
    [(status, headers)] = started
    assert status == "200 OK"
    assert ("Content-Length", "21") in headers
    assert finish_events(recorder) == []
    assert tags(recorder, "stream")["http.status_code"] == 200

    iterator = iter(body)
    assert next(iterator) == b"chunk0\n"
    assert finish_events(recorder) == []
    assert b"".join(iterator) == b"chunk1\nchunk2\n"
    assert finish_events(recorder) == [("stream", "on_finish", None)]
    body.close()
    assert finish_events(recorder) == [("stream", "on_finish", None)]
    assert not trace.get_current_span().get_span_context().is_valid


def test_streaming_response_finishes_when_closed_early():
    baseplate, recorder = recording_baseplate()
    _, body = call_wsgi(streaming_config(baseplate).make_wsgi_app(), "/stream")
    assert next(iter(body)) == b"chunk0\n"
    body.close()
    assert finish_events(recorder) == [("stream", "on_finish", None)]


def test_streaming_body_failure_fails_the_span():
    baseplate, recorder = recording_baseplate()
    _, body = call_wsgi(streaming_config(baseplate, fail_after=1).make_wsgi_app(), "/stream")
    iterator = iter(body)
    assert next(iterator) == b"chunk0\n"
    with pytest.raises(ViewError):
        next(iterator)
    body.close()
    [(_, _, exc_info)] = finish_events(recorder)
    assert exc_info[0] is ViewError


def test_streaming_response_through_webtest():
    baseplate, recorder = recording_baseplate()
    response = make_app(streaming_config(baseplate)).get("/stream")
    assert response.text == "chunk0\nchunk1\nchunk2\n"
    assert finish_events(recorder) == [("stream", "on_finish", None)]


def test_head_request_of_a_streaming_response_finishes():
    baseplate, recorder = recording_baseplate()
    make_app(streaming_config(baseplate)).head("/stream")
    assert finish_events(recorder) == [("stream", "on_finish", None)]


# -- metrics and exported spans -------------------------------------------------------


def metrics_baseplate(statsd: Any) -> Baseplate:
    baseplate = Baseplate()
    baseplate.configure_metrics(
        metrics_client_from_config(
            {"metrics.namespace": "svc", "metrics.endpoint": statsd.endpoint}
        )
    )
    return baseplate


def test_metrics_datagram_per_request(statsd):
    app = make_app(failing_config(metrics_baseplate(statsd)))
    app.get("/example")
    [datagram] = statsd.received()
    lines = datagram.decode().split("\n")
    assert re.fullmatch(rf"svc\.server\.example:{TIMER}\|ms", lines[0])
    assert lines[1:] == ["svc.server.example.success:1|c"]

    with pytest.raises(ViewError):
        app.get("/fail")
    [datagram] = statsd.received()
    lines = datagram.decode().split("\n")
    assert re.fullmatch(rf"svc\.server\.fail:{TIMER}\|ms", lines[0])
    assert lines[1:] == ["svc.server.fail.failure:1|c"]


def test_context_metrics_batch_is_on_the_request(statsd):
    config = make_config(metrics_baseplate(statsd))
    config.add_route("counted", "/counted")

    def view(request: Any) -> Response:
        request.metrics.counter("things.done").increment()
        return Response("ok")

    config.add_view(view, route_name="counted")
    make_app(config).get("/counted")
    [datagram] = statsd.received()
    assert "svc.things.done:1|c" in datagram.decode().split("\n")


def test_exported_server_span(spans):
    app = make_app(make_config(Baseplate(), trust=True))
    app.get("/example?q=1", headers=TRUSTED_SAMPLED)
    [span] = spans.get_finished_spans()
    assert span.name == "example"
    assert span.kind is SpanKind.SERVER
    assert span.context.trace_id == 1234
    assert span.context.span_id == 3456
    assert span.parent is not None
    assert span.parent.span_id == 2345
    assert span.parent.is_remote
    assert dict(span.attributes) == {
        "http.url": "http://localhost/example?q=1",
        "http.method": "GET",
        "peer.ipv4": "10.1.2.3",
        "http.status_code": 200,
    }
    assert span.status.status_code is not StatusCode.ERROR


W3C_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
W3C_PARENT = 0xB7AD6B7169203331
TRACEPARENT = f"00-{W3C_TRACE_ID:032x}-{W3C_PARENT:016x}-01"


def test_traceparent_alone_continues_the_trace_as_a_child(spans):
    app = make_app(make_config(Baseplate(), trust=True))
    seen = app.get("/example", headers={"traceparent": TRACEPARENT, "tracestate": "vendor=x"})
    [span] = spans.get_finished_spans()
    assert span.context.trace_id == W3C_TRACE_ID  # all 128 bits, in the export
    assert span.parent is not None
    assert span.parent.span_id == W3C_PARENT
    assert span.parent.is_remote
    assert span.context.span_id != W3C_PARENT
    assert span.context.trace_state.get("vendor") == "x"
    # The facade carries the low 64 bits, which is what Baseplate headers carry.
    assert seen.json["trace_id"] == W3C_TRACE_ID & (2**64 - 1)
    assert seen.json["parent_id"] == W3C_PARENT
    assert seen.json["span_id"] == span.context.span_id
    assert seen.json["sampled"] is True


def test_traceparent_naming_the_same_span_as_baseplate_headers_keeps_128_bits(spans):
    app = make_app(make_config(Baseplate(), trust=True))
    headers = {
        "traceparent": TRACEPARENT,
        "X-Trace": str(W3C_TRACE_ID & (2**64 - 1)),
        "X-Span": str(W3C_PARENT),
        "X-Parent": "77",
        "X-Sampled": "1",
    }
    app.get("/example", headers=headers)
    [span] = spans.get_finished_spans()
    assert span.context.trace_id == W3C_TRACE_ID
    assert span.parent is not None
    assert span.parent.span_id == W3C_PARENT


def test_baseplate_headers_win_over_a_disagreeing_traceparent(spans):
    app = make_app(make_config(Baseplate(), trust=True))
    app.get("/example", headers={**TRUSTED_SAMPLED, "traceparent": TRACEPARENT})
    [span] = spans.get_finished_spans()
    assert span.context.trace_id == 1234
    assert span.context.span_id == 3456
    assert span.parent is not None
    assert span.parent.span_id == 2345


def test_traceparent_is_ignored_unless_trusted(spans):
    app = make_app(make_config(Baseplate(), trust=False))
    app.get("/example", headers={"traceparent": TRACEPARENT})
    [span] = spans.get_finished_spans()
    assert span.parent is None
    assert span.context.trace_id != W3C_TRACE_ID


def test_malformed_traceparent_starts_a_new_trace(spans):
    app = make_app(make_config(Baseplate(), trust=True))
    app.get("/example", headers={"traceparent": "00-zz-yy-01"})
    [span] = spans.get_finished_spans()
    assert span.parent is None


def test_exported_failed_span(spans):
    app = make_app(failing_config(Baseplate()))
    with pytest.raises(ViewError):
        app.get("/fail", headers={"X-Sampled": "1"})  # untrusted: a new, root trace
    [span] = spans.get_finished_spans()
    assert span.parent is None
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


# -- health checks ----------------------------------------------------------------------


def test_health_check_directive():
    baseplate, recorder = recording_baseplate()
    config = make_config(baseplate)
    config.add_health_check()
    app = make_app(config)
    response = app.get("/health")
    assert (response.status_int, response.text, response.content_type) == (200, "OK", "text/plain")
    assert app.head("/health").status_int == 200
    assert finish_events(recorder)[-1] == ("health", "on_finish", None)


def test_health_check_with_a_checker():
    state = {"healthy": True}

    def checker(request: Any) -> bool:
        assert request.thing["span"] == "probe"
        if state["healthy"] is None:
            raise ConnectionError("database is gone")
        return state["healthy"]

    baseplate = Baseplate()
    baseplate.add_to_context("thing", CounterFactory())
    config = make_config(baseplate)
    add_health_check(config, checker, path="/probe", route_name="probe")
    app = make_app(config)
    assert app.get("/probe").text == "OK"
    state["healthy"] = False
    assert app.get("/probe", status=503).text == "unhealthy: the health check returned false"
    state["healthy"] = None
    assert app.get("/probe", status=503).text == "unhealthy: ConnectionError: database is gone"


def traced_and_timed_baseplate(statsd: Any) -> tuple[Baseplate, TracingClient, Any]:
    """A Baseplate sampling every trace into an in-memory exporter, with metrics."""
    exporter = InMemorySpanExporter()
    client = TracingClient("svc", 1.0, exporter)
    baseplate = metrics_baseplate(statsd)
    baseplate.configure_tracing(client)
    return baseplate, client, exporter


def health_check_app(baseplate: Baseplate, **options: Any) -> webtest.TestApp:
    config = Configurator()
    config.include(BaseplateConfigurator(baseplate, **options).includeme)
    config.add_health_check()
    config.add_route("example", "/example")
    config.add_view(describe_trace, route_name="example", renderer="json")
    return make_app(config)


def test_health_checks_are_neither_traced_nor_timed_by_default(statsd, spans):
    baseplate, client, exporter = traced_and_timed_baseplate(statsd)
    recorder = RecordingObserver()
    baseplate.register(recorder)
    app = health_check_app(baseplate)

    assert app.get("/health").text == "OK"
    assert app.get("/example").status_int == 200
    assert client.flush()
    assert [span.name for span in exporter.get_finished_spans()] == ["example"]
    # Unsampled, so not even the provider's own processors record it.
    assert [span.name for span in spans.get_finished_spans()] == ["example"]
    [datagram] = statsd.received()  # the example request's alone
    assert "health" not in datagram.decode()
    # The other observers still see the health check.
    assert ("health", "on_finish", None) in finish_events(recorder)


def test_health_checks_are_traced_and_timed_when_asked(statsd):
    baseplate, client, exporter = traced_and_timed_baseplate(statsd)
    app = health_check_app(baseplate, observe_health_checks=True)

    assert app.get("/health").text == "OK"
    assert client.flush()
    assert [span.name for span in exporter.get_finished_spans()] == ["health"]
    [datagram] = statsd.received()
    assert datagram.decode().split("\n")[1:] == ["svc.server.health.success:1|c"]


# -- a real gevent WSGI server ----------------------------------------------------------


class GeventServer:
    """The app on gevent's pywsgi server in this thread; clients run in real threads."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.server = pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
        self.server.start()
        self.port = self.server.server_port

    def run_clients(self, *clients: Callable[[int], Any]) -> list[Any]:
        """Run each client(port) in its own thread while the server serves; their results."""
        results: list[Any] = [None] * len(clients)
        errors: list[BaseException] = []

        def run(index: int, client: Callable[[int], Any]) -> None:
            try:
                results[index] = client(self.port)
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(index, client), daemon=True)
            for index, client in enumerate(clients)
        ]
        for thread in threads:
            thread.start()
        with gevent.Timeout(30):
            while any(thread.is_alive() for thread in threads):
                gevent.sleep(0.005)
        if errors:
            raise errors[0]
        return results

    def stop(self) -> None:
        self.server.stop(timeout=5)


def http_get(path: str, headers: dict[str, str] | None = None) -> Callable[[int], Any]:
    def client(port: int) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    return client


@pytest.fixture
def gevent_server() -> Iterator[Callable[[Any], GeventServer]]:
    with closed_afterwards(GeventServer, close=GeventServer.stop) as serve:
        yield serve


def test_real_http_requests(gevent_server, statsd, spans):
    baseplate = metrics_baseplate(statsd)
    recorder = RecordingObserver()
    baseplate.register(recorder)
    server = gevent_server(streaming_config(baseplate, trust=True).make_wsgi_app())

    [(status, _, body)] = server.run_clients(http_get("/example", TRUSTED_SAMPLED))
    assert status == 200
    assert json.loads(body) == {
        "trace_id": 1234,
        "parent_id": 2345,
        "span_id": 3456,
        "sampled": True,
        "flags": None,
        "name": "example",
        "raw_request_context": None,
    }
    [(stream_status, stream_headers, stream_body)] = server.run_clients(
        http_get("/stream", TRUSTED_SAMPLED)
    )
    assert (stream_status, stream_body) == (200, b"chunk0\nchunk1\nchunk2\n")
    assert stream_headers["Content-Length"] == "21"
    [(missing_status, _, _)] = server.run_clients(http_get("/nowhere"))
    assert missing_status == 404

    datagrams = [datagram.decode() for datagram in statsd.received()]
    assert len(datagrams) == 2
    assert datagrams[0].endswith("\nsvc.server.example.success:1|c")
    assert datagrams[1].endswith("\nsvc.server.stream.success:1|c")

    exported = spans.get_finished_spans()
    assert [span.name for span in exported] == ["example", "stream"]
    for span in exported:
        assert span.kind is SpanKind.SERVER
        assert span.attributes["peer.ipv4"] == "127.0.0.1"
        assert span.attributes["http.status_code"] == 200
        assert span.parent.span_id == 2345
    assert [event[0] for event in finish_events(recorder)] == ["example", "stream"]


def test_concurrent_requests_do_not_share_spans(gevent_server):
    config = make_config(Baseplate(), trust=True)
    config.add_route("slow", "/slow")

    def slow(request: Any) -> dict[str, Any]:
        before = request.trace.trace_id
        gevent.sleep(0.05)  # let the other requests run in between
        current = trace.get_current_span().get_span_context()
        return {"before": before, "after": request.trace.trace_id, "current": current.trace_id}

    config.add_view(slow, route_name="slow", renderer="json")
    server = gevent_server(config.make_wsgi_app())
    clients = [
        http_get("/slow", {"X-Trace": str(100 + n), "X-Parent": "1", "X-Span": str(200 + n)})
        for n in range(8)
    ]
    results = server.run_clients(*clients)
    for n, (status, _, body) in enumerate(results):
        assert status == 200
        assert json.loads(body) == {"before": 100 + n, "after": 100 + n, "current": 100 + n}
