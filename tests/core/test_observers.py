"""The observer contract: which observer hears what, in which order."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from baseplate._state import state
from baseplate.context import ContextFactory, ContextObserver, ContextSpanObserver
from baseplate.core import (
    Baseplate,
    BaseplateObserver,
    LocalSpan,
    ServerSpan,
    Span,
    SpanObserver,
    TraceInfo,
    WrappedRequestContext,
)
from baseplate.testing import RecordingObserver, reset_state


@pytest.fixture
def recorder():
    return RecordingObserver()


@pytest.fixture
def baseplate(recorder):
    bp = Baseplate()
    bp.register(recorder)
    return bp


def test_full_request_event_sequence(baseplate, recorder, spans):
    context = SimpleNamespace()
    server = baseplate.make_server_span(context, "handler")
    assert context.trace is server
    server.start()
    server.set_tag("http.method", "GET")
    server.log("checkpoint", {"n": 1})
    client = server.make_child("cassandra.execute")
    client.start()
    client.set_tag("statement", "SELECT 1")
    client.log("error.object", "boom")
    client.finish()
    local = server.make_child("render", local=True, component_name="templates")
    with local:
        nested = local.make_child("inner")
        nested.start()
        nested.finish()
    server.finish()

    assert recorder.events == [
        ("handler", "on_server_span_created"),
        ("handler", "on_start"),
        ("handler", "on_set_tag", "http.method", "GET"),
        ("handler", "on_log", "checkpoint", {"n": 1}),
        ("handler", "on_child_span_created", "cassandra.execute"),
        ("cassandra.execute", "on_start"),
        ("cassandra.execute", "on_set_tag", "statement", "SELECT 1"),
        ("cassandra.execute", "on_log", "error.object", "boom"),
        ("cassandra.execute", "on_finish", None),
        ("handler", "on_child_span_created", "render"),
        ("render", "on_start"),
        ("render", "on_child_span_created", "inner"),
        ("inner", "on_start"),
        ("inner", "on_finish", None),
        ("render", "on_finish", None),
        ("handler", "on_finish", None),
    ]


def test_observers_are_called_in_registration_order(spans):
    calls = []

    class Named(BaseplateObserver, SpanObserver):
        def __init__(self, name):
            self.name = name

        def on_server_span_created(self, context, server_span):
            calls.append((self.name, "created"))
            server_span.register(self)

        def on_start(self):
            calls.append((self.name, "start"))

        def on_finish(self, exc_info):
            calls.append((self.name, "finish"))

    bp = Baseplate()
    for name in ("first", "second", "third"):
        bp.register(Named(name))
    with bp.make_server_span(SimpleNamespace(), "x"):
        pass
    assert calls == [
        ("first", "created"),
        ("second", "created"),
        ("third", "created"),
        ("first", "start"),
        ("second", "start"),
        ("third", "start"),
        ("first", "finish"),
        ("second", "finish"),
        ("third", "finish"),
    ]


def test_finish_with_exception_passes_exc_info(baseplate, recorder, spans):
    server = baseplate.make_server_span(SimpleNamespace(), "handler")
    with pytest.raises(KeyError), server:
        raise KeyError("missing")
    exc_type, exc_value, _ = recorder.events[-1][2]
    assert exc_type is KeyError
    assert isinstance(exc_value, KeyError)

    (exported,) = spans.get_finished_spans()
    assert not exported.status.is_ok
    assert [event.name for event in exported.events] == ["exception"]


def test_explicit_exc_info_marks_span_failed(baseplate, recorder, spans):
    server = baseplate.make_server_span(SimpleNamespace(), "handler")
    server.start()
    try:
        raise ValueError("bad")
    except ValueError:
        server.finish(exc_info=sys.exc_info())
    assert recorder.events[-1][2][0] is ValueError
    assert spans.get_finished_spans()[0].status.description == "bad"


def test_finish_twice_notifies_once(baseplate, recorder, spans):
    server = baseplate.make_server_span(SimpleNamespace(), "handler")
    server.start()
    server.finish()
    server.finish()
    assert recorder.events_named("on_finish") == [("handler", "on_finish", None)]
    assert len(spans.get_finished_spans()) == 1


def test_span_types_and_attributes(baseplate, spans):
    context = SimpleNamespace()
    server = baseplate.make_server_span(
        context, "handler", TraceInfo.from_upstream(10, 20, 30, True, 0)
    )
    assert isinstance(server, ServerSpan)
    assert (server.trace_id, server.parent_id, server.id) == (10, 20, 30)
    assert (server.sampled, server.flags, server.name, server.context) == (
        True,
        0,
        "handler",
        context,
    )

    client = server.make_child("svc.call")
    assert type(client) is Span
    assert (client.trace_id, client.parent_id, client.sampled, client.flags) == (10, 30, True, 0)
    assert client.id not in (0, 30)
    assert client.context is context

    local = server.make_child("op", local=True, component_name="comp")
    assert isinstance(local, LocalSpan)
    assert local.component_name == "comp"
    assert local.parent_id == 30


def test_local_span_gets_a_wrapped_context(baseplate, spans):
    context = SimpleNamespace(shared="value")
    server = baseplate.make_server_span(context, "handler")
    local = server.make_child("op", local=True, component_name="comp")
    assert isinstance(local.context, WrappedRequestContext)
    assert local.context.trace is local
    assert local.context.shared == "value"
    assert context.trace is server
    # Setting an attribute through the wrapper sets it on the request's context.
    local.context.written = 1
    assert context.written == 1
    # A local span of a local span wraps the request's context afresh.
    nested = local.make_child("inner", local=True, component_name="comp")
    assert nested.context.trace is nested
    assert local.context.trace is local
    assert nested.context.shared == "value"


def test_wrapped_request_context_shadows_without_changing_the_context():
    context = SimpleNamespace(client="request's", other=1)
    wrapped = WrappedRequestContext(context)
    wrapped.shadow_context_attr("client", "local")
    assert (wrapped.client, context.client, wrapped.other) == ("local", "request's", 1)
    clone = wrapped.clone()
    assert clone.client == "request's"
    with pytest.raises(AttributeError):
        _ = wrapped.missing


def test_local_spans_get_context_clients_of_their_own(spans):
    class NamingFactory(ContextFactory):
        def make_object_for_context(self, name, span):
            return f"{name} for {span.name}"

    bp = Baseplate()
    bp.add_to_context("client", NamingFactory())
    context = SimpleNamespace()
    server = bp.make_server_span(context, "request")
    local = server.make_child("op", local=True, component_name="comp")
    remote = server.make_child("call")
    assert context.client == "client for request"
    assert local.context.client == "client for op"
    assert remote.context.client == "client for request"
    assert any(isinstance(o, ContextSpanObserver) for o in server.observers)
    assert any(isinstance(o, ContextObserver) for o in bp.observers)


def test_local_span_requires_component_name(baseplate, recorder):
    server = baseplate.make_server_span(SimpleNamespace(), "handler")
    with pytest.raises(ValueError, match="component_name"):
        server.make_child("op", local=True)
    assert recorder.events_named("on_child_span_created") == []


def test_add_to_context_uses_the_factory_per_request(spans):
    made = []

    class CountingFactory(ContextFactory):
        def make_object_for_context(self, name, server_span):
            made.append((name, server_span.name))
            return f"client for {server_span.name}"

    bp = Baseplate()
    bp.add_to_context("my_client", CountingFactory())
    first = SimpleNamespace()
    bp.make_server_span(first, "one")
    second = SimpleNamespace()
    bp.make_server_span(second, "two")
    assert (first.my_client, second.my_client) == ("client for one", "client for two")
    assert made == [("my_client", "one"), ("my_client", "two")]


def test_context_factory_interface_must_be_implemented():
    with pytest.raises(NotImplementedError):
        ContextFactory().make_object_for_context("x", None)


def test_failing_context_factory_fails_the_request():
    class Broken(ContextFactory):
        def make_object_for_context(self, name, server_span):
            raise RuntimeError("no backend")

    bp = Baseplate()
    bp.add_to_context("broken", Broken())
    with pytest.raises(RuntimeError, match="no backend"):
        bp.make_server_span(SimpleNamespace(), "x")


def exploding_observer_class() -> type:
    """A new observer class whose on_start and on_finish raise: failures of a kind unseen yet."""

    class Exploding(BaseplateObserver, SpanObserver):
        def on_server_span_created(self, context, server_span):
            server_span.register(self)

        def on_start(self):
            raise RuntimeError("observer bug")

        def on_finish(self, exc_info):
            raise RuntimeError("observer bug")

    return Exploding


def test_failing_span_observer_is_logged_and_counted_not_raised(spans, caplog):
    exploding = exploding_observer_class()
    recorder = RecordingObserver()
    bp = Baseplate()
    bp.register(exploding())
    bp.register(recorder)
    before = state.observer_failures.total
    for _ in range(3):
        with bp.make_server_span(SimpleNamespace(), "x"):
            pass
    assert state.observer_failures.total - before == 6
    assert state.observer_failures.count((exploding, "on_finish")) == 3
    # Later observers still hear every event.
    assert recorder.events_named("on_finish") == [("x", "on_finish", None)] * 3
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2, "each failing observer method is logged at error level once"
    assert all(error.exc_info is not None for error in errors), "with its traceback"


def test_after_reset_state_an_observer_failure_is_logged_as_the_first_again(spans, caplog):
    bp = Baseplate()
    bp.register(exploding_observer_class()())
    with bp.make_server_span(SimpleNamespace(), "x"):
        pass
    reset_state()
    assert state.observer_failures.total == 0
    with bp.make_server_span(SimpleNamespace(), "x"):
        pass
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 4, "the failures after the reset are logged in full again"


def test_make_child_before_start_still_links_to_the_trace(baseplate, spans):
    server = baseplate.make_server_span(SimpleNamespace(), "handler")
    child = server.make_child("early")
    server.start()
    child.start()
    child.finish()
    server.finish()
    by_name = {span.name: span for span in spans.get_finished_spans()}
    assert by_name["early"].parent.span_id == server.id
    assert by_name["early"].context.trace_id == server.trace_id
