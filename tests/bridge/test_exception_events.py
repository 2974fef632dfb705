"""bridge.exception_events: the SDK's exception event, its stack trace formatted when read."""

from __future__ import annotations

import builtins
import gc
import re
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext
from opentelemetry.util.types import Attributes

from bridge.exception_events import ExceptionEvent, record_exception

KEYS = ("exception.type", "exception.message", "exception.stacktrace", "exception.escaped")
# A frame's line, its source line, then (Python 3.11+) a line of carets under the expression.
FRAME_LINE = re.compile(r'  File ".*", line \d+, in .*\n')
CARET_LINE = re.compile(r" *[~^]+ *\n")


class LocalError(Exception):
    """An exception class of this module, so its type name carries the module."""


class Tracing:
    """A provider of its own (not the global one) exporting to memory."""

    def __init__(self, limits: SpanLimits | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False, span_limits=limits)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer(__name__)

    def exported(self, record: Callable[[Any, BaseException], None], exc: BaseException) -> Event:
        """The single event of a span that recorded ``exc`` with ``record``, once exported."""
        span = self.tracer.start_span("failed")
        record(span, exc)
        span.end()
        exported = self.exporter.get_finished_spans()[-1]
        assert exported.name == "failed"
        [event] = exported.events
        return event


def ours(span: Any, exc: BaseException) -> None:
    record_exception(span, exc)


def sdks(span: Any, exc: BaseException) -> None:
    span.record_exception(exc)


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    made = Tracing()
    yield made
    made.provider.shutdown()


def without_carets(text: str) -> str:
    """``text`` without the caret lines Python 3.11 draws under a frame's source line."""
    lines = text.splitlines(keepends=True)
    return "".join(
        line
        for index, line in enumerate(lines)
        if not (
            CARET_LINE.fullmatch(line) and index >= 2 and FRAME_LINE.fullmatch(lines[index - 2])
        )
    )


def expected(exc: BaseException) -> str:
    return without_carets("".join(traceback.format_exception(exc)))


def stacktrace(event: Event) -> str:
    attributes = event.attributes
    assert attributes is not None
    value = attributes["exception.stacktrace"]
    assert isinstance(value, str)
    return value


# -- the exceptions -----------------------------------------------------------


def caught(fail: Callable[[], object]) -> BaseException:
    try:
        fail()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def simple_raise() -> None:
    raise ValueError("bad value")


def outer() -> None:
    middle()


def middle() -> None:
    simple_raise()


def raise_from() -> None:
    empty: dict[str, int] = {}
    try:
        empty["missing"]
    except KeyError as exc:
        raise RuntimeError("lookup failed") from exc


def implicit_chain() -> None:
    try:
        simple_raise()
    except ValueError:
        int("not a number")


def from_none() -> None:
    try:
        simple_raise()
    except ValueError:
        raise LookupError("replaced") from None


def with_note() -> None:
    exc = ValueError("annotated")
    if sys.version_info >= (3, 11):
        exc.add_note("first note")
        exc.add_note("a note\non two lines")
    raise exc


def empty_message() -> None:
    raise KeyboardInterrupt


def local_class() -> None:
    raise LocalError("ours")


def recursion(depth: int) -> None:
    if depth == 0:
        raise ValueError("bottom")
    recursion(depth - 1)


def syntax_error() -> None:
    compile("x = (1,\n    a b\n", "<generated>", "exec")


CASES = [
    pytest.param(simple_raise, id="simple"),
    pytest.param(outer, id="nested-calls"),
    pytest.param(raise_from, id="raise-from"),
    pytest.param(implicit_chain, id="implicit-chain"),
    pytest.param(from_none, id="from-none"),
    pytest.param(
        with_note,
        id="note",
        marks=pytest.mark.skipif(sys.version_info < (3, 11), reason="notes are 3.11's"),
    ),
    pytest.param(empty_message, id="empty-message"),
    pytest.param(local_class, id="local-class"),
    pytest.param(lambda: recursion(10), id="recursion"),
    pytest.param(syntax_error, id="syntax-error"),
]


# -- the event ----------------------------------------------------------------


