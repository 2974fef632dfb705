"""``baseplate-tshell``: an interactive shell with the application and a context.

The context carries a started server span (named ``shell``) of the
application's :class:`~baseplate.core.Baseplate`, so context attributes added
with ``add_to_context`` and client calls are traced as in a request. The
span finishes when the shell exits.
"""

from __future__ import annotations

import code
import contextlib
import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

from baseplate.core import Baseplate

SPAN_NAME = "shell"


class ShellContext:
    """The context object of the shell's server span; attributes are added to it."""


def find_baseplate(app: Any, depth: int = 3) -> Baseplate | None:
    """The :class:`Baseplate` an application uses, looked for where integrations keep it.

    That is the application itself or, breadth first, an attribute of it or
    of its attributes, down to ``depth`` levels: a Thrift processor's event
    handler's ``baseplate``, say.
    """
    level, seen = [app], set()
    for _ in range(depth + 1):
        following = []
        for candidate in level:
            if isinstance(candidate, Baseplate):
                return candidate
            if id(candidate) in seen or isinstance(candidate, (type, types.ModuleType)):
                continue
            seen.add(id(candidate))
            with contextlib.suppress(TypeError):  # no __dict__
                following += list(vars(candidate).values())
        level = following
    return None


def make_banner(env_banner: dict[str, str]) -> str:
    """The greeting: Python's version and each available object with its description."""
    width = max(len(name) for name in env_banner) + 2
    lines = ["Baseplate Interactive Shell", sys.version, "", "Available Objects:", ""]
    lines += [f"  {name:<{width}} {description}" for name, description in env_banner.items()]
    return "\n".join(lines)


def _interact(env: dict[str, Any], banner: str) -> None:
    if sys.stdin.isatty():
        try:
            ipython: Any = importlib.import_module("IPython")
        except ImportError:
            pass
        else:
            print(banner)
            ipython.start_ipython(argv=["--no-banner"], user_ns=env)
            return
    code.interact(banner=banner, local=env, exitmsg="")


def run_shell(app: Any, setup: Callable[[dict[str, Any], dict[str, str]], Any] | None) -> None:
    """Run the shell until end of input, with ``app`` and ``context`` defined.

    ``setup(env, env_banner)`` may add names to ``env`` and describe them in
    ``env_banner``. IPython is used when installed and input is a terminal,
    otherwise :func:`code.interact`, which also reads piped input.
    """
    baseplate = find_baseplate(app) or Baseplate()
    context = ShellContext()
    span = baseplate.make_server_span(context, SPAN_NAME)
    env: dict[str, Any] = {"app": app, "context": context}
    env_banner = {
        "app": "This project's app instance",
        "context": "The context for this shell instance's span",
    }
    span.start()
    try:
        if setup is not None:
            setup(env, env_banner)
        _interact(env, make_banner(env_banner))
    finally:
        span.finish()
