"""Every private part of sentry-sdk Baseplate relies on, in one fenced place.

sentry-sdk's :class:`~sentry_sdk.scope.Scope` lets a caller set a user,
tags and extras but not read them back, and Baseplate's ``context.sentry``
offers the original's ``get_context()`` and ``clear_context()``, which
need to. Its HTTP transport offers no hook for a send that failed, which
the reporter's transport needs to report and count:
:class:`WatchedHttpTransport` overrides the private method that sends and
offers a public one in its place. Each is reached through this module, and
``tests/bridge/test_sentry_internals.py`` fails naming the missing hook
(:func:`missing_hooks`) if an upgrade moves one.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

from sentry_sdk.envelope import Envelope
from sentry_sdk.scope import Scope
from sentry_sdk.transport import HttpTransport

#: The method of sentry-sdk's HTTP transport that sends one envelope, which
#: :class:`WatchedHttpTransport` overrides to see the send fail.
SEND_ENVELOPE_HOOK: Final = "_send_envelope"


def user_of(scope: Scope) -> dict[str, Any] | None:
    """The user set on ``scope``, if any."""
    user: dict[str, Any] | None = scope._user
    return user


def tags_of(scope: Scope) -> dict[str, Any]:
    """The tags set on ``scope`` (the scope's own mapping: copy it to keep it)."""
    tags: dict[str, Any] = scope._tags
    return tags


def extras_of(scope: Scope) -> dict[str, Any]:
    """The extras set on ``scope`` (the scope's own mapping: copy it to keep it)."""
    extras: dict[str, Any] = scope._extras
    return extras


class WatchedHttpTransport(HttpTransport):
    """sentry-sdk's HTTP transport, with a public hook around the sending of each envelope.

    sentry-sdk sends envelopes from its worker thread, and when a send fails
    the worker swallows the error: no public method sees it. This transport
    sends each envelope inside :meth:`sending`, which a subclass overrides.
    sentry-sdk makes the transport from its class (``transport=`` option), so
    the hook is a method to override rather than a callable to pass in.
    """

    def sending(self, envelope: Envelope) -> AbstractContextManager[object]:
        """The context ``envelope`` is sent in, on sentry-sdk's worker thread.

        An error of the send (a network failure: sentry-sdk has already
        recorded the envelope as lost) is raised inside it; what it does not
        swallow goes on to sentry-sdk's worker, which logs it. An HTTP error
        status is not raised: sentry-sdk reports it through
        ``on_dropped_event``. By default, nothing is done around a send.
        """
        return nullcontext()

    def _send_envelope(self, envelope: Envelope) -> None:
        with self.sending(envelope):
            super()._send_envelope(envelope)


def missing_hooks() -> list[str]:
    """The names of the hooks above that the installed sentry-sdk lacks."""
    scope = Scope()
    missing = [
        f"sentry_sdk.scope.Scope.{name}"
        for name in ("_user", "_tags", "_extras")
        if not hasattr(scope, name)
    ]
    if not callable(getattr(HttpTransport, SEND_ENVELOPE_HOOK, None)):
        missing.append(f"sentry_sdk.transport.HttpTransport.{SEND_ENVELOPE_HOOK}")
    return missing
