"""Serving requests in a test: the Baseplate, a server span around a handler, and the
statsd lines it sent."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from baseplate import metrics_client_from_config
from baseplate.context import ContextFactory
from baseplate.core import Baseplate, BaseplateObserver, ServerSpan
from baseplate.metrics import Client


def metrics_client_to(statsd: Any) -> Client:
    """A metrics client, namespace ``svc``, sending to the ``statsd`` capture."""
    return metrics_client_from_config(
        {"metrics.namespace": "svc", "metrics.endpoint": statsd.endpoint}
    )


def make_baseplate(
    statsd: Any = None, recorder: BaseplateObserver | None = None, **factories: ContextFactory
) -> Baseplate:
    """A Baseplate with metrics (namespace ``svc``) sent to ``statsd`` if given, observed
    by ``recorder`` if given, and each of ``factories`` on the context under its name."""
    baseplate = Baseplate()
    if statsd is not None:
        baseplate.configure_metrics(metrics_client_to(statsd))
    if recorder is not None:
        baseplate.register(recorder)
    for name, factory in factories.items():
        baseplate.add_to_context(name, factory)
    return baseplate


def serve(baseplate: Baseplate, handler: Callable[[Any], Any]) -> ServerSpan:
    """Handle one request named ``handler``: ``handler(context)`` inside its server span."""
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler") as server_span:
        handler(context)
    return server_span


def statsd_lines(statsd: Any) -> list[str]:
    """Every statsd line received since last asked."""
    return b"\n".join(statsd.received()).decode().split("\n")
