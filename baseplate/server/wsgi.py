"""The gevent WSGI server for ``baseplate-serve``.

Configure it in the server section of the INI file::

    [server:main]
    factory = baseplate.server.wsgi
    max_concurrency = 100
    stop_timeout = 30
    handler = my_service.http:QuietHandler

``max_concurrency`` bounds the number of connections handled at once (a
keep-alive connection counts for as long as it is open); by default there is
no bound. ``stop_timeout`` is how long a stopping server lets requests in
progress finish (default 0: stop at once). ``handler`` is the full name of a
:class:`gevent.pywsgi.WSGIHandler` subclass to handle connections with.

Health checks by ``baseplate-healthcheck wsgi`` request ``GET /health`` and
expect status 200: the application should serve that path.

Errors go through logging, on the ``baseplate.server.wsgi`` logger: an
exception the application raises is answered 500 and logged once at ERROR
with its traceback (the Pyramid integration logs it itself, with the
request's trace id, and the server does not log it again); a request that
is not HTTP is answered 400 and logged in one line at INFO, as the client's
fault. The access log is ``baseplate.server.wsgi.access``, at DEBUG.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from gevent import GreenletExit, pywsgi

from baseplate import config
from baseplate._importer import import_object
from baseplate._wsgi import LOGGED_EXCEPTION_KEY
from baseplate.server._graceful import (
    ConnectionTracker,
    GracefulStop,
    ServerStoppingError,
    make_pool,
)
from baseplate.server._healthcheck import HEALTH_CHECK_PATH
from baseplate.server._options import parse_server_config
from baseplate.server._turns import TurnTaker

__all__ = ["HEALTH_CHECK_PATH", "make_server"]

access_logger = logging.getLogger("baseplate.server.wsgi.access")
error_logger = logging.getLogger("baseplate.server.wsgi")

#: How much of a malformed request's description is logged (it quotes the request line).
_MAX_DETAIL = 200


def _import_class(text: str) -> type:
    value = import_object(text)
    if not (isinstance(value, type) and issubclass(value, pywsgi.WSGIHandler)):
        raise ValueError(f"{text} is not a subclass of gevent.pywsgi.WSGIHandler")
    return value


def _graceful_handler(base: type, tracker: ConnectionTracker) -> type:
    """``base`` taught to close idle keep-alive connections when the server stops.

    It also turns Nagle's algorithm off: pywsgi writes a response's headers
    and body separately, and a keep-alive client would otherwise wait out its
    delayed ACK (about 40 ms) on every request; and keep-alive connections
    take turns when the server is saturated (:mod:`baseplate.server._turns`).
    """

    def handle(self: Any) -> Any:
        if self.socket.family in (socket.AF_INET, socket.AF_INET6):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.turns = TurnTaker()
        return base.handle(self)  # type: ignore[attr-defined]

    def read_requestline(self: Any) -> Any:
        try:
            with tracker.idle():
                return base.read_requestline(self)  # type: ignore[attr-defined]
        except ServerStoppingError:
            return ""

    def handle_one_request(self: Any) -> Any:
        result = base.handle_one_request(self)  # type: ignore[attr-defined]
        if result is True:
            if tracker.stopping:
                return None  # answered; close instead of waiting for another request
            self.turns.request_done()
        return result

    return type(
        base.__name__,
        (base,),
        {
            "handle": handle,
            "read_requestline": read_requestline,
            "handle_one_request": handle_one_request,
            "_log_error": _log_application_error,
            "log_error": _log_client_error,
            "__module__": __name__,
        },
    )


def _log_application_error(self: Any, error_type: type, error: BaseException, tb: Any) -> None:
    """Log an exception the application raised, once, through logging.

    This replaces gevent's ``WSGIHandler._log_error``, which hands the
    exception to the hub to print on stderr. gevent still answers 500.
    An exception the application logged itself (the Pyramid integration
    does, with the request's trace id) is not logged again.
    """
    if issubclass(error_type, GreenletExit):  # the server is stopping the greenlet
        return
    environ = self.environ or {}
    if environ.get(LOGGED_EXCEPTION_KEY) is error:
        return
    error_logger.error(
        "unexpected exception handling %s %s",
        environ.get("REQUEST_METHOD", "-"),
        environ.get("PATH_INFO", "-"),
        exc_info=(error_type, error, tb),
    )


def _log_client_error(self: Any, message: str, *args: Any) -> None:
    """Log a request that is not valid HTTP in one line at INFO: the client's fault.

    gevent calls ``log_error`` only for such requests, with the client's
    address and then what is wrong as its arguments; its own writes the
    message to the error log (at ERROR, prefixed with the socket's repr).
    """
    detail = str(args[-1]) if args else message
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + "..."
    error_logger.info(
        "closing the connection from %s: malformed request: %s", self.client_address, detail
    )


class WSGIServer(GracefulStop, pywsgi.WSGIServer):  # type: ignore[misc]  # gevent is untyped
    """A :class:`gevent.pywsgi.WSGIServer` that stops gracefully.

    :meth:`stop` with no timeout waits for the configured ``stop_timeout``.
    """

    def __init__(
        self,
        listener: socket.socket,
        application: Any,
        *,
        handler_class: type,
        max_concurrency: int | None,
        stop_timeout: float,
    ) -> None:
        self.tracker = ConnectionTracker()
        self.handler_pool = make_pool(max_concurrency)
        self.graceful_stop_timeout = stop_timeout
        address = listener.getsockname()
        super().__init__(
            listener,
            application,
            # gevent would look the bound address up in DNS for SERVER_NAME
            environ={"SERVER_NAME": address[0]} if isinstance(address, tuple) else None,
            spawn=self.handler_pool,
            handler_class=_graceful_handler(handler_class, self.tracker),
            log=pywsgi.LoggingLogAdapter(access_logger, logging.DEBUG),
            error_log=pywsgi.LoggingLogAdapter(error_logger, logging.ERROR),
        )


def make_server(server_config: Mapping[str, str], listener: socket.socket, app: Any) -> WSGIServer:
    """Make a gevent WSGI server serving the WSGI callable ``app`` on ``listener``.

    :param server_config: The options of the server section.
    :raises baseplate.config.ConfigurationError: An option is invalid.
    :raises TypeError: ``app`` is not callable.
    """
    if not callable(app):
        raise TypeError(f"the application must be a WSGI callable, not {type(app).__name__}")
    cfg = parse_server_config(
        server_config,
        {"handler": config.Optional(_import_class, default=pywsgi.WSGIHandler)},
    )
    return WSGIServer(
        listener,
        app,
        handler_class=cfg.handler,
        max_concurrency=cfg.max_concurrency,
        stop_timeout=cfg.stop_timeout,
    )