def test_the_event_has_the_sdks_attributes(tracing: Tracing) -> None:
    exc = caught(local_class)
    before = time.time_ns()
    event = tracing.exported(ours, exc)
    after = time.time_ns()
    sdk_event = tracing.exported(sdks, exc)

    assert isinstance(event, Event)
    assert event.name == sdk_event.name == "exception"
    assert before <= event.timestamp <= after
    assert event.attributes is not None
    assert sdk_event.attributes is not None
    assert tuple(event.attributes) == tuple(sdk_event.attributes) == KEYS
    for key in ("exception.type", "exception.message", "exception.escaped"):
        assert event.attributes[key] == sdk_event.attributes[key]
    assert event.attributes["exception.type"] == f"{__name__}.LocalError"
    assert event.dropped_attributes == sdk_event.dropped_attributes == 0


def test_a_builtin_exceptions_type_has_no_module(tracing: Tracing) -> None:
    attributes = tracing.exported(ours, caught(simple_raise)).attributes
    assert attributes is not None
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "bad value"


def test_the_stacktrace_names_the_raising_frame(tracing: Tracing) -> None:
    text = stacktrace(tracing.exported(ours, caught(simple_raise)))
    line = simple_raise.__code__.co_firstlineno + 1
    assert text.startswith("Traceback (most recent call last):\n")
    assert f'  File "{__file__}", line {line}, in simple_raise\n' in text
    assert '    raise ValueError("bad value")\n' in text
    assert text.endswith("\nValueError: bad value\n")


@pytest.mark.parametrize("fail", CASES)
def test_the_stacktrace_reads_like_format_exception(
    tracing: Tracing, fail: Callable[[], object]
) -> None:
    exc = caught(fail)
    assert stacktrace(tracing.exported(ours, exc)) == expected(exc)


def test_an_exception_never_raised_has_no_traceback_header(tracing: Tracing) -> None:
    exc = KeyError("never raised")
    assert stacktrace(tracing.exported(ours, exc)) == expected(exc) == "KeyError: 'never raised'\n"


def test_a_chain_that_loops_ends_where_it_starts_again(tracing: Tracing) -> None:
    first = caught(simple_raise)
    second = caught(local_class)
    first.__context__ = second
    second.__context__ = first
    assert stacktrace(tracing.exported(ours, first)) == expected(first)


def test_the_traceback_limit_applies_when_formatted(
    tracing: Tracing, monkeypatch: pytest.MonkeyPatch
) -> None:
    exc = caught(outer)
    monkeypatch.setattr(sys, "tracebacklimit", 2, raising=False)
    assert stacktrace(tracing.exported(ours, exc)) == expected(exc)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are 3.11's")
def test_an_exception_group_is_formatted_as_an_ordinary_exception(tracing: Tracing) -> None:
    group_class = vars(builtins)["ExceptionGroup"]  # by name: mypy and ruff check for 3.10

    def group() -> None:
        raise group_class("several", [ValueError("one"), KeyError("two")])

    text = stacktrace(tracing.exported(ours, caught(group)))
    assert text.startswith("Traceback (most recent call last):\n")
    assert text.endswith("\nExceptionGroup: several (2 sub-exceptions)\n")


# -- formatting when read -----------------------------------------------------


def formatted(event: ExceptionEvent) -> bool:
    return event.stacktrace_formatted


def test_the_stack_is_formatted_on_the_first_read_only(tracing: Tracing) -> None:
    event = tracing.exported(ours, caught(outer))
    assert isinstance(event, ExceptionEvent)
    assert not formatted(event)  # recorded, ended, exported: still not formatted
    assert event.dropped_attributes == 0
    assert not formatted(event)
    first = event.attributes
    assert formatted(event)
    assert event.attributes is first
    assert stacktrace(event) == stacktrace(event)


def read_when_all_ready(event: Event, barrier: threading.Barrier, seen: list[Attributes]) -> None:
    barrier.wait()
    seen.append(event.attributes)


