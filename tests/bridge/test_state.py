"""The bridge's process-wide state: one object, started over by bridge.provider.reset_state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import Span, SpanProcessor

from bridge import processor, provider, shutdown
from bridge.processor import SpanOwner


@pytest.fixture
def fresh_bridge() -> Iterator[None]:
    provider.reset_state()
    yield
    provider.reset_state()


class ShutdownRecorder(SpanProcessor):
    def __init__(self) -> None:
        self.shut_down = False

    def shutdown(self) -> None:
        self.shut_down = True


class NoAdopter:
    def adopt_root_span(self, span: Span) -> SpanOwner | None:
        return None


def test_reset_state_shuts_the_provider_down_and_lets_a_new_global_one_be_installed(
    fresh_bridge: None,
) -> None:
    first = provider.get_tracer_provider()
    recorder = ShutdownRecorder()
    first.add_span_processor(recorder)
    provider.get_tracer()
    processor.set_root_span_adopter(NoAdopter())
    assert provider.state.spans_read is True

    provider.reset_state()

    assert recorder.shut_down is True
    assert provider.state.provider is None
    assert provider.state.tracer is None
    assert provider.state.root_adopter is None
    assert provider.state.spans_read is False
    second = provider.get_tracer_provider()
    assert second is not first
    assert trace.get_tracer_provider() is second
    assert provider.state.keeps_requested_ids is True


def test_reset_state_keeps_the_shutdown_hooks_other_libraries_added(fresh_bridge: None) -> None:
    def other_library_hook() -> None:
        pass

    provider.get_tracer_provider()
    shutdown.add_hook(other_library_hook)
    try:
        provider.reset_state()
        assert other_library_hook in provider.state.shutdown_hooks
        assert provider.shutdown_provider not in provider.state.shutdown_hooks
    finally:
        shutdown.remove_hook(other_library_hook)
