"""Context scenarios shared by the thread and the gevent test modules.

Each scenario is written once, against a :class:`Runner` that knows how to
sleep, how to run a function in a brand-new thread or greenlet (which starts
with an empty :mod:`contextvars` context) and how to run many functions
concurrently. ``test_context_threads`` and ``test_context_gevent`` subclass
:class:`ContextScenarios` with their own runner, so every scenario runs once
per concurrency model.

Every scenario runs inside a fresh thread or greenlet (``runner.run_fresh``),
so the test's own context is never polluted and the gevent variant really
runs inside a greenlet.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from baseplate.core import Baseplate, ServerSpan, Span

T = TypeVar("T")

#: Upper bound of every random sleep in the scenarios, in seconds.
MAX_SLEEP = 0.005


class Runner(Protocol):
    """How a concurrency model runs work."""

    def sleep(self, seconds: float) -> None:
        """Sleep, letting other threads or greenlets run."""

    def run_fresh(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` in a new thread/greenlet, wait and return its result (or raise)."""

    def run_concurrently(self, functions: list[Callable[[], T]]) -> list[T]:
        """Run the functions concurrently; their results, in order (re-raising any failure)."""


# -- helpers ----------------------------------------------------------------


def current_span_id() -> int:
    """The span id of the current OpenTelemetry span (0 when there is none)."""
    return trace.get_current_span().get_span_context().span_id


def assert_no_current_span() -> None:
    current = trace.get_current_span()
    assert current is trace.INVALID_SPAN or not current.get_span_context().is_valid, current


def start_request(name: str = "request") -> ServerSpan:
    server = Baseplate().make_server_span(SimpleNamespace(), name)
    server.start()
    return server


def exported_by_name(spans) -> dict[str, ReadableSpan]:
    finished = spans.get_finished_spans()
    by_name = {span.name: span for span in finished}
    assert len(by_name) == len(finished), [span.name for span in finished]
    return by_name


def assert_child_of(exported: ReadableSpan, parent: ReadableSpan) -> None:
    assert exported.parent is not None, exported.name
    assert exported.parent.span_id == parent.context.span_id, exported.name
    assert exported.context.trace_id == parent.context.trace_id, exported.name


def native_tracer() -> trace.Tracer:
    return trace.get_tracer("test")


def has_exception_event(exported: ReadableSpan, type_name: str) -> bool:
    return any(
        event.name == "exception"
        and str((event.attributes or {}).get("exception.type", "")).endswith(type_name)
        for event in exported.events
    )


# -- the concurrent-requests scenario -----------------------------------------


@dataclass
class RequestOutcome:
    index: int
    server_id: int
    seen_at_start: int
    #: (moment, span id expected to be current, span id that was current)
    observations: list[tuple[str, int, int]] = field(default_factory=list)
    native_id: int = 0
    child_id: int = 0
    seen_after: int = -1

    def observe(self, moment: str, expected: int) -> None:
        self.observations.append((moment, expected, current_span_id()))


def serve_one_request(runner: Runner, index: int) -> RequestOutcome:
    """One request: server span, a native span and a facade child, with sleeps between."""
    rng = random.Random(index)

    def nap() -> None:
        runner.sleep(rng.uniform(0, MAX_SLEEP))

    seen_at_start = current_span_id()
    server = start_request(f"request-{index}")
    outcome = RequestOutcome(index, server.id, seen_at_start)
    outcome.observe("after start", server.id)
    nap()
    outcome.observe("after first sleep", server.id)
    with native_tracer().start_as_current_span(f"native-{index}") as native:
        outcome.native_id = native.get_span_context().span_id
        outcome.observe("in native span", outcome.native_id)
        nap()
        outcome.observe("in native span after sleep", outcome.native_id)
    outcome.observe("after native span", server.id)
    with server.make_child(f"child-{index}", local=True, component_name="c") as child:
        outcome.child_id = child.id
        outcome.observe("in child", child.id)
        nap()
        outcome.observe("in child after sleep", child.id)
    outcome.observe("after child", server.id)
    nap()
    outcome.observe("before finish", server.id)
    server.finish()
    outcome.seen_after = current_span_id()
    return outcome


# -- the scenarios ------------------------------------------------------------


