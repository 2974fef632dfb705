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


def _app_command(
    prog: str, description: str, argv: Sequence[str] | None, *positionals: tuple[str, str]
) -> tuple[argparse.Namespace, Any, dict[str, str]] | None:
    """Parse ``config.ini [POSITIONALS...] [--app-name NAME]`` and load that app's section.

    Returns the arguments, the parsed INI file and its ``[app:NAME]`` section,
    with logging set up from the file; None once a problem with the file has
    been reported.
    """
    from baseplate.server._config import ConfigFileError, get_section, read_config
    from baseplate.server._logging import configure_logging

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("config_file", help="the INI file of the application")
    for name, help_text in positionals:
        parser.add_argument(name, help=help_text)
    parser.add_argument("--app-name", default="main", help="the [app:NAME] section to use")
    args = parser.parse_args(argv)
    _add_cwd_to_path()
    try:
        config = read_config(args.config_file)
        configure_logging(config, args.config_file, debug=False, stream=sys.stderr)
        return args, config, get_section(config, args.config_file, "app", args.app_name)
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
    command = _app_command(
        prog,
        "Run a function with the application's configuration.",
        argv,
        ("entrypoint", "the function to run, as module:function"),
    )
    if command is None:
        return _FAILED
    args, _, app_options = command
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
    command = _app_command(prog, "An interactive shell with the application and a context.", argv)
    if command is None:
        return _FAILED
    args, config_parser, app_options = command
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
