"""``baseplate-serve``: run a Thrift or WSGI application on a gevent server.

The command reads an INI file with a server section (``[server:main]``) and
an application section (``[app:main]``)::

    [server:main]
    factory = baseplate.server.thrift
    stop_timeout = 30

    [app:main]
    factory = my_service:make_processor
    foo = 3

The server factory is :mod:`baseplate.server.thrift`, :mod:`baseplate.server.wsgi`,
or any ``module:callable`` (a bare module means its ``make_server``) called as
``make_server(server_options, listener, app)`` that returns an object with
``start()`` and ``stop()``, such as a gevent server. The application factory
(``module:callable``; a bare module means its ``make_app``) is called with the
rest of the application section as a dict and returns a TProcessor or a WSGI
callable.

The process is patched by gevent before anything else is imported, and
nothing creates a thread or the tracer provider until the application does,
so it is safe to run under a forking socket manager such as Einhorn. See
``docs/serve.rst`` for logging, Einhorn, ``--reload`` and signals, and
:mod:`baseplate.server.runtime_monitor` for the ``monitoring.*`` options and
what each request's server span says it cost.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from baseplate.config import ConfigurationError
from baseplate.server import _listener, _reload, einhorn, runtime_monitor
from baseplate.server._config import (
    ConfigFileError,
    factory_options,
    get_section,
    load_factory,
    read_config,
)
from baseplate.server._early_threads import let_early_threads_end_cleanly
from baseplate.server._logging import configure_default_logging, configure_logging
from baseplate.server._stacks import install_stack_dump_handler
from bridge import shutdown as telemetry

__all__ = ["main", "make_app"]

logger = logging.getLogger(__name__)

PROG = "baseplate-serve"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)
"""Each stops the server gracefully; Einhorn retires a worker with ``SIGUSR2``."""


class _StartupError(Exception):
    """A problem that is reported as one line, without a traceback."""


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run a Thrift or WSGI application on a gevent server."
    )
    parser.add_argument("config_file", help="the INI file of the application")
    parser.add_argument("--server-name", default="main", help="the [server:NAME] section to use")
    parser.add_argument("--app-name", default="main", help="the [app:NAME] section to use")
    parser.add_argument(
        "--bind",
        metavar="ENDPOINT",
        help=f"host:port or a Unix socket path to listen on (default {_listener.DEFAULT_BIND})",
    )
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    parser.add_argument(
        "--reload", action="store_true", help="restart when a source file changes (development)"
    )
    return parser.parse_args(argv)


def make_app(app_config: dict[str, str]) -> Any:
    """Make the application named by the ``factory`` of an application section.

    ``app_config`` holds the section's options; the factory is called with
    the others, as ``baseplate-serve`` calls it. This is for tools that load
    an application from options alone, such as PasteDeploy's (see
    :func:`baseplate.integration.pyramid.paste_make_app`).

    If ``factory`` is missing or names nothing callable, the error raised is
    one line naming the option, as ``baseplate-serve`` prints it.
    """
    factory = load_factory(
        app_config.get("factory"), "make_app", path="application options", where="factory"
    )
    return factory(factory_options(app_config))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``baseplate-serve`` with the given arguments; returns the exit status.

    The caller must have monkey-patched the process with gevent first, as the
    ``baseplate-serve`` console script does.
    """
    args = _parse_args(argv)
    watcher = _reload.SourceWatcher([args.config_file]) if args.reload else None
    listener: socket.socket | None = None
    try:
        parser = read_config(args.config_file)
        configure_logging(parser, args.config_file, debug=args.debug)
        let_early_threads_end_cleanly()
        server_section = f"server:{args.server_name}"
        app_section = f"app:{args.app_name}"
        server_options = get_section(parser, args.config_file, "server", args.server_name)
        app_options = get_section(parser, args.config_file, "app", args.app_name)
        make_server = load_factory(
            server_options.get("factory"),
            "make_server",
            path=args.config_file,
            where=f"[{server_section}] factory",
        )
        make_app = load_factory(
            app_options.get("factory"),
            "make_app",
            path=args.config_file,
            where=f"[{app_section}] factory",
        )
        listener = _make_listener(args)
        app = _call_factory(make_app, args.config_file, app_section, factory_options(app_options))
        server = _call_factory(
            make_server,
            args.config_file,
            server_section,
            factory_options(server_options),
            listener,
            app,
        )
        monitor = _call_factory(
            runtime_monitor.start,
            args.config_file,
            server_section,
            server_options,
            app,
            getattr(server, "handler_pool", None),
        )
    except Exception as exc:
        if watcher is not None:
            _wait_for_fix(exc, watcher, listener, debug=args.debug)
        if isinstance(exc, (ConfigFileError, _StartupError)):
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        raise
    return _serve(server, listener, watcher, monitor)


