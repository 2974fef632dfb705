"""The metrics observer names native spans for the dependency they call.

Real instrumentations (opentelemetry-instrumentation-requests and -redis)
make the spans, against a local HTTP server and the Redis server on
127.0.0.1:6379; a UDP socket stands in for statsd, and each test compares the
exact lines of the request's batch (timer values aside, which are checked
where they matter).
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator

import pytest
import redis
import requests
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from redis.backoff import NoBackoff
from redis.retry import Retry

from baseplate import metrics_client_from_config
from baseplate.core import Baseplate, ServerSpan
from baseplate.diagnostics.metrics import MetricsBaseplateObserver
from baseplate.testing import StatsdCapture
from bridge.processor import set_root_span_adopter

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
_TIMER_VALUE = re.compile(r":[0-9.e+-]+\|ms$")


@pytest.fixture
def redis_client(instrumented_redis) -> Iterator[redis.Redis]:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    yield client
    client.close()


@pytest.fixture
def tracer(spans) -> trace.Tracer:
    """A tracer of the test's provider, standing in for any instrumented library."""
    return trace.get_tracer("tests.native")


# -- Baseplate reporting to the capture ---------------------------------------------


@pytest.fixture
def metrics_observer(statsd: StatsdCapture) -> MetricsBaseplateObserver:
    client = metrics_client_from_config(
        {"metrics.namespace": "svc", "metrics.endpoint": statsd.endpoint}
    )
    return MetricsBaseplateObserver(client)


@pytest.fixture
def baseplate(spans, metrics_observer: MetricsBaseplateObserver) -> Baseplate:
    baseplate = Baseplate()
    baseplate.register(metrics_observer)
    return baseplate


def server_span(baseplate: Baseplate, name: str = "handle") -> ServerSpan:
    return baseplate.make_server_span(types.SimpleNamespace(), name)


def lines_of(statsd: StatsdCapture) -> list[str]:
    """Every statsd line received, timer values replaced by ``T``."""
    return [_TIMER_VALUE.sub(":T|ms", line) for line in raw_lines(statsd)]


def raw_lines(statsd: StatsdCapture) -> list[str]:
    return [line for datagram in statsd.received() for line in datagram.decode().split("\n")]


# -- requests ---------------------------------------------------------------------


def test_http_call_is_timed_and_counted_per_host_and_method(
    baseplate, statsd, http_server, instrumented_requests
):
    with server_span(baseplate):
        assert requests.get(http_server.url("/users/42?page=3"), timeout=10).text == "hello"

    assert lines_of(statsd) == [
        "svc.clients.127_0_0_1.GET:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.127_0_0_1.GET.success:1|c",
        "svc.server.handle.success:1|c",
    ]


def test_http_timer_is_the_duration_the_span_recorded(
    baseplate, statsd, spans, http_server, instrumented_requests
):
    http_server.delay = 0.05
    with server_span(baseplate):
        requests.get(http_server.url("/slow"), timeout=10).close()

    (native,) = [span for span in spans.get_finished_spans() if span.kind is SpanKind.CLIENT]
    assert native.start_time is not None
    assert native.end_time is not None
    recorded_ms = (native.end_time - native.start_time) / 1e9 * 1000.0
    timer = raw_lines(statsd)[0]
    assert timer == f"svc.clients.127_0_0_1.GET:{recorded_ms:g}|ms"
    assert recorded_ms >= 50


def test_refused_http_call_counts_a_failure(baseplate, statsd, closed_port, instrumented_requests):
    with server_span(baseplate), pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{closed_port}/nothing", timeout=10)

    assert lines_of(statsd) == [
        "svc.clients.127_0_0_1.GET:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.127_0_0_1.GET.failure:1|c",
        "svc.server.handle.success:1|c",
    ]


