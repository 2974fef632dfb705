"""bridge.processor: owners hear of the spans started under theirs, each processor on its own."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
from opentelemetry.trace import Tracer

from bridge import current
from bridge.processor import OwnerNotifyingSpanProcessor, SpanOwner


class RecordingOwner:
    """An owner that adopts every span under it, as itself."""

    def __init__(self) -> None:
        self.adopted: list[str] = []
        self.ended: list[str] = []

    def adopt_span(self, span: Span) -> SpanOwner | None:
        self.adopted.append(span.name)
        return self

    def adopted_span_ended(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)


class BrokenOwner:
    def adopt_span(self, span: Span) -> SpanOwner | None:
        raise RuntimeError("owner bug")

    def adopted_span_ended(self, span: ReadableSpan) -> None:
        raise AssertionError("never adopted anything")


@pytest.fixture
def watching() -> Iterator[tuple[OwnerNotifyingSpanProcessor, Tracer]]:
    """A processor on a provider of its own (not the global one), and its tracer."""
    processor = OwnerNotifyingSpanProcessor()
    sdk_provider = TracerProvider(shutdown_on_exit=False)
    sdk_provider.add_span_processor(processor)
    yield processor, sdk_provider.get_tracer("test")
    sdk_provider.shutdown()


@contextmanager
def owned_by(owner: object, tracer: Tracer, name: str = "parent") -> Iterator[None]:
    """Make a new span current with ``owner`` named as its owner, as the facade does."""
    parent = tracer.start_span(name)
    before = current.get_current()
    current.enter(Context(), parent, owner, None)
    try:
        yield
    finally:
        current.attach(before)
        parent.end()


def test_each_processor_keeps_the_owners_of_its_own_open_spans(watching) -> None:
    processor, tracer = watching
    other = OwnerNotifyingSpanProcessor()
    owner = RecordingOwner()
    with owned_by(owner, tracer):
        child = tracer.start_span("child")
        assert owner.adopted == ["child"]
        assert processor.live_owner_count() == 1
        assert other.live_owner_count() == 0
        child.end()
    assert owner.ended == ["child"]
    assert processor.live_owner_count() == 0


def test_a_failing_owner_is_logged_once_in_full_then_counted(watching, caplog) -> None:
    processor, tracer = watching
    with caplog.at_level(logging.DEBUG, logger="bridge.processor"), owned_by(BrokenOwner(), tracer):
        for _ in range(3):
            tracer.start_span("child").end()
    assert processor.failures.count((BrokenOwner, "adopt_span")) == 3
    assert processor.live_owner_count() == 0
    (error,) = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert "failed to adopt span 'child'" in error.getMessage()
    assert error.exc_info is not None
    assert error.exc_info[1].args == ("owner bug",)
