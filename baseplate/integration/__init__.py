"""Integrations of Baseplate with the frameworks that serve requests: Pyramid and Thrift.

:class:`WrappedRequestContext`, the context object of a local span, is
exported here as it was in the original Baseplate.
"""

from baseplate.core._wrapped_context import WrappedRequestContext

__all__ = ["WrappedRequestContext"]
