"""Pyramid integration for Baseplate.

This module provides a configuration extension for Pyramid which integrates
Baseplate's facilities into the Pyramid WSGI request lifecycle::

    def make_app(app_config):
        configurator = Configurator()

        baseplate = Baseplate()
        baseplate_config = BaseplateConfigurator(
            baseplate,
            trust_trace_headers=True,
        )
        configurator.include(baseplate_config.includeme)

        return configurator.make_wsgi_app()

How a request is instrumented:

* When Pyramid has matched a route (its ``ContextFound`` event), a server
  span named after the route is made, with the request as the context
  object: ``request.trace`` is the span and every attribute added with
  :meth:`~baseplate.core.Baseplate.add_to_context` is an attribute of the
  request. The span starts, is tagged ``http.url``, ``http.method`` and
  ``peer.ipv4``, and :class:`ServerSpanInitialized` is fired. Requests that
  match no route get no span.
* A tween placed over Pyramid's exception-view tween ends the span: it tags
  ``http.status_code`` and finishes the span when the response is ready, or,
  for a streaming response (a body that is not a list or tuple), when the
  WSGI server has consumed or closed the body. An exception raised by the
  view is a failure whether or not an exception view turned it into a
  response, except :class:`~pyramid.httpexceptions.HTTPException`\\ s below
  500 (redirects, 404s, ...), which are ordinary responses. An exception
  that no exception view handled is logged (``baseplate.integration.pyramid``,
  at ERROR, while the span is current, so the record has the request's trace
  id) before it goes on to the WSGI server; ``baseplate-serve`` then answers
  500 without logging it again.
* The routes :func:`add_health_check` adds are health checks: their span is
  a new, unsampled trace that the tracing and metrics observers do not hear
  of, unless the configurator was made with ``observe_health_checks=True``.

Trace headers (``X-Trace``, ``X-Parent``, ``X-Span``, ``X-Sampled``,
``X-Flags`` and their ``X-B3-`` aliases) and the ``X-Edge-Request`` header are
read only when the configurator's :class:`HeaderTrustHandler` trusts them (by
default a :class:`StaticTrustHandler` of ``trust_trace_headers``). Under the
same trust, a W3C ``traceparent`` continues the trace of an
OpenTelemetry-instrumented caller: alone, or naming the same span as the
Baseplate headers, it makes the server span a child of the caller's span (see
:func:`bridge.propagation.read_upstream`); when the two disagree the Baseplate
headers win. Invalid trace headers start a new trace; they never fail the
request.

For ``pshell``, :func:`pshell_setup` starts a server span on the shell's
request; :func:`paste_make_app` lets PasteDeploy tools load a Baseplate app.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from opentelemetry.trace import SpanContext

from baseplate._extras import missing_extra

try:
    with warnings.catch_warnings():
        # WebOb 1.8 imports the cgi module, deprecated since Python 3.11;
        # nothing an application can act on.
        warnings.filterwarnings("ignore", "'cgi' is deprecated", DeprecationWarning)
        import webob  # noqa: F401
    from pyramid.events import ApplicationCreated, ContextFound
    from pyramid.httpexceptions import HTTPException, HTTPNotFound
    from pyramid.response import Response
    from pyramid.tweens import EXCVIEW, INGRESS
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.integration.pyramid", "Pyramid", "pyramid") from exc

from baseplate._wsgi import LOGGED_EXCEPTION_KEY
from baseplate.core import Baseplate, ExcInfo, ServerSpan, TraceInfo
from baseplate.core._trace_info import continued_trace, header_names_by_field
from baseplate.integration._health_checks import PYRAMID_HEALTH_ROUTES_KEY, make_health_check_span
from bridge.propagation import HTTP_HEADERS

__all__ = [
    "TRACE_HEADER_NAMES",
    "BaseplateConfigurator",
    "BaseplateEvent",
    "EdgeContextFactory",
    "HeaderTrustHandler",
    "ServerSpanInitialized",
    "StaticTrustHandler",
    "add_health_check",
    "paste_make_app",
    "pshell_setup",
]

#: The names of each trace header, by field, as
#: :meth:`~baseplate.core.TraceInfo.extract_upstream_header_values` takes them.
TRACE_HEADER_NAMES = header_names_by_field(HTTP_HEADERS)

logger = logging.getLogger(__name__)

#: The request attribute holding the span the tween must finish.
_SPAN_ATTRIBUTE = "_baseplate_server_span"
_EDGE_HEADER = "X-Edge-Request"
_TWEEN_NAME = "baseplate.integration.pyramid._tween_factory"
#: Bodies of these types are complete when the view returns.
_MATERIALIZED_BODIES = (list, tuple)


class EdgeContextFactory(Protocol):
    """What the integration needs of an ``edge_context_factory``.

    :class:`baseplate.core.EdgeRequestContextFactory` is one.

    .. versionadded:: 0.31
    """

    def from_upstream(self, edge_header: bytes | None) -> Any:
        """Make the request's edge context from the raw ``X-Edge-Request`` bytes."""