def test_http_error_response_counts_a_failure(
    baseplate, statsd, http_server, instrumented_requests
):
    with server_span(baseplate):
        assert requests.get(http_server.url("/status/503"), timeout=10).status_code == 503
        assert requests.get(http_server.url("/status/404"), timeout=10).status_code == 404

    assert lines_of(statsd) == [
        "svc.clients.127_0_0_1.GET:T|ms",
        "svc.clients.127_0_0_1.GET:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.127_0_0_1.GET.failure:2|c",
        "svc.server.handle.success:1|c",
    ]


def test_calls_to_two_hosts_get_two_timers(baseplate, statsd, http_server, instrumented_requests):
    port = http_server.server_address[1]
    with server_span(baseplate):
        requests.get(f"http://127.0.0.1:{port}/a", timeout=10).close()
        requests.get(f"http://localhost:{port}/b", timeout=10).close()

    assert lines_of(statsd) == [
        "svc.clients.127_0_0_1.GET:T|ms",
        "svc.clients.localhost.GET:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.127_0_0_1.GET.success:1|c",
        "svc.clients.localhost.GET.success:1|c",
        "svc.server.handle.success:1|c",
    ]


# -- redis --------------------------------------------------------------------------


def test_redis_commands_are_named_for_system_host_and_command(
    baseplate, statsd, redis_client, redis_key
):
    with server_span(baseplate, "store"):
        redis_client.set(redis_key, "value")
        assert redis_client.get(redis_key) == b"value"

    assert lines_of(statsd) == [
        "svc.clients.redis.127_0_0_1.SET:T|ms",
        "svc.clients.redis.127_0_0_1.GET:T|ms",
        "svc.server.store:T|ms",
        "svc.clients.redis.127_0_0_1.SET.success:1|c",
        "svc.clients.redis.127_0_0_1.GET.success:1|c",
        "svc.server.store.success:1|c",
    ]


def test_redis_and_http_on_the_same_host_stay_apart(
    baseplate, statsd, http_server, instrumented_requests, redis_client, redis_key
):
    with server_span(baseplate):
        requests.get(http_server.url("/thing"), timeout=10).close()
        redis_client.get(redis_key)

    assert lines_of(statsd) == [
        "svc.clients.127_0_0_1.GET:T|ms",
        "svc.clients.redis.127_0_0_1.GET:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.127_0_0_1.GET.success:1|c",
        "svc.clients.redis.127_0_0_1.GET.success:1|c",
        "svc.server.handle.success:1|c",
    ]


def test_refused_redis_command_counts_a_failure(baseplate, statsd, closed_port, instrumented_redis):
    # No retries: one refused attempt is the whole call.
    client = redis.Redis(host=REDIS_HOST, port=closed_port, retry=Retry(NoBackoff(), 0))
    with server_span(baseplate), pytest.raises(redis.ConnectionError):
        client.get("anything")
    client.close()

    assert lines_of(statsd) == [
        "svc.clients.redis.127_0_0_1.GET:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.redis.127_0_0_1.GET.failure:1|c",
        "svc.server.handle.success:1|c",
    ]


# -- spans made through the OpenTelemetry API by hand ---------------------------------


def test_attributes_set_just_before_the_end_name_the_span(baseplate, statsd, tracer):
    publish = tracer.start_as_current_span("orders publish", kind=SpanKind.PRODUCER)
    with server_span(baseplate), publish as span:
        span.set_attribute("messaging.system", "kafka")
        span.set_attribute("server.address", "Broker-1.example")
        span.set_attribute("messaging.operation", "publish")

    assert lines_of(statsd) == [
        "svc.clients.kafka.broker-1_example.publish:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.kafka.broker-1_example.publish.success:1|c",
        "svc.server.handle.success:1|c",
    ]


