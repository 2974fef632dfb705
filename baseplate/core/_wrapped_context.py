"""The context object a local span hands to the code it wraps."""

from __future__ import annotations

from typing import Any


class WrappedRequestContext:
    """A view of a request's context object with some attributes replaced.

    A local span needs its own ``trace`` (itself) and its own context clients
    (whose calls must be children of the local span), while the rest of the
    request's context, and the framework object behind it, stay shared.
    Reading an attribute that was not shadowed reads the wrapped context;
    setting one sets it on the wrapped context, as if there were no wrapper.
    Only :meth:`shadow_context_attr` gives the wrapper a value of its own.
    """

    def __init__(self, context: Any) -> None:
        object.__setattr__(self, "_context", context)

    def __getattr__(self, name: str) -> Any:
        # Called only for names the wrapper itself does not hold.
        return getattr(self._context, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._context, name, value)

    def shadow_context_attr(self, name: str, value: Any) -> None:
        """Give this wrapper its own ``name``, leaving the wrapped context unchanged."""
        object.__setattr__(self, name, value)

    def clone(self) -> WrappedRequestContext:
        """A new wrapper of the same context, without this wrapper's shadowed attributes."""
        return WrappedRequestContext(self._context)

    def __repr__(self) -> str:
        return f"<WrappedRequestContext of {self._context!r}>"
