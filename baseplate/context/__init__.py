"""Helpers that integrate client libraries with Baseplate's diagnostics.

A context factory, added with :meth:`baseplate.core.Baseplate.add_to_context`,
makes an object for each request's context; the instrumented clients in this
package make versions of their client that trace each call as a child span of
the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baseplate.core import ServerSpan


class ContextFactory:
    """An interface for adding stuff to the context object.

    Objects implementing this interface can be passed to
    :meth:`~baseplate.core.Baseplate.add_to_context`. The return value of
    :meth:`make_object_for_context` will be added to the context object with
    the name specified in ``add_to_context``.
    """

    def make_object_for_context(self, name: str, server_span: ServerSpan) -> Any:
        """Return an object that can be added to the context object."""
        raise NotImplementedError
