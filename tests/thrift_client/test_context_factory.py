"""``baseplate.context.thrift``: real calls to a real server, each a child span."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from baseplate import config, metrics
from baseplate.context.thrift import ThriftClientProxy, ThriftContextFactory
from baseplate.core import Baseplate, BaseplateObserver, ServerSpanObserver, TraceInfo
from baseplate.testing import RecordingObserver


class ChildSpans(BaseplateObserver):
    """Keeps every client span made under a server span, to compare ids."""

    def __init__(self):
        self.spans = []

    def on_server_span_created(self, context, server_span):
        spans = self.spans

        class Collect(ServerSpanObserver):
            def on_child_span_created(self, span):
                spans.append(span)

        server_span.register(Collect())


@pytest.fixture
def pool(server, make_pool):
    return make_pool(server.endpoint)


@pytest.fixture
def recorder():
    return RecordingObserver()


@pytest.fixture
def children():
    return ChildSpans()


@pytest.fixture
def baseplate(pool, generated, recorder, children):
    baseplate = Baseplate()
    baseplate.register(recorder)
    baseplate.register(children)
    baseplate.add_to_context("example", ThriftContextFactory(pool, generated.ExampleService.Client))
    return baseplate


def upstream(sampled=True, flags=None):
    return TraceInfo.from_upstream(
        trace_id=1234, parent_id=5678, span_id=9012, sampled=sampled, flags=flags
    )


def expected_headers(span, extra=None):
    headers = {
        b"Trace": str(span.trace_id).encode(),
        b"Parent": str(span.parent_id).encode(),
        b"Span": str(span.id).encode(),
    }
    headers.update(extra or {})
    return headers


# -- the proxy --------------------------------------------------------------------


def test_the_proxy_has_the_clients_interface(baseplate, server, generated):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        proxy = context.example
        assert isinstance(proxy, ThriftClientProxy)
        assert context.example.echo("hello") == "hello"
    service_methods = {"echo", "sleep", "fail_declared", "fail_undeclared", "drop_connection"}
    assert service_methods <= set(dir(proxy))
    assert not any(name.startswith(("send_", "recv_")) for name in dir(proxy))
    assert inspect.getdoc(proxy.echo) == inspect.getdoc(generated.ExampleService.Iface.echo)
    assert server.methods() == ["echo"]


def test_client_class_without_service_methods_is_rejected(pool):
    with pytest.raises(TypeError, match="Thrift-generated client"):
        ThriftContextFactory(pool, object)


# -- headers ------------------------------------------------------------------------


def test_headers_are_those_of_each_child_span(baseplate, server, children):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler", upstream(sampled=True)) as server_span:
        context.example.echo("one")
        context.example.echo("two")

    assert [span.name for span in children.spans] == ["example.echo", "example.echo"]
    first, second = children.spans
    assert first.id != second.id
    for span, call in zip(children.spans, server.calls, strict=True):
        assert span.trace_id == 1234
        assert span.parent_id == server_span.id == 9012
        assert call.headers == expected_headers(span, {b"Sampled": b"1"})


def test_a_wide_trace_also_sends_traceparent(baseplate, server, children):
    """A trace an OpenTelemetry caller started keeps its 128-bit id downstream."""
    wide_trace = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    caller = SpanContext(wide_trace, 0x77, is_remote=True, trace_flags=TraceFlags(1))
    info = TraceInfo.from_upstream(wide_trace & (2**64 - 1), 0x77, 0x99, True, None)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler", info, remote_parent=caller):
        context.example.echo("x")
    (span,) = children.spans
    assert span.trace_id == wide_trace & (2**64 - 1)
    traceparent = f"00-{wide_trace:032x}-{span.id:016x}-01".encode()
    assert server.calls[0].headers == expected_headers(
        span, {b"Sampled": b"1", b"traceparent": traceparent}
    )


def test_not_sampled(baseplate, server, children):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler", upstream(sampled=False)):
        context.example.echo("x")
    (span,) = children.spans
    assert server.calls[0].headers == expected_headers(span, {b"Sampled": b"0"})


def test_no_sampled_header_when_the_decision_is_unknown(baseplate, server, children):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler") as server_span:
        assert server_span.sampled is None  # a new trace, no upstream decision
        context.example.echo("x")
    (span,) = children.spans
    assert b"Sampled" not in server.calls[0].headers
    assert server.calls[0].headers == expected_headers(span)


def test_flags_are_sent_when_set(baseplate, server, children):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler", upstream(flags=1)):
        context.example.echo("x")
    with baseplate.make_server_span(context, "handler", upstream(flags=0)):
        context.example.echo("x")
    with_flags, zero_flags = server.calls
    first_span = children.spans[0]
    assert with_flags.headers == expected_headers(first_span, {b"Sampled": b"1", b"Flags": b"1"})
    assert b"Flags" not in zero_flags.headers


def test_edge_request_is_forwarded(baseplate, server):
    context = SimpleNamespace(raw_request_context=b"\x0c\x00\x01edge payload\x00")
    with baseplate.make_server_span(context, "handler"):
        context.example.echo("x")
    assert server.calls[0].headers[b"Edge-Request"] == b"\x0c\x00\x01edge payload\x00"


@pytest.mark.parametrize("raw", [None, b""])
def test_no_edge_request_without_one(baseplate, server, raw):
    context = SimpleNamespace(raw_request_context=raw)
    with baseplate.make_server_span(context, "handler"):
        context.example.echo("x")
    with baseplate.make_server_span(SimpleNamespace(), "handler") as server_span:
        server_span.context.example.echo("x")
    assert [b"Edge-Request" in call.headers for call in server.calls] == [False, False]


def test_no_b3_headers(baseplate, server):
    context = SimpleNamespace(raw_request_context=b"e")
    with baseplate.make_server_span(context, "handler", upstream(flags=1)):
        context.example.echo("x")
    assert set(server.calls[0].headers) == {
        b"Trace",
        b"Parent",
        b"Span",
        b"Sampled",
        b"Flags",
        b"Edge-Request",
    }


def test_calls_in_a_local_span_are_children_of_the_local_span(baseplate, server, spans):
    """As in the original: a local span's context has a client of its own."""
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler") as server_span:
        with server_span.make_child("work", local=True, component_name="jobs") as local:
            local.context.example.echo("x")
        context.example.echo("y")
    assert server.calls[0].headers[b"Parent"] == str(local.id).encode()
    assert server.calls[1].headers[b"Parent"] == str(server_span.id).encode()