def _make_listener(args: argparse.Namespace) -> socket.socket:
    inherited = os.environ.pop(_listener.INHERITED_FD_ENV, None)
    if args.reload and inherited is not None:
        return _listener.listener_from_fd(int(inherited))
    if einhorn.is_worker():
        try:
            fds = einhorn.listener_fds()
        except einhorn.EinhornError as exc:
            raise _StartupError(str(exc)) from None
        if fds:
            if args.bind:
                logger.warning("running under Einhorn: ignoring --bind %s", args.bind)
            return _listener.listener_from_fd(fds[0])
    text = args.bind or _listener.DEFAULT_BIND
    try:
        endpoint = _listener.parse_bind(text)
    except ValueError as exc:
        raise _StartupError(f"--bind {text}: {exc}") from None
    try:
        return _listener.bind_listener(endpoint)
    except OSError as exc:
        raise _StartupError(f"cannot listen on {text}: {exc.strerror or exc}") from None


def _call_factory(factory: Callable[..., Any], path: str, section: str, *args: Any) -> Any:
    """Call a factory, reporting configuration errors as one line naming the section."""
    try:
        return factory(*args)
    except ConfigurationError as exc:
        raise ConfigFileError(path, f"[{section}] {exc}") from None
    except TypeError as exc:
        if section.startswith("server:"):
            raise ConfigFileError(path, f"[{section}] {exc}") from None
        raise


def _wait_for_fix(
    exc: Exception, watcher: _reload.SourceWatcher, listener: socket.socket | None, *, debug: bool
) -> NoReturn:
    """Under ``--reload``, report a failed start and restart once a file changes."""
    if not logging.getLogger().handlers:  # the INI file's logging section was not read
        configure_default_logging(debug=debug)
    if isinstance(exc, (ConfigFileError, _StartupError)):
        logger.error("%s", exc)
    else:
        logger.error("the application failed to start", exc_info=exc)
    logger.info("waiting for a file to change")
    watcher.add(_reload.files_in_traceback(exc))
    try:
        _reload.watch_forever(watcher, listener)
    except KeyboardInterrupt:
        raise SystemExit(1) from None


def _serve(
    server: Any,
    listener: socket.socket,
    watcher: _reload.SourceWatcher | None,
    monitor: runtime_monitor.RuntimeMonitor,
) -> int:
    import gevent.event

    stopping = gevent.event.Event()
    handlers = [install_stack_dump_handler()]

    def on_stop_signal() -> None:
        if stopping.is_set():
            logger.warning("second stop signal: exiting now")
            os._exit(1)
        stopping.set()

    handlers += [gevent.signal_handler(signum, on_stop_signal) for signum in STOP_SIGNALS]

    server.start()
    logger.info("listening on %s", _listener.describe(listener))
    if einhorn.is_worker():
        try:
            einhorn.send_ack()
        except einhorn.EinhornError as exc:
            logger.error("%s", exc)
        else:
            logger.info("sent the ACK to the Einhorn master")
    if watcher is not None:
        _reload.start(watcher, listener)

    stopping.wait()
    logger.info("stopping")
    stop_started = time.monotonic()
    server.stop()
    logger.info("stopped")
    monitor.stop()
    _shut_telemetry_down(server, stop_started)
    for handler in handlers:
        handler.cancel()
    return 0


def _shut_telemetry_down(server: Any, stop_started: float) -> None:
    """Send the spans and error reports still waiting, within what is left of the stop timeout.

    At least :data:`bridge.shutdown.MIN_TIMEOUT`; what can't be sent by
    then is dropped and counted, so the process exits on time however the
    collectors behave. A second stop signal still exits at once.
    """
    stop_timeout = float(getattr(server, "graceful_stop_timeout", 0.0) or 0.0)
    left = stop_timeout - (time.monotonic() - stop_started)
    telemetry.shutdown_telemetry(max(left, telemetry.MIN_TIMEOUT))
