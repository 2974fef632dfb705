"""Console entry points: ``baseplate-serve``, ``-script``, ``-tshell`` and ``-healthcheck``.

Each returns the process's exit status. Problems with the command line or
the INI file are reported as one line on stderr and exit with status 1
(argparse's own usage errors exit with 2). The current directory is put on
``sys.path`` first, so ``module:callable`` names find modules next to the
INI file as they would in ``python -c``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

_TIMEOUT_DEFAULT = 5.0
_OK = 0
_FAILED = 1


def _add_cwd_to_path() -> None:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def serve() -> int:
    """Run ``baseplate-serve``: patch with gevent first, then import and run the server."""
    from gevent import monkey

    monkey.patch_all()
    from bridge.native_locks import use_native_span_locks

    use_native_span_locks()
    _add_cwd_to_path()
    from baseplate.server import main

    return main()


def _load_app_config(
    prog: str, config_file: str, app_name: str
) -> tuple[Any, dict[str, str]] | None:
    """The parsed INI file and its ``[app:NAME]`` section, after logging is set up."""
    from baseplate.server._config import ConfigFileError, get_section, read_config
    from baseplate.server._logging import configure_logging

    try:
        parser = read_config(config_file)
        configure_logging(parser, config_file, debug=False, stream=sys.stderr)
        return parser, get_section(parser, config_file, "app", app_name)
    except ConfigFileError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None


def _load_callable(prog: str, spec: str | None, default: str, path: str, where: str) -> Any:
    from baseplate.server._config import ConfigFileError, load_factory

    try:
        return load_factory(spec, default, path=path, where=where)
    except ConfigFileError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None


def _call(prog: str, path: str, section: str, function: Callable[..., Any], *args: Any) -> Any:
    """Call ``function``; a :class:`~baseplate.config.ConfigurationError` exits with one line."""
    from baseplate.config import ConfigurationError

    try:
        return function(*args)
    except ConfigurationError as exc:
        print(f"{prog}: error: {path}: [{section}] {exc}", file=sys.stderr)
        raise SystemExit(_FAILED) from None


def script(argv: Sequence[str] | None = None) -> int:
    """Run ``baseplate-script config.ini module:function [--app-name NAME]``."""
    from baseplate.server._config import factory_options

    prog = "baseplate-script"
    parser = argparse.ArgumentParser(
        prog=prog, description="Run a function with the application's configuration."
    )
    parser.add_argument("config_file", help="the INI file of the application")
    parser.add_argument("entrypoint", help="the function to run, as module:function")
    parser.add_argument("--app-name", default="main", help="the [app:NAME] section to use")
    args = parser.parse_args(argv)
    _add_cwd_to_path()

    loaded = _load_app_config(prog, args.config_file, args.app_name)
    if loaded is None:
        return _FAILED
    _, app_options = loaded
    function = _load_callable(prog, args.entrypoint, "", args.config_file, "the entry point")
    if function is None:
        return _FAILED
    _call(prog, args.config_file, f"app:{args.app_name}", function, factory_options(app_options))
    return _OK


def tshell(argv: Sequence[str] | None = None) -> int:
    """Run ``baseplate-tshell config.ini [--app-name NAME]``: an interactive shell."""
    from baseplate.server import _shell
    from baseplate.server._config import factory_options

    prog = "baseplate-tshell"
    parser = argparse.ArgumentParser(
        prog=prog, description="An interactive shell with the application and a context."
    )
    parser.add_argument("config_file", help="the INI file of the application")
    parser.add_argument("--app-name", default="main", help="the [app:NAME] section to use")
    args = parser.parse_args(argv)
    _add_cwd_to_path()

    loaded = _load_app_config(prog, args.config_file, args.app_name)
    if loaded is None:
        return _FAILED
    config_parser, app_options = loaded
    section = f"app:{args.app_name}"

    app = None
    if app_options.get("factory"):
        make_app = _load_callable(
            prog, app_options["factory"], "make_app", args.config_file, f"[{section}] factory"
        )
        if make_app is None:
            return _FAILED
        app = _call(prog, args.config_file, section, make_app, factory_options(app_options))

    setup = None
    if config_parser.has_option("tshell", "setup"):
        setup = _load_callable(
            prog, config_parser.get("tshell", "setup"), "", args.config_file, "[tshell] setup"
        )
        if setup is None:
            return _FAILED

    _shell.run_shell(app, setup)
    return _OK


def healthcheck(argv: Sequence[str] | None = None) -> int:
    """Run ``baseplate-healthcheck thrift|wsgi ENDPOINT``: print ``OK!`` or why not."""
    from baseplate.server import _healthcheck

    parser = argparse.ArgumentParser(
        prog="baseplate-healthcheck", description="Check that a Baseplate service is healthy."
    )
    parser.add_argument("protocol", choices=sorted(_healthcheck.CHECKERS), help="the protocol")
    parser.add_argument("endpoint", help="host:port or the path of a Unix socket")
    parser.add_argument(
        "--timeout",
        type=float,
        default=_TIMEOUT_DEFAULT,
        metavar="SECONDS",
        help=f"give up after this long (default {_TIMEOUT_DEFAULT:g})",
    )
    args = parser.parse_args(argv)
    problem = _healthcheck.check(args.protocol, args.endpoint, args.timeout)
    if problem is None:
        print("OK!")
        return _OK
    print(problem)
    return _FAILED