class BaseplateEvent:
    """The base of the events Baseplate fires through Pyramid's registry.

    :param request: The request the event is about.
    """

    def __init__(self, request: Any) -> None:
        self.request = request


class ServerSpanInitialized(BaseplateEvent):
    """Event that Baseplate fires after creating the ServerSpan for a Request.

    This event will be emitted before the Request is passed along to its
    handler. Baseplate initializes the ServerSpan in response to a
    :class:`pyramid.events.ContextFound` event emitted by Pyramid so while we
    can guarantee what Baseplate has done when this event is emitted, we
    cannot guarantee that any other subscribers to ContextFound have been
    called or not.

    :param request: The request, whose ``trace`` is the started server span.
    """


class HeaderTrustHandler:
    """Decides, per request, whether its upstream headers are believed.

    Give one to :class:`BaseplateConfigurator` to trust some callers (by
    address, by a header a proxy sets, ...) and not others.
    :class:`StaticTrustHandler` is the default.
    """

    def should_trust_trace_headers(self, request: Any) -> bool:
        """Whether the request's trace headers continue the caller's trace."""
        raise NotImplementedError

    def should_trust_edge_context_payload(self, request: Any) -> bool:
        """Whether the request's ``X-Edge-Request`` header is read."""
        raise NotImplementedError


class StaticTrustHandler(HeaderTrustHandler):
    """Trust every request's headers, or none.

    :param trust_headers: The answer to both questions of
        :class:`HeaderTrustHandler`.

    .. warning::

        Do not set ``trust_headers`` to True unless you are sure your
        application is only accessible by trusted sources (usually
        backend-only services).
    """

    def __init__(self, trust_headers: bool = False) -> None:
        self.trust_headers = trust_headers

    def should_trust_trace_headers(self, request: Any) -> bool:
        """``trust_headers``."""
        return self.trust_headers

    def should_trust_edge_context_payload(self, request: Any) -> bool:
        """``trust_headers``."""
        return self.trust_headers