# -- spans and metrics ----------------------------------------------------------------


def test_a_call_is_a_client_span_and_a_timer(baseplate, statsd, recorder, spans):
    baseplate.configure_metrics(metrics.make_client("svc", config.Endpoint(statsd.endpoint)))
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler", upstream()):
        context.example.echo("x")
        context.example.echo("y")

    assert [event for event in recorder.events if event[0] == "example.echo"] == [
        ("example.echo", "on_start"),
        ("example.echo", "on_finish", None),
    ] * 2
    (packet,) = statsd.received()
    lines = packet.decode().split("\n")
    assert sum(line.startswith("svc.clients.example.echo:") for line in lines) == 2
    assert "svc.clients.example.echo.success:2|c" in lines
    assert "svc.server.handler.success:1|c" in lines
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert finished["example.echo"].kind is SpanKind.CLIENT
    assert finished["example.echo"].parent.span_id == 9012


def test_declared_exception_is_a_success_and_propagates(baseplate, server, recorder, generated):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        with pytest.raises(generated.ttypes.Oops) as excinfo:
            context.example.fail_declared("no such thing")
        assert excinfo.value.reason == "no such thing"
        assert context.example.echo("still fine") == "still fine"
    assert ("example.fail_declared", "on_finish", None) in recorder.events
    assert server.connections == 1  # the connection was kept


