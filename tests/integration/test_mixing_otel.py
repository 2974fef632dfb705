"""Mixing Baseplate's spans with OpenTelemetry-instrumented libraries.

The acceptance scenario: an application instruments ``requests`` and ``redis``
with the stock OpenTelemetry instrumentations and calls them while handling a
Baseplate request. The spans those libraries create must join the request's
trace, reach the request's observers (metrics included) as child spans, and be
suppressed inside a Baseplate client span, which already stands for the call.

Everything here is real: a local HTTP server, the Redis server on
127.0.0.1:6379, and a UDP socket standing in for statsd.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from types import TracebackType

import pytest
import redis
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode

from baseplate import metrics_client_from_config
from baseplate.core import Baseplate, RecordedSpanError, ServerSpan, TraceInfo
from baseplate.testing import RecordingObserver

REDIS_HOST = "127.0.0.1"
TIMER = r"[0-9]+(?:\.[0-9]+)?"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


@pytest.fixture
def closed_port_url(closed_port) -> str:
    """A URL on a local port that nothing listens on (connection refused)."""
    return f"http://127.0.0.1:{closed_port}/nothing-here"


@pytest.fixture
def redis_client(spans, instrumented_redis) -> Iterator[redis.Redis]:
    client = redis.Redis(host=REDIS_HOST, port=6379)
    client.ping()
    spans.clear()  # the PING above is a (root) span of its own
    yield client
    client.close()


# -- Baseplate with metrics and a recording observer ---------------------------


class Service:
    def __init__(self, statsd) -> None:
        self.recorder = RecordingObserver()
        self.baseplate = Baseplate()
        self.baseplate.configure_metrics(
            metrics_client_from_config(
                {"metrics.namespace": "svc", "metrics.endpoint": statsd.endpoint}
            )
        )
        self.baseplate.register(self.recorder)
        self.statsd = statsd

    def server_span(self, name: str, trace_info: TraceInfo | None = None) -> ServerSpan:
        return self.baseplate.make_server_span(types.SimpleNamespace(), name, trace_info)

    def metric_lines(self) -> list[str]:
        datagrams = self.statsd.received()
        return [line for datagram in datagrams for line in datagram.decode().split("\n")]


@pytest.fixture
def service(statsd) -> Service:
    return Service(statsd)


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


def only(finished: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    matching = by_name(finished, name)
    assert len(matching) == 1, [span.name for span in finished]
    return matching[0]


def assert_child_of(span: ReadableSpan, parent_trace_id: int, parent_span_id: int) -> None:
    assert span.context.trace_id == parent_trace_id
    assert span.parent is not None
    assert span.parent.span_id == parent_span_id


def assert_timer(lines: list[str], name: str) -> None:
    assert any(re.fullmatch(rf"{re.escape(name)}:{TIMER}\|ms", line) for line in lines), lines


def events_of(recorder: RecordingObserver, span_name: str) -> list[tuple]:
    return [event for event in recorder.events if event[0] == span_name]


def finish_exc_info(recorder: RecordingObserver, span_name: str) -> ExcInfo | None:
    """The exc_info of the one ``on_finish`` the observers got for ``span_name``."""
    finishes = [event for event in events_of(recorder, span_name) if event[1] == "on_finish"]
    assert len(finishes) == 1, recorder.events
    return finishes[0][2]


def innermost(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def assert_is_the_raised_exception(exc_info: ExcInfo | None, raised: BaseException) -> None:
    """The observers got the exception the library raised, not a stand-in for it.

    Same type (not a RecordedSpanError subclass of the same name), same
    object, and a traceback that ends in the frame that raised it.
    """
    assert exc_info is not None
    assert exc_info[0] is type(raised)
    assert not issubclass(exc_info[0], RecordedSpanError)
    assert exc_info[1] is raised
    assert exc_info[2] is not None
    assert innermost(exc_info[2]) is innermost(raised.__traceback__)


# -- A1, A2: requests ----------------------------------------------------------


def test_requests_span_joins_the_request(spans, service, http_server, instrumented_requests):
    with service.server_span("get_thing") as server_span:
        response = requests.get(http_server.url(), timeout=10)
    assert response.status_code == 200
    assert response.text == "hello"

    finished = spans.get_finished_spans()
    assert sorted(span.name for span in finished) == ["GET", "get_thing"]
    native = only(finished, "GET")
    server = only(finished, "get_thing")
    assert native.kind is SpanKind.CLIENT
    assert server.kind is SpanKind.SERVER
    assert server.context.trace_id == server_span.trace_id
    assert server.context.span_id == server_span.id
    assert_child_of(native, server_span.trace_id, server_span.id)
    assert native.attributes["http.status_code"] == 200


def test_requests_span_reaches_the_observers(spans, service, http_server, instrumented_requests):
    with service.server_span("get_thing"):
        requests.get(http_server.url(), timeout=10).close()

    events = service.recorder.events
    created = ("get_thing", "on_child_span_created", "GET")
    assert created in events
    native_events = events_of(service.recorder, "GET")
    assert native_events[0] == ("GET", "on_start")
    assert native_events[-1] == ("GET", "on_finish", None)
    assert ("GET", "on_set_tag", "http.status_code", 200) in native_events
    assert ("GET", "on_set_tag", "http.method", "GET") in native_events
    assert ("GET", "on_set_tag", "http.url", http_server.url()) in native_events
    # All of the native span's life happens inside the request, after its creation.
    assert events.index(created) < events.index(("GET", "on_start"))
    assert events.index(("GET", "on_finish", None)) < events.index(("get_thing", "on_finish", None))
    assert events[-1] == ("get_thing", "on_finish", None)


def test_requests_span_is_timed_and_counted(spans, service, http_server, instrumented_requests):
    with service.server_span("get_thing"):
        requests.get(http_server.url(), timeout=10).close()

    datagrams = service.statsd.received()
    assert len(datagrams) == 1, "one batch per request"
    lines = datagrams[0].decode().split("\n")
    assert_timer(lines, "svc.clients.127_0_0_1.GET")
    assert "svc.clients.127_0_0_1.GET.success:1|c" in lines
    assert_timer(lines, "svc.server.get_thing")
    assert "svc.server.get_thing.success:1|c" in lines
    assert not any("failure" in line for line in lines)


def test_traceparent_carries_the_request_trace(
    spans, service, http_server, instrumented_requests, monkeypatch
):
    monkeypatch.delenv("OTEL_PROPAGATORS", raising=False)
    with service.server_span("get_thing") as server_span:
        requests.get(http_server.url(), timeout=10).close()

    assert len(http_server.received_headers) == 1
    headers = {key.lower(): value for key, value in http_server.received_headers[0].items()}
    match = re.fullmatch(
        r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", headers.get("traceparent", "")
    )
    assert match, headers
    trace_id, parent_span_id, flags = match.groups()
    assert trace_id == f"{server_span.trace_id:032x}"
    # The downstream's parent is the requests span, itself a child of the server span.
    native = only(spans.get_finished_spans(), "GET")
    assert parent_span_id == f"{native.context.span_id:016x}"
    assert flags == "01"


# -- A3: redis -----------------------------------------------------------------


def test_redis_spans_are_children_of_the_request(spans, service, redis_client, redis_key):
    with service.server_span("store") as server_span:
        redis_client.set(redis_key, "value")
        assert redis_client.get(redis_key) == b"value"

    finished = spans.get_finished_spans()
    assert sorted(span.name for span in finished) == ["GET", "SET", "store"]
    for name in ("SET", "GET"):
        native = only(finished, name)
        assert native.kind is SpanKind.CLIENT
        assert native.attributes["db.system"] == "redis"
        assert_child_of(native, server_span.trace_id, server_span.id)
    assert only(finished, "SET").end_time <= only(finished, "GET").start_time

    recorder = service.recorder
    assert ("store", "on_child_span_created", "SET") in recorder.events
    assert ("store", "on_child_span_created", "GET") in recorder.events
    assert ("SET", "on_finish", None) in recorder.events
    assert ("GET", "on_finish", None) in recorder.events

    lines = service.metric_lines()
    assert_timer(lines, "svc.clients.redis.127_0_0_1.SET")
    assert_timer(lines, "svc.clients.redis.127_0_0_1.GET")
    assert "svc.clients.redis.127_0_0_1.SET.success:1|c" in lines
    assert "svc.clients.redis.127_0_0_1.GET.success:1|c" in lines
    assert_timer(lines, "svc.server.store")
    assert "svc.server.store.success:1|c" in lines


# -- A4: errors recorded on native spans ---------------------------------------


def test_failed_requests_call_is_a_failure(spans, service, instrumented_requests, closed_port_url):
    with service.server_span("get_thing"), pytest.raises(requests.ConnectionError) as raised:
        requests.get(closed_port_url, timeout=10)

    finished = spans.get_finished_spans()
    native = only(finished, "GET")
    assert native.status.status_code is StatusCode.ERROR
    [recorded] = [event for event in native.events if event.name == "exception"]
    assert recorded.attributes["exception.type"] == "requests.exceptions.ConnectionError"
    assert recorded.attributes["exception.message"] == str(raised.value)

    # The span ended while the instrumentation handled the error: the
    # observers get that very exception, with its traceback.
    assert_is_the_raised_exception(finish_exc_info(service.recorder, "GET"), raised.value)
    # The server span itself finished normally: the application handled the error.
    assert ("get_thing", "on_finish", None) in service.recorder.events

    lines = service.metric_lines()
    assert "svc.clients.127_0_0_1.GET.failure:1|c" in lines
    assert "svc.clients.127_0_0_1.GET.success:1|c" not in lines
    assert_timer(lines, "svc.clients.127_0_0_1.GET")
    assert "svc.server.get_thing.success:1|c" in lines


def test_failed_redis_command_is_a_failure(spans, service, redis_client, redis_key):
    redis_client.set(redis_key, "not a number")
    spans.clear()
    with service.server_span("bump"), pytest.raises(redis.ResponseError) as raised:
        redis_client.incr(redis_key)

    native = only(spans.get_finished_spans(), "INCRBY")
    assert native.status.status_code is StatusCode.ERROR
    assert_is_the_raised_exception(finish_exc_info(service.recorder, "INCRBY"), raised.value)
    assert str(raised.value) == "value is not an integer or out of range"
    lines = service.metric_lines()
    assert "svc.clients.redis.127_0_0_1.INCRBY.failure:1|c" in lines


def test_exception_recorded_after_it_was_handled_arrives_as_a_stand_in(spans, service):
    """Nothing is being raised when the span ends: a RecordedSpanError named after it."""
    with service.server_span("work"):
        span = trace.get_tracer("library").start_span("native")
        try:
            raise KeyError("gone")
        except KeyError as exc:
            span.record_exception(exc)
        span.end()

    exc_info = finish_exc_info(service.recorder, "native")
    assert exc_info is not None
    error_class, error, tb = exc_info
    assert issubclass(error_class, RecordedSpanError)
    assert error_class is not RecordedSpanError
    assert error_class.__name__ == "KeyError"
    assert type(error) is error_class
    assert str(error) == "'gone'"
    assert tb is None


def test_another_exception_being_handled_is_not_taken_for_the_recorded_one(spans, service):
    with service.server_span("work"):
        span = trace.get_tracer("library").start_span("native")
        span.record_exception(KeyError("recorded"))
        try:
            raise ValueError("unrelated, and live when the span ends")
        except ValueError:
            span.end()

    error_class, error, tb = finish_exc_info(service.recorder, "native")
    assert issubclass(error_class, RecordedSpanError)
    assert error_class.__name__ == "KeyError"
    assert str(error) == "'recorded'"
    assert tb is None


def test_error_status_without_an_exception_arrives_as_recorded_span_error(spans, service):
    with service.server_span("work"):
        span = trace.get_tracer("library").start_span("native")
        span.set_status(Status(StatusCode.ERROR, "the library said so"))
        span.end()

    error_class, error, tb = finish_exc_info(service.recorder, "native")
    assert error_class is RecordedSpanError
    assert type(error) is RecordedSpanError
    assert str(error) == "the library said so"
    assert tb is None


# -- A5: suppression inside client spans, not inside local spans ---------------


def test_no_native_span_inside_a_client_span(spans, service, redis_client, redis_key):
    with (
        service.server_span("lookup") as server_span,
        server_span.make_child("redis.get") as client_span,
    ):
        assert redis_client.get(redis_key) is None

    finished = spans.get_finished_spans()
    assert sorted(span.name for span in finished) == ["lookup", "redis.get"]
    facade = only(finished, "redis.get")
    assert facade.kind is SpanKind.CLIENT
    assert facade.context.span_id == client_span.id
    assert_child_of(facade, server_span.trace_id, server_span.id)

    assert not any(
        event[1] == "on_child_span_created" and event[0] == "redis.get"
        for event in service.recorder.events
    )
    lines = service.metric_lines()
    assert_timer(lines, "svc.clients.redis.get")
    assert not any(line.startswith("svc.clients.redis.127_0_0_1") for line in lines), lines


def test_no_native_http_span_inside_a_client_span(
    spans, service, http_server, instrumented_requests
):
    with (
        service.server_span("lookup") as server_span,
        server_span.make_child("thing_service.get"),
    ):
        requests.get(http_server.url(), timeout=10).close()

    finished = spans.get_finished_spans()
    assert sorted(span.name for span in finished) == ["lookup", "thing_service.get"]


def test_native_span_inside_a_local_span(spans, service, redis_client, redis_key):
    with (
        service.server_span("lookup") as server_span,
        server_span.make_child("work", local=True, component_name="c") as local_span,
    ):
        assert redis_client.get(redis_key) is None

    finished = spans.get_finished_spans()
    assert sorted(span.name for span in finished) == ["GET", "lookup", "work"]
    local = only(finished, "work")
    assert local.kind is SpanKind.INTERNAL
    assert_child_of(local, server_span.trace_id, server_span.id)
    assert_child_of(only(finished, "GET"), server_span.trace_id, local_span.id)

    assert ("work", "on_child_span_created", "GET") in service.recorder.events
    assert ("GET", "on_finish", None) in service.recorder.events
    lines = service.metric_lines()
    assert_timer(lines, "svc.c.work")


def test_suppression_ends_with_the_client_span(spans, service, redis_client, redis_key):
    with service.server_span("lookup") as server_span:
        with server_span.make_child("redis.get"):
            redis_client.get(redis_key)
        redis_client.get(redis_key)

    finished = spans.get_finished_spans()
    assert sorted(span.name for span in finished) == ["GET", "lookup", "redis.get"]
    assert_child_of(only(finished, "GET"), server_span.trace_id, server_span.id)


# -- A6: sampling --------------------------------------------------------------


def test_unsampled_request_is_observed_but_not_exported(
    spans, service, http_server, instrumented_requests
):
    trace_info = TraceInfo.from_upstream(1234, 2345, 3456, sampled=False, flags=None)
    with service.server_span("get_thing", trace_info) as server_span:
        requests.get(http_server.url(), timeout=10).close()

    assert spans.get_finished_spans() == ()
    assert server_span.sampled is False

    recorder = service.recorder
    assert ("get_thing", "on_child_span_created", "GET") in recorder.events
    assert ("GET", "on_set_tag", "http.status_code", 200) in recorder.events
    assert ("GET", "on_finish", None) in recorder.events

    lines = service.metric_lines()
    assert_timer(lines, "svc.server.get_thing")
    assert "svc.server.get_thing.success:1|c" in lines
    assert_timer(lines, "svc.clients.127_0_0_1.GET")
    assert "svc.clients.127_0_0_1.GET.success:1|c" in lines

    # The trace stays unsampled downstream, but keeps its id.
    traceparent = http_server.received_headers[0]["traceparent"]
    assert traceparent.startswith(f"00-{1234:032x}-")
    assert traceparent.endswith("-00")


def test_debug_flag_forces_export(spans, service, http_server, instrumented_requests):
    trace_info = TraceInfo.from_upstream(1234, 2345, 3456, sampled=False, flags=1)
    with service.server_span("get_thing", trace_info):
        requests.get(http_server.url(), timeout=10).close()

    finished = spans.get_finished_spans()
    assert sorted(span.name for span in finished) == ["GET", "get_thing"]
    assert_child_of(only(finished, "GET"), 1234, 3456)
    assert all(span.context.trace_flags.sampled for span in finished)
    assert service.metric_lines()


def test_upstream_ids_are_kept(spans, service, http_server, instrumented_requests):
    trace_info = TraceInfo.from_upstream(1234, 2345, 3456, sampled=True, flags=None)
    with service.server_span("get_thing", trace_info) as server_span:
        requests.get(http_server.url(), timeout=10).close()

    assert (server_span.trace_id, server_span.parent_id, server_span.id) == (1234, 2345, 3456)
    finished = spans.get_finished_spans()
    server = only(finished, "get_thing")
    assert server.context.trace_id == 1234
    assert server.context.span_id == 3456
    assert server.parent is not None
    assert server.parent.span_id == 2345
    assert server.parent.is_remote
    assert_child_of(only(finished, "GET"), 1234, 3456)
