"""The current span under gevent: the shared scenarios, plus spawned work and timeouts.

gevent is not monkey-patched here: greenlets sleep with ``gevent.sleep``. Each
greenlet has its own :mod:`contextvars` context and a new greenlet starts with
an *empty* one, so work spawned during a request sees the request's span only
through :mod:`bridge.greenlets`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gevent
import pytest
from opentelemetry.trace import StatusCode

from bridge import greenlets
from tests.core.scenarios import (
    ContextScenarios,
    assert_child_of,
    assert_no_current_span,
    current_span_id,
    exported_by_name,
    has_exception_event,
    native_tracer,
    start_request,
)

T = TypeVar("T")


def _new_greenlet(function: Callable[..., T], *args: Any) -> gevent.Greenlet:
    # Built directly, so that a patched gevent.spawn never decides the context.
    greenlet = gevent.Greenlet(function, *args)
    greenlet.start()
    return greenlet


class GeventRunner:
    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def run_fresh(self, function: Callable[..., T], *args: Any) -> T:
        return _new_greenlet(function, *args).get(timeout=30)

    def run_concurrently(self, functions: list[Callable[[], T]]) -> list[T]:
        spawned = [gevent.spawn(function) for function in functions]
        gevent.joinall(spawned, timeout=30, raise_error=True)
        return [greenlet.get(block=False) for greenlet in spawned]


class TestGreenlets(ContextScenarios):
    runner = GeventRunner()


def in_greenlet(function: Callable[..., T], *args: Any) -> T:
    return GeventRunner().run_fresh(function, *args)


# -- spawned work -------------------------------------------------------------


def observe() -> int:
    """What spawned work sees as current; it also makes a native span to check its parent."""
    seen = current_span_id()
    with native_tracer().start_as_current_span("spawned-native"):
        pass
    return seen


def request_spawning(spawn: Callable[[Callable[[], int]], gevent.Greenlet]) -> tuple[int, int]:
    """Start a request, spawn ``observe`` with ``spawn``, wait for it, finish the request."""
    server = start_request()
    try:
        seen = spawn(observe).get(timeout=30)
        assert current_span_id() == server.id
    finally:
        server.finish()
    assert_no_current_span()
    return server.id, seen


def assert_carried(spans, spawn: Callable[[Callable[[], int]], gevent.Greenlet]) -> None:
    server_id, seen = in_greenlet(request_spawning, spawn)
    assert seen == server_id
    exported = exported_by_name(spans)
    assert_child_of(exported["spawned-native"], exported["request"])


def assert_not_carried(spans, spawn: Callable[[Callable[[], int]], gevent.Greenlet]) -> None:
    _, seen = in_greenlet(request_spawning, spawn)
    assert seen == 0
    exported = exported_by_name(spans)
    assert exported["spawned-native"].parent is None
    assert exported["spawned-native"].context.trace_id != exported["request"].context.trace_id


@pytest.fixture
def patched_spawn() -> Iterator[None]:
    greenlets.patch_gevent_spawn()
    try:
        yield
    finally:
        greenlets.unpatch_gevent_spawn()


def test_plain_gevent_spawn_loses_the_current_span(spans):
    """Pitfall: a greenlet from plain ``gevent.spawn`` starts with an empty context,
    so it sees no current span and its native spans start new traces."""
    assert_not_carried(spans, gevent.spawn)


def test_spawn_helper_carries_the_current_span(spans):
    assert_carried(spans, greenlets.spawn)


def test_carry_context_wrapper_carries_the_current_span(spans):
    assert_carried(spans, lambda function: gevent.spawn(greenlets.carry_context(function)))


def test_spawn_later_helper_carries_the_current_span(spans):
    assert_carried(spans, lambda function: greenlets.spawn_later(0.001, function))


@pytest.mark.usefixtures("patched_spawn")
def test_patched_gevent_spawn_carries_the_current_span(spans):
    assert gevent.spawn is greenlets.spawn
    assert_carried(spans, gevent.spawn)


@pytest.mark.usefixtures("patched_spawn")
def test_patched_gevent_spawn_later_carries_the_current_span(spans):
    assert_carried(spans, lambda function: gevent.spawn_later(0.001, function))


def test_unpatched_gevent_spawn_no_longer_carries_the_current_span(spans):
    greenlets.patch_gevent_spawn()
    greenlets.unpatch_gevent_spawn()
    assert_not_carried(spans, gevent.spawn)
    spans.clear()
    assert_not_carried(spans, lambda function: gevent.spawn_later(0.001, function))


def test_facade_child_in_spawned_greenlet_leaves_the_request_greenlet_alone(spans):
    """A child started and finished in a spawned greenlet restores that greenlet's
    copy of the context; the request greenlet keeps its server span throughout."""

    def scenario() -> None:
        server = start_request()

        def child_work() -> tuple[int, int]:
            with server.make_child("in-greenlet") as child:
                during = current_span_id()
                assert during == child.id
                gevent.sleep(0.001)
            return during, current_span_id()

        worker = greenlets.spawn(child_work)
        gevent.sleep(0)
        # While the worker's child is current over there, here the server span is.
        assert current_span_id() == server.id
        _, after = worker.get(timeout=30)
        assert after == server.id
        assert current_span_id() == server.id
        server.finish()
        assert_no_current_span()

    in_greenlet(scenario)
    exported = exported_by_name(spans)
    assert_child_of(exported["in-greenlet"], exported["request"])


# -- timeouts and killed greenlets --------------------------------------------


def test_timeout_inside_child_ends_it_and_restores_the_server_span(spans):
    def scenario() -> None:
        server = start_request()
        timeout = gevent.Timeout(0.001)
        timeout.start()
        try:
            with pytest.raises(gevent.Timeout) as raised, server.make_child("slow"):
                gevent.sleep(0.01)
            assert raised.value is timeout
        finally:
            timeout.close()
        assert current_span_id() == server.id
        server.finish()
        assert_no_current_span()

    in_greenlet(scenario)
    exported = exported_by_name(spans)
    slow = exported["slow"]
    assert_child_of(slow, exported["request"])
    assert slow.status.status_code is StatusCode.ERROR
    assert has_exception_event(slow, "Timeout")


def test_timeout_context_manager_around_nested_spans(spans):
    """``with gevent.Timeout(..., False)`` swallows the timeout after unwinding two spans."""

    def scenario() -> None:
        server = start_request()
        with (
            gevent.Timeout(0.001, False),
            server.make_child("outer", local=True, component_name="c") as outer,
            outer.make_child("inner"),
        ):
            gevent.sleep(0.01)
        assert current_span_id() == server.id
        server.finish()
        assert_no_current_span()

    in_greenlet(scenario)
    exported = exported_by_name(spans)
    assert_child_of(exported["outer"], exported["request"])
    assert_child_of(exported["inner"], exported["outer"])
    assert exported["inner"].status.status_code is StatusCode.ERROR
    assert exported["outer"].status.status_code is StatusCode.ERROR


def test_killed_greenlet_ends_its_span(spans):
    def scenario() -> None:
        server = start_request()

        def doomed() -> None:
            with server.make_child("doomed"):
                gevent.sleep(0.01)

        worker = greenlets.spawn(doomed)
        gevent.sleep(0.001)
        worker.kill(block=True, timeout=30)
        assert worker.dead
        assert current_span_id() == server.id
        server.finish()
        assert_no_current_span()

    in_greenlet(scenario)
    exported = exported_by_name(spans)
    assert_child_of(exported["doomed"], exported["request"])
    assert has_exception_event(exported["doomed"], "GreenletExit")


def test_span_left_open_by_a_timeout_can_be_finished_by_another_greenlet(spans):
    """A span started without ``with`` and abandoned when a timeout unwinds the
    request is finished later by a cleanup greenlet; the request greenlet's
    next finish walks back past it."""

    def scenario() -> None:
        server = start_request()
        abandoned = server.make_child("abandoned")
        with gevent.Timeout(0.001, False):
            abandoned.start()
            gevent.sleep(0.01)
        cleanup = gevent.spawn(abandoned.finish)
        cleanup.get(timeout=30)
        server.finish()
        assert_no_current_span()

    in_greenlet(scenario)
    exported = exported_by_name(spans)
    assert_child_of(exported["abandoned"], exported["request"])
