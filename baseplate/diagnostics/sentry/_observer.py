"""The observers: each request gets its Sentry scope, and what ends it is reported."""

from __future__ import annotations

from typing import Any, cast

import sentry_sdk
from sentry_sdk.scope import Scope
from sentry_sdk.utils import event_from_exception

from baseplate.core import BaseplateObserver, ExcInfo, ServerSpan, ServerSpanObserver
from baseplate.diagnostics.sentry._client import Event, SentryClient, _RequestScopes

#: Exceptions that stop a process or a generator rather than signal a bug.
_NOT_ERRORS = (KeyboardInterrupt, SystemExit, GeneratorExit)


class SentryBaseplateObserver(BaseplateObserver):
    """Error reporting observer.

    This observer reports unexpected exceptions to Sentry. The client is
    available to the application during requests as ``context.sentry``,
    bound to the request's own scope.

    :param client: A :class:`SentryClient` (as made by
        :func:`baseplate.error_reporter_from_config`) or a ``sentry_sdk.Client``.
    """

    def __init__(self, client: SentryClient | sentry_sdk.Client) -> None:
        if isinstance(client, sentry_sdk.Client):
            client = SentryClient(client)
        self.client = client

    def on_server_span_created(self, context: Any, server_span: ServerSpan) -> None:
        """Give the request its scope and its ``context.sentry``."""
        request = self.client._new_request_scopes()
        context.sentry = self.client._bound_to(request)
        server_span.register(SentryServerSpanObserver(self.client, server_span, request))


class SentryServerSpanObserver(ServerSpanObserver):
    """Makes the request's scope current while it runs; reports what ends it."""

    def __init__(self, client: SentryClient, server_span: ServerSpan, request: _RequestScopes):
        self.client = client
        self.server_span = server_span
        self.request = request
        self._previous: tuple[Scope, Scope] | None = None

    def on_start(self) -> None:
        span = self.server_span
        isolation = self.request.isolation
        self.request.trace_tags = {
            "trace_id": str(span.trace_id),
            "span_id": str(span.id),
            "span_name": span.name,
        }
        isolation.set_tags(self.request.trace_tags)
        isolation.set_transaction_name(span.name)
        self._previous = (Scope.get_isolation_scope(), Scope.get_current_scope())
        Scope.set_isolation_scope(isolation)
        Scope.set_current_scope(self.request.current)

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        try:
            error = exc_info[1] if exc_info is not None else None
            if (
                error is not None
                and not isinstance(error, _NOT_ERRORS)
                and not self.request.has_reported(error)
            ):
                self.request.reported.append(error)
                event, hint = event_from_exception(
                    error,
                    client_options=self.client.sdk_client.options,
                    mechanism={"type": "baseplate", "handled": False},
                )
                self.client._bound_to(self.request)._capture(
                    cast(Event, event), hint, level="error"
                )
        finally:
            self._deactivate()

    def _deactivate(self) -> None:
        # Token-free, so that finishing in another context cannot fail: only
        # put back what was current if our scopes are still the current ones.
        if self._previous is None:
            return
        previous_isolation, previous_current = self._previous
        self._previous = None
        if Scope.get_isolation_scope() is self.request.isolation:
            Scope.set_isolation_scope(previous_isolation)
        if Scope.get_current_scope() is self.request.current:
            Scope.set_current_scope(previous_current)
