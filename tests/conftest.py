from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import posix_ipc
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

from baseplate.testing import StatsdCapture, recorded_spans
from tests.http_standin import HTTPStandIn, serving
from tests.server import ServerGroup, free_port


@pytest.fixture
def statsd() -> Iterator[StatsdCapture]:
    receiver = StatsdCapture()
    yield receiver
    receiver.close()


@pytest.fixture
def unix_statsd(tmp_path) -> Iterator[StatsdCapture]:
    receiver = StatsdCapture(socket.AF_UNIX, str(tmp_path / "statsd.sock"))
    yield receiver
    receiver.close()


class FrozenClock:
    """A settable replacement for ``time.time``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FrozenClock:
    frozen = FrozenClock(1500000000.0)
    monkeypatch.setattr("time.time", frozen)
    return frozen


@pytest.fixture(autouse=True)
def _close_metrics_sockets(monkeypatch):
    """``metrics_client_from_config`` and ``make_client``, closing the sockets they open."""
    from baseplate import metrics

    transports = []
    real_transport = metrics.SocketTransport

    def tracked_transport(endpoint):
        transport = real_transport(endpoint)
        transports.append(transport)
        return transport

    monkeypatch.setattr(metrics, "SocketTransport", tracked_transport)
    yield
    for transport in transports:
        transport.close()


@pytest.fixture(autouse=True)
def _no_span_left_current():
    """Fail the test that leaves a span current, and clear it for the tests after it.

    A leaked current span makes every later test's spans its children, so
    the failure would otherwise show up far from its cause.
    """
    yield
    leaked = trace.get_current_span()
    if leaked is not trace.INVALID_SPAN:
        otel_context.attach(otel_context.Context())
        pytest.fail(f"the test left a span current: {leaked!r}")


@pytest.fixture
def spans():
    """Finished, sampled spans, on a fresh tracer provider."""
    with recorded_spans() as exporter:
        yield exporter


@pytest.fixture
def http_server() -> Iterator[HTTPStandIn]:
    """A local HTTP server that answers and remembers (see :mod:`tests.http_standin`)."""
    with serving() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: connecting is refused."""
    return free_port()


# An instrumentor takes its tracer when it instruments, so these come after
# the ``spans`` fixture has installed the test's provider.


@pytest.fixture
def instrumented_requests(spans) -> Iterator[None]:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    instrumentor = RequestsInstrumentor()
    instrumentor.instrument()
    yield
    instrumentor.uninstrument()


@pytest.fixture
def instrumented_redis(spans) -> Iterator[None]:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    instrumentor.instrument()
    yield
    instrumentor.uninstrument()


@pytest.fixture
def queue_name() -> Iterator[str]:
    """A fresh ``/traces-<name>`` queue, small enough for the default system limits."""
    name = f"bp-test-{uuid.uuid4().hex[:12]}"
    queue = posix_ipc.MessageQueue(
        f"/traces-{name}", flags=posix_ipc.O_CREX, max_messages=10, max_message_size=8192
    )
    yield name
    queue.close()
    queue.unlink()


@pytest.fixture
def redis_key(request) -> Iterator[str]:
    """A Redis key for this test alone (on 127.0.0.1:6379), deleted after it."""
    import redis

    key = f"baseplate-tests:{request.node.name}"
    yield key
    with redis.Redis(host="127.0.0.1", port=6379) as cleaner:
        cleaner.delete(key)


@pytest.fixture
def servers() -> Iterator[ServerGroup]:
    """Server processes started by a test; whatever is left of them is killed after it."""
    with ServerGroup() as group:
        yield group
