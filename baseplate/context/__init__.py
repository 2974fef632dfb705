"""Helpers that integrate client libraries with Baseplate's diagnostics.

A context factory, added with :meth:`baseplate.core.Baseplate.add_to_context`,
makes an object for each request's context; the instrumented clients in this
package make versions of their client that trace each call as a child span of
the request.
"""

from __future__ import annotations

from typing import Any

from baseplate.core import BaseplateObserver, LocalSpan, ServerSpan, Span, SpanObserver

# Defined beside the observer interfaces, with the rest of the framework's
# contract; applications import it from here, as from the original.
from baseplate.core._observers import ContextFactory as ContextFactory


class ContextObserver(BaseplateObserver):
    """Puts what a context factory makes on each request's context object.

    This is what :meth:`~baseplate.core.Baseplate.add_to_context` registers.
    Each local span gets an object of its own too, made for the local span
    (see :class:`ContextSpanObserver`), so calls made through the local
    span's context are its children.

    :param name: The attribute of the context object to set.
    :param context_factory: What makes the objects.
    """

    def __init__(self, name: str, context_factory: ContextFactory) -> None:
        self.name = name
        self.context_factory = context_factory

    def on_server_span_created(self, context: Any, server_span: ServerSpan) -> None:
        """Set the request's object, and watch for local spans."""
        value = self.context_factory.make_object_for_context(self.name, server_span)
        setattr(context, self.name, value)
        server_span.register(ContextSpanObserver(self.name, self.context_factory))


class ContextSpanObserver(SpanObserver):
    """Gives each local child span an object of its own, made for that span.

    :param name: The attribute of the local span's context to shadow.
    :param context_factory: What makes the objects.
    """

    def __init__(self, name: str, context_factory: ContextFactory) -> None:
        self.name = name
        self.context_factory = context_factory

    def on_child_span_created(self, span: Span) -> None:
        """Shadow the attribute on a local span's context; other spans share the request's."""
        if isinstance(span, LocalSpan):
            value = self.context_factory.make_object_for_context(self.name, span)
            span.context.shadow_context_attr(self.name, value)