class BaseplateConfigurator:
    """Config extension to integrate Baseplate into Pyramid.

    :param baseplate: The Baseplate instance for your application.
    :param trust_trace_headers: Should this application trust trace headers
        from the client? If True, trace headers in inbound requests will be
        used for the server span, and the ``X-Edge-Request`` header is read.
        If False, new random trace IDs will be generated for each request.
    :param edge_context_factory: A configured factory for handling edge
        request context. With it, the trusted ``X-Edge-Request`` header's
        bytes become ``request.request_context`` (what
        ``factory.from_upstream`` makes) and ``request.raw_request_context``;
        without it, only ``request.raw_request_context`` is set.
    :param header_trust_handler: Decides per request whether its trace and
        edge headers are trusted; without one, a :class:`StaticTrustHandler`
        of ``trust_trace_headers`` does.
    :param observe_health_checks: Whether tracing and metrics see the
        requests of the routes :func:`add_health_check` adds. By default
        they do not: each is an unsampled new trace, exported by no tracing
        client and timed by no metrics observer, whose request has every
        context attribute but ``metrics``.

    .. warning::

        Do not set ``trust_trace_headers`` to True unless you are sure your
        application is only accessible by trusted sources (usually
        backend-only services).

    .. versionchanged:: 0.31
       The ``observe_health_checks`` option.
    """

    def __init__(
        self,
        baseplate: Baseplate,
        trust_trace_headers: bool = False,
        edge_context_factory: EdgeContextFactory | None = None,
        header_trust_handler: HeaderTrustHandler | None = None,
        *,
        observe_health_checks: bool = False,
    ) -> None:
        self.baseplate = baseplate
        self.trust_trace_headers = bool(trust_trace_headers)
        self.edge_context_factory = edge_context_factory
        self.header_trust_handler = header_trust_handler or StaticTrustHandler(
            self.trust_trace_headers
        )
        self._observe_health_checks = observe_health_checks
        #: The routes whose requests are health checks kept out of tracing
        #: and metrics, learnt when the application is made.
        self._health_check_routes: frozenset[str] = frozenset()

    def includeme(self, config: Any) -> None:
        """Install the integration; pass this to ``Configurator.include``.

        Also adds the ``config.add_health_check()`` directive (see
        :func:`add_health_check`), the request method
        ``request.start_server_span(name, trace_info=None)`` (what
        :func:`pshell_setup` uses), and sets ``app.baseplate`` on the WSGI
        application Pyramid creates.
        """
        config.add_subscriber(self._on_context_found, ContextFound)
        config.add_subscriber(self._on_application_created, ApplicationCreated)
        config.add_tween(_TWEEN_NAME, under=INGRESS, over=EXCVIEW)
        config.add_directive("add_health_check", add_health_check)

        def start_server_span(request: Any, name: str, trace_info: TraceInfo | None = None) -> Any:
            return self._start_server_span(request, name, trace_info)

        config.add_request_method(start_server_span, "start_server_span")

    def _on_application_created(self, event: Any) -> None:
        event.app.baseplate = self.baseplate
        if not self._observe_health_checks:
            routes = event.app.registry.get(PYRAMID_HEALTH_ROUTES_KEY, ())
            self._health_check_routes = self._health_check_routes.union(routes)

    # -- the start of a request -----------------------------------------------

    def _on_context_found(self, event: Any) -> None:
        request = event.request
        route = request.matched_route
        if route is None:
            return
        if route.name in self._health_check_routes:
            self._start_health_check_span(request, route.name)
            return
        trace_info = remote_parent = None
        if self.header_trust_handler.should_trust_trace_headers(request):
            trace_info, remote_parent = continued_trace(request.headers, HTTP_HEADERS)
        if self.header_trust_handler.should_trust_edge_context_payload(request):
            self._attach_edge_context(request)
        server_span = self._start_server_span(
            request, route.name, trace_info, notify=False, remote_parent=remote_parent
        )
        server_span.set_tag("http.url", request.url)
        server_span.set_tag("http.method", request.method)
        peer = request.remote_addr
        if peer:
            server_span.set_tag("peer.ipv4", peer)
        request.registry.notify(ServerSpanInitialized(request))

    def _start_server_span(
        self,
        request: Any,
        name: str,
        trace_info: TraceInfo | None,
        notify: bool = True,
        remote_parent: SpanContext | None = None,
    ) -> ServerSpan:
        server_span = self.baseplate.make_server_span(
            request, name, trace_info, remote_parent=remote_parent
        )
        setattr(request, _SPAN_ATTRIBUTE, server_span)
        server_span.start()
        if notify:
            request.registry.notify(ServerSpanInitialized(request))
        return server_span

    def _start_health_check_span(self, request: Any, name: str) -> None:
        server_span = make_health_check_span(self.baseplate, request, name)
        setattr(request, _SPAN_ATTRIBUTE, server_span)
        server_span.start()
        request.registry.notify(ServerSpanInitialized(request))

    def _attach_edge_context(self, request: Any) -> None:
        header = request.headers.get(_EDGE_HEADER)
        if header is None:
            return
        # WSGI hands headers over as latin-1 decoded text: encoding them back
        # gives exactly the bytes that were sent.
        raw = header.encode("latin-1")
        if self.edge_context_factory is not None:
            request.request_context = self.edge_context_factory.from_upstream(raw)
        request.raw_request_context = raw


# -- the end of a request -------------------------------------------------------


def _tween_factory(handler: Callable[[Any], Any], registry: Any) -> Callable[[Any], Any]:
    """Make the tween that finishes each request's server span.

    It sits over Pyramid's exception-view tween, so it sees the response an
    exception view made, and the exception itself in ``request.exc_info``.
    """

    def baseplate_tween(request: Any) -> Any:
        try:
            response = handler(request)
        except Exception as exc:
            _log_unhandled(request, exc)
            server_span = getattr(request, _SPAN_ATTRIBUTE, None)
            if server_span is not None:
                server_span.finish(exc_info=sys.exc_info())
            raise
        server_span = getattr(request, _SPAN_ATTRIBUTE, None)
        if server_span is not None:
            _finish_with_response(server_span, request, response)
        return response

    return baseplate_tween


def _log_unhandled(request: Any, exc: Exception) -> None:
    """Log an exception no exception view handled, while the request's span is current.

    Logged here, the record carries the request's trace id; the WSGI server
    only sees the exception once the span is over. The environ tells
    ``baseplate.server.wsgi`` that it need not log it again.

    Pyramid's exception-view tween, finding no view for the exception,
    re-raises it while handling the ``HTTPNotFound`` its view lookup raised,
    which makes that ``HTTPNotFound`` the exception's context: a traceback
    would show it first, "During handling of the above exception". It is
    no part of what went wrong, so it is left out.
    """
    if isinstance(exc.__context__, HTTPNotFound):
        exc.__suppress_context__ = True
    logger.error("unexpected exception handling %s %s", request.method, request.path, exc_info=exc)
    request.environ[LOGGED_EXCEPTION_KEY] = exc


