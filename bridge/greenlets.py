"""Carrying the current OpenTelemetry context into new greenlets.

Under gevent each greenlet has its own :mod:`contextvars` context, and a new
greenlet starts with an *empty* one: work spawned during a request does not
see the request's current span, and spans it creates start new traces. Spawn
such work with :func:`spawn` (or wrap the function with :func:`carry_context`)
to give it a copy of the spawning greenlet's context, or call
:func:`patch_gevent_spawn` once at start-up to make ``gevent.spawn`` and
``gevent.spawn_later`` do so everywhere.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import gevent

_P = ParamSpec("_P")
_R = TypeVar("_R")

_original_spawn = gevent.spawn
_original_spawn_later = gevent.spawn_later


def carry_context(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Wrap ``function`` to run in a copy of the context current now."""
    context = contextvars.copy_context()

    @functools.wraps(function)
    def run_in_context(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return context.run(function, *args, **kwargs)

    return run_in_context


def spawn(function: Callable[..., Any], *args: Any, **kwargs: Any) -> gevent.Greenlet:
    """Like :func:`gevent.spawn`, but the greenlet starts in a copy of the current context."""
    greenlet = gevent.Greenlet(function, *args, **kwargs)
    greenlet.gr_context = contextvars.copy_context()
    greenlet.start()
    return greenlet


def spawn_later(
    seconds: float, function: Callable[..., Any], *args: Any, **kwargs: Any
) -> gevent.Greenlet:
    """Like :func:`gevent.spawn_later`, carrying the current context."""
    greenlet = gevent.Greenlet(function, *args, **kwargs)
    greenlet.gr_context = contextvars.copy_context()
    greenlet.start_later(seconds)
    return greenlet


def patch_gevent_spawn() -> None:
    """Make ``gevent.spawn`` and ``gevent.spawn_later`` carry the current context.

    Only these two functions change (gevent's greenlet class cannot be
    patched): code that builds ``Greenlet`` objects itself, or uses pools,
    should wrap its functions with :func:`carry_context`.
    """
    gevent.spawn = spawn
    gevent.spawn_later = spawn_later


def unpatch_gevent_spawn() -> None:
    """Undo :func:`patch_gevent_spawn`."""
    gevent.spawn = _original_spawn
    gevent.spawn_later = _original_spawn_later
