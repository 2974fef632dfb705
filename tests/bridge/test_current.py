"""bridge.current: the same current context as OpenTelemetry's API, by either route."""

from __future__ import annotations

from contextvars import Token

import pytest
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from bridge import current


def test_attach_is_seen_by_the_api_and_the_api_attach_is_seen_here() -> None:
    mine = otel_context.set_value("bridge-current-test", "mine")
    token = current.attach(mine)
    try:
        assert otel_context.get_current() is mine
        assert current.get_current() is mine
    finally:
        otel_context.detach(token)
    theirs = otel_context.set_value("bridge-current-test", "theirs")
    token = otel_context.attach(theirs)
    try:
        assert current.get_current() is theirs
    finally:
        otel_context.detach(token)
    assert current.get_current().get("bridge-current-test") is None


def test_the_default_runtime_context_is_reached_directly() -> None:
    get_current, attach = current._accessors()
    assert get_current is not otel_context.get_current
    assert attach is not otel_context.attach


class _OtherRuntime:
    """A runtime context that is not OpenTelemetry's contextvars one."""

    def __init__(self) -> None:
        self.context = Context()

    def attach(self, context: Context) -> Token[Context]:
        raise NotImplementedError

    def get_current(self) -> Context:
        return self.context

    def detach(self, token: Token[Context]) -> None:
        raise NotImplementedError


def test_another_runtime_context_goes_through_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", _OtherRuntime())
    get_current, attach = current._accessors()
    assert get_current is otel_context.get_current
    assert attach is otel_context.attach