def test_readers_racing_the_first_read_get_the_same_attributes(tracing: Tracing) -> None:
    for _ in range(20):
        event = tracing.exported(ours, caught(outer))
        barrier = threading.Barrier(4)
        seen: list[Attributes] = []
        readers = [
            threading.Thread(target=read_when_all_ready, args=(event, barrier, seen))
            for _ in range(4)
        ]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        assert len(seen) == 4
        assert all(attributes is seen[0] for attributes in seen)


def test_the_attributes_are_immutable(tracing: Tracing) -> None:
    attributes: Any = tracing.exported(ours, caught(simple_raise)).attributes
    with pytest.raises(TypeError):
        attributes["exception.message"] = "changed"


class Marker:
    """Something only the failing frame refers to."""


def fail_holding(markers: list[weakref.ref[Marker]]) -> None:
    local = Marker()
    markers.append(weakref.ref(local))
    raise ValueError("failed with a local")


def test_no_frame_is_kept(tracing: Tracing) -> None:
    markers: list[weakref.ref[Marker]] = []
    span = tracing.tracer.start_span("failed")
    try:
        fail_holding(markers)
    except ValueError as exc:
        record_exception(span, exc)
    span.end()
    gc.collect()
    assert markers[0]() is None
    exported = tracing.exporter.get_finished_spans()[-1]
    assert "in fail_holding\n" in stacktrace(exported.events[0])


# -- other spans --------------------------------------------------------------


def test_a_non_recording_span_records_nothing() -> None:
    span = NonRecordingSpan(SpanContext(1, 2, False))
    record_exception(span, caught(simple_raise))


def test_an_ended_sdk_span_records_nothing(tracing: Tracing) -> None:
    span = tracing.tracer.start_span("done")
    span.end()
    record_exception(span, caught(simple_raise))
    readable: ReadableSpan = tracing.exporter.get_finished_spans()[-1]
    assert readable.events == ()


class OwnSpan(trace.Span):
    """A span of another implementation, recording exceptions its own way."""

    def __init__(self, recording: bool) -> None:
        self.recording = recording
        self.exceptions: list[BaseException] = []

    def end(self, end_time: int | None = None) -> None:
        self.recording = False

    def get_span_context(self) -> SpanContext:
        return SpanContext(1, 2, False)

    def set_attributes(self, attributes: Any) -> None:
        pass

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def add_event(self, name: str, attributes: Attributes = None, timestamp: Any = None) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass

    def is_recording(self) -> bool:
        return self.recording

    def set_status(self, status: Any, description: str | None = None) -> None:
        pass

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.exceptions.append(exception)


def test_another_recording_span_records_the_exception_itself() -> None:
    span = OwnSpan(recording=True)
    exc = caught(simple_raise)
    record_exception(span, exc)
    assert span.exceptions == [exc]


def test_another_span_not_recording_records_nothing() -> None:
    span = OwnSpan(recording=False)
    record_exception(span, caught(simple_raise))
    assert span.exceptions == []


# -- limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param(SpanLimits(max_event_attributes=2), id="two-attributes"),
        pytest.param(SpanLimits(max_event_attributes=0), id="no-attributes"),
        pytest.param(SpanLimits(max_attribute_length=20), id="short-values"),
    ],
)
def test_the_spans_limits_apply_as_to_the_sdks_event(limits: SpanLimits) -> None:
    tracing = Tracing(limits)
    exc = caught(simple_raise)
    event = tracing.exported(ours, exc)
    sdk_event = tracing.exported(sdks, exc)
    assert event.dropped_attributes == sdk_event.dropped_attributes
    assert event.attributes is not None
    assert sdk_event.attributes is not None
    assert dict(event.attributes) == dict(sdk_event.attributes)
    assert event.dropped_attributes == sdk_event.dropped_attributes
    tracing.provider.shutdown()


def test_two_attributes_keep_the_last_two() -> None:
    tracing = Tracing(SpanLimits(max_event_attributes=2))
    event = tracing.exported(ours, caught(simple_raise))
    assert event.attributes is not None
    assert tuple(event.attributes) == ("exception.stacktrace", "exception.escaped")
    assert event.dropped_attributes == 2
    tracing.provider.shutdown()
