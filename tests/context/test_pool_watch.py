"""Leaked connections and pool gauges, with a small real pool and a real statsd socket."""

from __future__ import annotations

import logging
import types
from typing import Any

import pytest

from baseplate.context import ContextFactory
from baseplate.context.pool_watch import PoolWatch
from baseplate.core import Span
from tests.context.serving import make_baseplate


class ToyPool:
    """A pool of plain objects that tells its watch of every checkout and return."""

    def __init__(self, size: int) -> None:
        self.free = [object() for _ in range(size)]
        self.capacity = size
        self.watch = PoolWatch(size=lambda: self.capacity, in_use=self.in_use)

    def in_use(self) -> int:
        return self.capacity - len(self.free)

    def get(self) -> object:
        connection = self.free.pop()
        self.watch.checked_out(connection)
        return connection

    def put(self, connection: object) -> None:
        self.watch.checked_in(connection)
        self.free.append(connection)


class ToyClient:
    """What a context factory hands a request: calls that use the pool."""

    def __init__(self, pool: ToyPool, server_span: Any) -> None:
        self.pool = pool
        self.server_span = server_span

    def well_behaved_call(self) -> None:
        with self.pool.watch.calls_of(self.server_span):
            self.pool.put(self.pool.get())

    def leaky_call(self) -> object:
        with self.pool.watch.calls_of(self.server_span):
            return self.pool.get()  # the caller is meant to put it back, and forgets


class ToyFactory(ContextFactory):
    def __init__(self, pool: ToyPool) -> None:
        self.pool = pool

    def make_object_for_context(self, name: str, span: Span) -> ToyClient:
        self.pool.watch.watch_request(name, span)
        return ToyClient(self.pool, span)


@pytest.fixture
def service(statsd):
    pool = ToyPool(size=4)
    baseplate = make_baseplate(statsd, toy=ToyFactory(pool))
    return types.SimpleNamespace(baseplate=baseplate, pool=pool, statsd=statsd)


def serve(service: Any, call: str) -> Any:
    context = types.SimpleNamespace()
    with service.baseplate.make_server_span(context, "handler") as server_span:
        getattr(context.toy, call)()
    return server_span


def lines(statsd: Any) -> list[str]:
    return [line for datagram in statsd.received() for line in datagram.decode().split("\n")]


def test_a_request_that_returns_its_connections_reports_the_gauges(service):
    serve(service, "well_behaved_call")
    sent = lines(service.statsd)
    assert "svc.clients.toy.pool.size:4|g" in sent
    assert "svc.clients.toy.pool.in_use:0|g" in sent
    assert not [line for line in sent if "leaked" in line]


def test_a_connection_still_out_at_the_end_is_a_leak(service, caplog):
    with caplog.at_level(logging.WARNING, logger="baseplate.context.pool_watch"):
        first, _ = [serve(service, "leaky_call") for _ in range(2)]  # one code path, twice

    sent = lines(service.statsd)
    assert sent.count("svc.clients.toy.pool.leaked:1|c") == 2
    assert "svc.clients.toy.pool.in_use:1|g" in sent
    assert "svc.clients.toy.pool.in_use:2|g" in sent
    # One warning per code path, with the request's trace id and the checkout's stack.
    [warning] = [r for r in caplog.records if r.name == "baseplate.context.pool_watch"]
    message = warning.getMessage()
    assert f"trace {first.trace_id}" in message
    assert "in leaky_call" in message
    assert "getattr(context.toy, call)()" in message  # the line that made the call


def test_checkouts_outside_a_request_are_not_charged(service):
    connection = service.pool.get()
    serve(service, "well_behaved_call")
    assert not [line for line in lines(service.statsd) if "leaked" in line]
    service.pool.put(connection)
