"""The current span under threads: the shared scenarios, plus what threads do on their own.

Each thread has its own :mod:`contextvars` context, and (on the Pythons we
support) a new thread starts with an *empty* one; work handed to a new thread
or a pool sees the request's span only when run in a copy of the context.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tests.core.scenarios import (
    ContextScenarios,
    assert_child_of,
    assert_no_current_span,
    current_span_id,
    exported_by_name,
    native_tracer,
    start_request,
)

T = TypeVar("T")

#: The request pool is smaller than the number of requests, so threads are reused.
POOL_SIZE = 8


class ThreadRunner:
    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def run_fresh(self, function: Callable[..., T], *args: Any) -> T:
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["result"] = function(*args)
            except BaseException as error:
                outcome["error"] = error

        thread = threading.Thread(target=target)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def run_concurrently(self, functions: list[Callable[[], T]]) -> list[T]:
        with ThreadPoolExecutor(max_workers=POOL_SIZE) as pool:
            futures = [pool.submit(function) for function in functions]
            return [future.result(timeout=30) for future in futures]


class TestThreads(ContextScenarios):
    runner = ThreadRunner()


# -- threads only -------------------------------------------------------------


def work_in_request_thread(spawn_work: Callable[[Callable[[], T]], T]) -> tuple[int, T]:
    """Start a request, hand ``observe`` to ``spawn_work``, and finish the request."""
    server = start_request()
    try:
        result = spawn_work(observe)
        assert current_span_id() == server.id
    finally:
        server.finish()
    assert_no_current_span()
    return server.id, result


def observe() -> int:
    """What spawned work sees as current; it also makes a native span to check its parent."""
    seen = current_span_id()
    with native_tracer().start_as_current_span("spawned-native"):
        pass
    return seen


def in_new_thread(function: Callable[[], T]) -> T:
    return ThreadRunner().run_fresh(function)


def in_new_thread_with_copied_context(function: Callable[[], T]) -> T:
    context = contextvars.copy_context()
    return ThreadRunner().run_fresh(context.run, function)


def test_new_thread_does_not_inherit_the_current_span(spans):
    """Pitfall: contextvars are per thread and a new thread starts with an empty
    context, so work started in a plain thread during a request sees no current
    span, and native spans it creates start new traces."""
    _, seen = in_new_thread(lambda: work_in_request_thread(in_new_thread))
    assert seen == 0
    exported = exported_by_name(spans)
    assert exported["spawned-native"].parent is None
    assert exported["spawned-native"].context.trace_id != exported["request"].context.trace_id


def test_new_thread_run_in_copied_context_sees_the_request_span(spans):
    """``contextvars.copy_context().run`` carries the request's span into the thread."""
    server_id, seen = in_new_thread(
        lambda: work_in_request_thread(in_new_thread_with_copied_context)
    )
    assert seen == server_id
    exported = exported_by_name(spans)
    assert_child_of(exported["spawned-native"], exported["request"])


def test_thread_pool_work_needs_a_copied_context(spans):
    """Pitfall: a pool's worker threads run submitted work in their own context;
    submitting ``copy_context().run`` carries the request's span."""

    def scenario() -> tuple[int, int, int]:
        server = start_request()
        with ThreadPoolExecutor(max_workers=1) as pool:
            plain = pool.submit(current_span_id).result(timeout=30)
            carried = pool.submit(contextvars.copy_context().run, current_span_id).result(
                timeout=30
            )
            # The copy ran in the worker without changing the worker's own context.
            after = pool.submit(current_span_id).result(timeout=30)
        server.finish()
        assert plain == 0
        assert after == 0
        return server.id, carried, after

    server_id, carried, _ = in_new_thread(scenario)
    assert carried == server_id


def test_facade_child_in_copied_context_thread_leaves_request_thread_alone(spans):
    """A child started and finished in a thread running a copy of the request's
    context restores the copy, and the request thread keeps its server span."""

    def scenario() -> None:
        server = start_request()

        def child_work() -> tuple[int, int]:
            with server.make_child("in-thread", local=True, component_name="c") as child:
                during = current_span_id()
                assert during == child.id
            return during, current_span_id()

        _, after = in_new_thread_with_copied_context(child_work)
        assert after == server.id
        assert current_span_id() == server.id
        server.finish()
        assert_no_current_span()

    in_new_thread(scenario)
    exported = exported_by_name(spans)
    assert_child_of(exported["in-thread"], exported["request"])