def test_client_span_without_semantic_attributes_keeps_its_safe_name(baseplate, statsd, tracer):
    fetch = tracer.start_as_current_span("fetch thing.v2", kind=SpanKind.CLIENT)
    with server_span(baseplate), fetch as span:
        span.set_status(Status(StatusCode.ERROR, "gave up"))

    assert lines_of(statsd) == [
        "svc.clients.fetch_thing_v2:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.fetch_thing_v2.failure:1|c",
        "svc.server.handle.success:1|c",
    ]


def test_internal_span_is_a_client_span_with_a_safe_name(baseplate, statsd, tracer):
    with server_span(baseplate), tracer.start_as_current_span("cache.warm up") as span:
        # An internal span is not named for a dependency, even if it has one.
        span.set_attribute("server.address", "ignored.example")

    assert lines_of(statsd) == [
        "svc.clients.cache_warm_up:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.cache_warm_up.success:1|c",
        "svc.server.handle.success:1|c",
    ]


# -- facade spans are unchanged -------------------------------------------------------


def test_facade_spans_keep_their_names_as_given(baseplate, statsd):
    with server_span(baseplate) as parent:
        with parent.make_child("redis.get") as child:
            child.set_tag("server.address", "10.0.0.1")
            child.set_tag("db.system", "redis")
        with parent.make_child("warm up", local=True, component_name="cache"):
            pass

    assert lines_of(statsd) == [
        "svc.clients.redis.get:T|ms",
        "svc.cache.warm up:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.redis.get.success:1|c",
        "svc.server.handle.success:1|c",
    ]


def test_facade_client_span_suppresses_the_native_one(
    baseplate, statsd, http_server, instrumented_requests
):
    with server_span(baseplate) as parent, parent.make_child("thing_service.get"):
        requests.get(http_server.url("/thing"), timeout=10).close()

    assert lines_of(statsd) == [
        "svc.clients.thing_service.get:T|ms",
        "svc.server.handle:T|ms",
        "svc.clients.thing_service.get.success:1|c",
        "svc.server.handle.success:1|c",
    ]


# -- native server spans --------------------------------------------------------------


@pytest.fixture
def observing_baseplate(baseplate: Baseplate) -> Iterator[Baseplate]:
    """The Baseplate, receiving the root spans instrumentations start."""
    baseplate.observe_native_root_spans()
    yield baseplate
    set_root_span_adopter(None)


def test_native_server_span_is_timed_under_its_final_safe_name(
    observing_baseplate, statsd, spans, http_server, instrumented_requests
):
    tracer = trace.get_tracer("an-instrumentation")
    with tracer.start_as_current_span("GET", kind=SpanKind.SERVER) as root:
        requests.get(http_server.url("/hello/world"), timeout=10).close()
        root.update_name("GET /hello/<name>")  # named for its route once routed

    lines = raw_lines(statsd)
    assert [_TIMER_VALUE.sub(":T|ms", line) for line in lines] == [
        "svc.clients.127_0_0_1.GET:T|ms",
        "svc.server.GET_hello_name:T|ms",
        "svc.clients.127_0_0_1.GET.success:1|c",
        "svc.server.GET_hello_name.success:1|c",
    ]
    (finished,) = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert finished.start_time is not None
    assert finished.end_time is not None
    recorded_ms = (finished.end_time - finished.start_time) / 1e9 * 1000.0
    assert lines[1] == f"svc.server.GET_hello_name:{recorded_ms:g}|ms"


def test_native_server_span_counts_a_failure(observing_baseplate, statsd):
    tracer = trace.get_tracer("an-instrumentation")
    with (
        pytest.raises(ValueError),
        tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER),
    ):
        raise ValueError("bad order")

    assert lines_of(statsd) == [
        "svc.server.POST_orders:T|ms",
        "svc.server.POST_orders.failure:1|c",
    ]


def test_facade_server_span_keeps_its_name_as_given(observing_baseplate, statsd):
    with server_span(observing_baseplate, "get.thing"):
        pass

    assert lines_of(statsd) == [
        "svc.server.get.thing:T|ms",
        "svc.server.get.thing.success:1|c",
    ]
