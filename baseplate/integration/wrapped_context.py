"""Where the original Baseplate defined :class:`WrappedRequestContext`; it lives in
:mod:`baseplate.core` now, which makes one for every local span."""

from baseplate.core._wrapped_context import WrappedRequestContext

__all__ = ["WrappedRequestContext"]