class ContextScenarios:
    """Scenarios every concurrency model must pass; subclasses set ``runner``."""

    runner: Runner

    # 1. basic nesting

    def test_current_span_follows_nesting(self, spans):
        def scenario() -> None:
            assert_no_current_span()
            server = start_request()
            assert current_span_id() == server.id
            child = server.make_child("child")
            child.start()
            assert current_span_id() == child.id
            local = child.make_child("local", local=True, component_name="c")
            with local:
                assert current_span_id() == local.id
            assert current_span_id() == child.id
            child.finish()
            assert current_span_id() == server.id
            server.finish()
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        assert exported["request"].parent is None
        assert_child_of(exported["child"], exported["request"])
        assert_child_of(exported["local"], exported["child"])

    def test_server_span_restores_the_context_it_started_in(self, spans):
        """A server span started under a native span gives that span back when it finishes."""

        def scenario() -> None:
            with native_tracer().start_as_current_span("outer") as outer:
                server = start_request()
                assert current_span_id() == server.id
                server.finish()
                assert current_span_id() == outer.get_span_context().span_id
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        # A server span without upstream ids is a new root, whatever is current.
        assert exported["request"].parent is None

    # 2. out-of-order finish

    def test_server_finished_before_child_leaves_no_finished_span_current(self, spans):
        def scenario() -> None:
            server = start_request()
            child = server.make_child("child")
            child.start()
            server.finish()
            # The child is still running: it may stay current, the server may not.
            assert current_span_id() == child.id
            child.finish()
            assert current_span_id() not in (server.id, child.id)
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        assert_child_of(exported["child"], exported["request"])

    def test_siblings_finished_out_of_order_give_back_the_server_span(self, spans):
        def scenario() -> None:
            server = start_request()
            first = server.make_child("first")
            first.start()
            second = server.make_child("second", local=True, component_name="c")
            second.start()
            first.finish()
            assert current_span_id() == second.id
            second.finish()
            assert current_span_id() == server.id
            server.finish()
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        assert_child_of(exported["first"], exported["request"])
        assert_child_of(exported["second"], exported["request"])

    def test_native_span_stays_current_when_its_facade_parent_finishes_early(self, spans):
        def scenario() -> None:
            server = start_request()
            child = server.make_child("child", local=True, component_name="c")
            child.start()
            with native_tracer().start_as_current_span("native") as native:
                child.finish()
                assert current_span_id() == native.get_span_context().span_id
                with native_tracer().start_as_current_span("inner"):
                    pass
            server.finish()
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        assert_child_of(exported["inner"], exported["native"])

    # 3. exceptions

    def test_exception_in_child_propagates_and_is_recorded(self, spans):
        class BoomError(Exception):
            pass

        def scenario() -> None:
            server = start_request()
            with pytest.raises(BoomError, match="kaboom"), server.make_child("x"):
                raise BoomError("kaboom")
            assert current_span_id() == server.id
            server.finish()
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        failed = exported["x"]
        assert_child_of(failed, exported["request"])
        assert failed.status.status_code is StatusCode.ERROR
        assert failed.status.description == "kaboom"
        assert has_exception_event(failed, "BoomError")
        assert exported["request"].status.status_code is not StatusCode.ERROR

    # 4. finishing in another context

    def test_child_finished_in_another_context(self, spans):
        def scenario() -> None:
            server = start_request()
            child = server.make_child("handed-off")
            child.start()
            # finish() in a context where the child was never current: no exception,
            # and the other context's (empty) current span is left alone.
            assert self.runner.run_fresh(finish_and_report, child) == 0
            # A facade span finishing here walks back past the finished child.
            with server.make_child("next", local=True, component_name="c") as following:
                assert current_span_id() == following.id
            assert current_span_id() == server.id
            server.finish()
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        assert_child_of(exported["handed-off"], exported["request"])
        assert_child_of(exported["next"], exported["request"])

    def test_child_finished_elsewhere_then_server_finish_leaves_context_clean(self, spans):
        def scenario() -> None:
            server = start_request()
            child = server.make_child("handed-off", local=True, component_name="c")
            child.start()
            self.runner.run_fresh(child.finish)
            server.finish()
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        assert_child_of(exported["handed-off"], exported["request"])

    def test_child_finished_in_another_request_context(self, spans):
        """Finishing a span inside another request's context leaves that request's span current."""

        def other_request(foreign: Span) -> tuple[int, int]:
            server = start_request("other")
            foreign.finish()
            seen = current_span_id()
            server.finish()
            return server.id, seen

        def scenario() -> None:
            server = start_request()
            child = server.make_child("handed-off")
            child.start()
            other_id, seen = self.runner.run_fresh(other_request, child)
            assert seen == other_id
            server.finish()
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        assert_child_of(exported["handed-off"], exported["request"])
        assert exported["other"].parent is None

    def test_span_in_generator_consumed_elsewhere(self, spans):
        def produce(server: ServerSpan) -> Iterator[int]:
            with server.make_child("generator", local=True, component_name="c") as child:
                yield child.id
                yield current_span_id()

        def consume_rest(items: Iterator[int]) -> list[int]:
            rest = list(items)
            rest.append(current_span_id())
            return rest

        def scenario() -> None:
            server = start_request()
            items = produce(server)
            child_id = next(items)
            # The generator started its span in this context...
            assert current_span_id() == child_id
            # ...and the rest of it, with the span's end, runs elsewhere.
            seen_in_generator, seen_after = self.runner.run_fresh(consume_rest, items)
            assert seen_after == 0
            assert seen_in_generator == 0  # the span was never current over there
            server.finish()
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        assert_child_of(exported["generator"], exported["request"])

    def test_generator_run_entirely_elsewhere(self, spans):
        def produce(server: ServerSpan) -> Iterator[int]:
            with server.make_child("generator", local=True, component_name="c") as child:
                yield child.id
                yield current_span_id()

        def consume(items: Iterator[int]) -> tuple[list[int], int]:
            return list(items), current_span_id()

        def scenario() -> None:
            server = start_request()
            items = produce(server)
            (child_id, seen_in_generator), seen_after = self.runner.run_fresh(consume, items)
            assert seen_in_generator == child_id
            assert seen_after == 0
            assert current_span_id() == server.id
            server.finish()
            assert_no_current_span()

        self.runner.run_fresh(scenario)
        exported = exported_by_name(spans)
        assert_child_of(exported["generator"], exported["request"])

    def test_server_span_finished_elsewhere_then_next_request_is_clean(self, spans):
        """A streamed response ends its server span in another context; the worker's
        next request must neither be parented to it nor leave anything current."""

        def scenario() -> tuple[int, int, int]:
            streamed = start_request("streamed")
            self.runner.run_fresh(streamed.finish)
            following = start_request("following")
            seen = current_span_id()
            following.finish()
            assert_no_current_span()
            return streamed.id, following.id, seen

        _, following_id, seen = self.runner.run_fresh(scenario)
        assert seen == following_id
        exported = exported_by_name(spans)
        assert exported["following"].parent is None
        assert exported["following"].context.trace_id != exported["streamed"].context.trace_id

    # 5. concurrent requests

    def test_concurrent_requests_do_not_bleed(self, spans):
        count = 50

        def scenario() -> list[RequestOutcome]:
            requests = [functools.partial(serve_one_request, self.runner, i) for i in range(count)]
            return self.runner.run_concurrently(requests)

        outcomes = self.runner.run_fresh(scenario)
        assert len(outcomes) == count
        exported = exported_by_name(spans)
        assert len(exported) == 3 * count
        for outcome in outcomes:
            assert outcome.seen_at_start == 0, outcome
            for moment, expected, seen in outcome.observations:
                assert seen == expected, (outcome.index, moment)
            assert outcome.seen_after == 0, outcome
            server = exported[f"request-{outcome.index}"]
            assert server.context.span_id == outcome.server_id
            assert server.parent is None
            for name, span_id in (
                (f"native-{outcome.index}", outcome.native_id),
                (f"child-{outcome.index}", outcome.child_id),
            ):
                assert exported[name].context.span_id == span_id
                assert_child_of(exported[name], server)
        assert len({outcome.server_id for outcome in outcomes}) == count


def finish_and_report(span: Span) -> int:
    """Finish ``span`` and return the span id current afterwards."""
    span.finish()
    return current_span_id()