def test_application_exception_is_a_failure(baseplate, server, recorder, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler", upstream()):  # noqa: SIM117
        with pytest.raises(TApplicationException):
            context.example.fail_undeclared()
    (finish,) = [e for e in recorder.events if e[:2] == ("example.fail_undeclared", "on_finish")]
    assert finish[2][0] is TApplicationException
    (otel_span,) = [s for s in spans.get_finished_spans() if s.name == "example.fail_undeclared"]
    assert otel_span.status.status_code is StatusCode.ERROR


def test_failure_metrics(baseplate, statsd, server):
    baseplate.configure_metrics(metrics.make_client("svc", config.Endpoint(statsd.endpoint)))
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with pytest.raises(TApplicationException):
            context.example.fail_undeclared()
    lines = b"\n".join(statsd.received()).decode().split("\n")
    assert "svc.clients.example.fail_undeclared.failure:1|c" in lines


def test_transport_error_without_retrying_is_raised_at_once(baseplate, server, children):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with pytest.raises(TTransportException):
            context.example.drop_connection("once", 1)
    assert [span.name for span in children.spans] == ["example.drop_connection"]
    assert server.methods() == ["drop_connection"]


# -- retrying -----------------------------------------------------------------------


def test_retrying_after_a_transport_error(baseplate, server, recorder, children):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler", upstream()):  # noqa: SIM117
        with context.example.retrying(attempts=3) as svc:
            assert isinstance(svc, ThriftClientProxy)
            assert svc.drop_connection("flaky", 1) == 2

    assert [span.name for span in children.spans] == ["example.drop_connection"] * 2
    first, second = children.spans
    finishes = [e for e in recorder.events if e[:2] == ("example.drop_connection", "on_finish")]
    assert finishes[0][2][0] is TTransportException
    assert finishes[1][2] is None
    # Each attempt carried the ids of its own span.
    assert [call.headers[b"Span"] for call in server.calls] == [
        str(first.id).encode(),
        str(second.id).encode(),
    ]


def test_retrying_gives_up_after_the_attempts(baseplate, server, children):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with context.example.retrying(attempts=3, backoff=0.01) as svc:
            with pytest.raises(TTransportException):
                svc.drop_connection("down", 10)
    assert len(children.spans) == 3
    assert server.drops["down"] == 3


def test_retrying_respects_the_budget(baseplate, server, make_pool, generated, children):
    slow_pool = make_pool(server.endpoint, timeout=30)
    factory = ThriftContextFactory(slow_pool, generated.ExampleService.Client)
    baseplate.add_to_context("slow", factory)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with context.slow.retrying(attempts=100, budget=0.3) as svc:
            with pytest.raises(TTransportException) as excinfo:
                svc.sleep(5)
    # The budget, not the pool's timeout of 30 seconds, bounded the wait.
    assert excinfo.value.type == TTransportException.TIMED_OUT
    assert 1 <= len(children.spans) < 100


def test_declared_and_application_errors_are_not_retried(baseplate, server, generated):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with context.example.retrying(attempts=3) as svc:
            with pytest.raises(generated.ttypes.Oops):
                svc.fail_declared("x")
            with pytest.raises(TApplicationException):
                svc.fail_undeclared()
    assert server.methods() == ["fail_declared", "fail_undeclared"]


def test_retrying_rejects_bad_policies(baseplate):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), pytest.raises(ValueError):  # noqa: SIM117
        with context.example.retrying(attempts=0):
            pass


def test_calls_when_the_server_is_down_fail_as_documented(baseplate, server, children):
    server.stop()
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        with pytest.raises(TTransportException) as excinfo:
            context.example.echo("x")
        assert excinfo.value.type == TTransportException.NOT_OPEN
        with context.example.retrying(attempts=2) as svc, pytest.raises(TTransportException):
            svc.echo("x")
    assert len(children.spans) == 3
    server.start()
    with baseplate.make_server_span(context, "handler"):
        assert context.example.echo("back") == "back"
