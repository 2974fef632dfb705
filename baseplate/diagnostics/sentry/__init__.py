"""The error-reporting observer: unexpected exceptions, reported to Sentry.

Built on `sentry-sdk <https://docs.sentry.io/platforms/python/>`_. Each request
(each server span) gets its own Sentry *isolation scope*, so what one request
records (user, tags, extra data) never reaches another request's events, also
when requests run concurrently in threads or greenlets. While the server span
is current, that scope is sentry-sdk's current isolation scope too, so calls
such as ``sentry_sdk.set_tag()`` made by the application land in it.

An exception that ends the server span is reported once, tagged with the
request's ``trace_id``, ``span_id`` and ``span_name``. ``context.sentry`` is a
:class:`SentryClient` bound to the request's scope, with the calls of the
``raven`` client that the original Baseplate handed out (``captureException``,
``captureMessage``, ``user_context``, ``extra_context``, ``tags_context``,
``context``, ``tags``, ``extra``).

.. versionadded:: 0.31
   :class:`SentryClient`, :func:`make_client` and :func:`reset_state`; the
   original used raven.
"""

from __future__ import annotations

from baseplate._extras import missing_extra

try:
    import sentry_sdk  # noqa: F401 - only to fail early, with advice
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.diagnostics.sentry", "sentry-sdk", "sentry") from exc

# One job per module: the raven-compatible client, the observers, making a
# client (with its release and before-send hooks), sending, and the state.
# The type aliases and the span observer are importable as they always were.
from baseplate.diagnostics.sentry._client import Event as Event
from baseplate.diagnostics.sentry._client import Hint as Hint
from baseplate.diagnostics.sentry._client import SentryClient
from baseplate.diagnostics.sentry._factory import EventProcessor as EventProcessor
from baseplate.diagnostics.sentry._factory import make_client
from baseplate.diagnostics.sentry._observer import SentryBaseplateObserver
from baseplate.diagnostics.sentry._observer import (
    SentryServerSpanObserver as SentryServerSpanObserver,
)
from baseplate.diagnostics.sentry._state import reset_state

__all__ = ["SentryBaseplateObserver", "SentryClient", "make_client", "reset_state"]
