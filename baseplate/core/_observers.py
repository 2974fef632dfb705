"""The observer interfaces: the contract between Baseplate and its observers.

Observers are how everything that watches requests (metrics, tracing, error
reporting, logging, the context factories) plugs in. Baseplate calls them
synchronously, in registration order, in the thread or greenlet that handles
the request:

* a :class:`BaseplateObserver` hears of each new server span (each request)
  and may register a :class:`ServerSpanObserver` on it;
* span observers hear the span start, get tags and logs, finish, and have
  children, on which they may register further :class:`SpanObserver`\\ s;
* a :class:`ContextFactory` makes an object for each request's context (and
  each local span's), whose calls are children of that span.

Exceptions raised by span observers are logged and swallowed: telemetry must
not break the request. ``on_server_span_created`` is the exception, because it
is where context objects are attached; if that fails, the request cannot run.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from baseplate.core._spans import ServerSpan, Span

ExcInfo: TypeAlias = (
    "tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]"
)


class BaseplateObserver:
    """Interface for an observer that watches Baseplate."""

    def on_server_span_created(self, context: Any, server_span: ServerSpan) -> None:
        """Called when a server span is created, as a new request begins.

        :param context: The context object for this request.
        :param server_span: The span representing this request.
        """
        raise NotImplementedError


class SpanObserver:
    """Interface for an observer that watches a span.

    Every method does nothing by default, so observers implement only what
    they need.
    """

    # Subclasses without __slots__ of their own still get a __dict__.
    __slots__ = ()

    def on_start(self) -> None:
        """Called when the observed span is started."""

    def on_set_tag(self, key: str, value: Any) -> None:
        """Called when a tag is set on the observed span."""

    def on_log(self, name: str, payload: Any) -> None:
        """Called when a log entry is added to the span."""

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        """Called when the observed span is finished.

        :param exc_info: If the span ended because of an exception, the
            exception info. Otherwise, None.
        """

    def on_child_span_created(self, span: Span) -> None:
        """Called when a child span is created.

        :param span: The new child span.
        """


class ServerSpanObserver(SpanObserver):
    """Interface for an observer that watches the server span."""

    __slots__ = ()


class ContextFactory:
    """An interface for adding stuff to the context object.

    Objects implementing this interface can be passed to
    :meth:`~baseplate.core.Baseplate.add_to_context`. The return value of
    :meth:`make_object_for_context` will be added to the context object with
    the name specified in ``add_to_context``.

    Applications import it from :mod:`baseplate.context`.
    """

    def make_object_for_context(self, name: str, span: Span) -> Any:
        """Return an object that can be added to the context object.

        :param name: The attribute it will be set as.
        :param span: The span its calls are children of: the request's
            server span, or a local span (see
            :class:`~baseplate.context.ContextSpanObserver`).
        """
        raise NotImplementedError
