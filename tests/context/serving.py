"""Serving one request in a test: a server span around a handler, and the statsd lines it sent."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from baseplate.core import Baseplate, ServerSpan


def serve(baseplate: Baseplate, handler: Callable[[Any], Any]) -> ServerSpan:
    """Handle one request named ``handler``: ``handler(context)`` inside its server span."""
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler") as server_span:
        handler(context)
    return server_span


def statsd_lines(statsd: Any) -> list[str]:
    """Every statsd line received since last asked."""
    return b"\n".join(statsd.received()).decode().split("\n")