def _outcome(request: Any) -> ExcInfo | None:
    """The exception an exception view handled, if it makes the request a failure."""
    exc_info: ExcInfo | None = request.exc_info
    if exc_info is None or exc_info[1] is None:
        return None
    error = exc_info[1]
    if isinstance(error, HTTPException) and error.code < 500:
        return None
    return exc_info


def _finish_with_response(server_span: ServerSpan, request: Any, response: Any) -> None:
    exc_info = _outcome(request)
    status_code = getattr(response, "status_int", None)
    if status_code is not None:
        server_span.set_tag("http.status_code", status_code)
    app_iter = getattr(response, "app_iter", None)
    if app_iter is None or isinstance(app_iter, _MATERIALIZED_BODIES):
        server_span.finish(exc_info=exc_info)
        return
    # Replacing the body forgets the content length: put it back.
    content_length = response.content_length
    response.app_iter = _FinishingBody(app_iter, server_span, exc_info)
    response.content_length = content_length


class _FinishingBody:
    """A streamed response body that finishes the server span when it is done.

    Done means exhausted, closed by the WSGI server, or failed while being
    produced (a failure of the request).
    """

    def __init__(
        self, app_iter: Iterable[bytes], server_span: ServerSpan, exc_info: ExcInfo | None
    ) -> None:
        self._app_iter = app_iter
        self._iterator: Iterator[bytes] | None = None
        self._server_span = server_span
        self._exc_info = exc_info

    def __iter__(self) -> _FinishingBody:
        return self

    def __next__(self) -> bytes:
        try:
            if self._iterator is None:
                self._iterator = iter(self._app_iter)
            return next(self._iterator)
        except StopIteration:
            self._server_span.finish(exc_info=self._exc_info)
            raise
        except Exception:
            self._server_span.finish(exc_info=sys.exc_info())
            raise

    def close(self) -> None:
        try:
            close = getattr(self._app_iter, "close", None)
            if close is not None:
                close()
        except Exception:
            self._server_span.finish(exc_info=sys.exc_info())
            raise
        finally:
            self._server_span.finish(exc_info=self._exc_info)


# -- pshell and PasteDeploy -----------------------------------------------------


def pshell_setup(env: dict[str, Any]) -> None:
    """Start a server span on the request of a ``pshell`` session.

    The shell's ``request`` then has ``trace`` and every context attribute.
    Name it in the application's INI file::

        [pshell]
        setup = baseplate.integration.pyramid:pshell_setup
    """
    env["request"].start_server_span("shell")


def paste_make_app(_global_config: Any, **local_config: str) -> Any:
    """Make the application as ``baseplate-serve`` would, for PasteDeploy tools.

    With ``use = egg:baseplate`` in the ``[app:...]`` section, tools such as
    ``pshell`` call this with the section's options, whose ``factory`` names
    the application factory (see :func:`baseplate.server.make_app`).
    """
    from baseplate.server import make_app

    return make_app(local_config)


# -- health checks ------------------------------------------------------------------


def add_health_check(
    config: Any,
    checker: Callable[[Any], bool] | None = None,
    path: str = "/health",
    route_name: str = "health",
) -> None:
    """Serve a health check for ``baseplate-healthcheck wsgi``.

    ``GET path`` answers 200 ``OK`` (``text/plain``) when the service is
    healthy and 503 with the reason otherwise. After ``includeme`` it is also
    the config directive ``config.add_health_check(...)``. Its requests are
    kept out of tracing and metrics, unless the :class:`BaseplateConfigurator`
    was made with ``observe_health_checks=True``.

    :param config: The Pyramid configurator.
    :param checker: Called with the request (the context object, with every
        attribute added with ``add_to_context``) on each check; returning a
        false value or raising means unhealthy. Without it the service is
        healthy whenever it answers.
    :param path: Where the health check is served.
    :param route_name: The name of its route, and so of its server span.

    .. versionadded:: 0.31
    """

    def health_check(request: Any) -> Any:
        if checker is not None:
            try:
                healthy = checker(request)
            except Exception as exc:
                logger.warning("health check failed", exc_info=True)
                return _unhealthy(f"{type(exc).__name__}: {exc}")
            if not healthy:
                return _unhealthy("the health check returned false")
        return Response("OK", content_type="text/plain")

    config.add_route(route_name, path, request_method=("GET", "HEAD"))
    config.add_view(health_check, route_name=route_name)
    config.registry.setdefault(PYRAMID_HEALTH_ROUTES_KEY, set()).add(route_name)


def _unhealthy(reason: str) -> Any:
    return Response(f"unhealthy: {reason}", status=503, content_type="text/plain")
