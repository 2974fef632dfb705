"""The current OpenTelemetry context, read and replaced without the API's layers.

``opentelemetry.context.get_current()`` and ``attach()`` each pass through two
Python functions before reaching the context variable that holds the current
context. Code that does this for every span (Baseplate's span facade does it
two or three times per span) can use :func:`get_current` and :func:`attach`
from here instead: when OpenTelemetry uses its default runtime context they
are that variable's own ``get`` and ``set``, otherwise they are the API's
functions, so the behaviour is the same either way.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext


def _accessors() -> tuple[Callable[[], Context], Callable[[Context], Token[Context]]]:
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and variable is not None:
        return variable.get, variable.set
    return otel_context.get_current, otel_context.attach


#: ``get_current()``: the current context, as ``opentelemetry.context.get_current``.
#: ``attach(context)``: make ``context`` current, as ``opentelemetry.context.attach``.
get_current, attach = _accessors()
