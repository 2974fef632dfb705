"""The raven-compatible reporter: :class:`SentryClient`, on sentry-sdk's scopes."""

from __future__ import annotations

import copy
import functools
import logging
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

import sentry_sdk
from sentry_sdk.scope import Scope, use_isolation_scope, use_scope
from sentry_sdk.utils import event_from_exception

from baseplate.core import ExcInfo
from baseplate.diagnostics.sentry._state import logger, state
from bridge._sentry_internals import extras_of, tags_of, user_of

if TYPE_CHECKING:
    from sentry_sdk.types import Event as SdkEvent

#: An event, and what sentry-sdk knows of its making (``exc_info``), as the
#: before-send hooks get them.
Event: TypeAlias = "dict[str, Any]"
Hint: TypeAlias = "dict[str, Any]"

_LOGGING_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}

_Method = TypeVar("_Method", bound="Callable[..., Any]")


def _never_raises(method: _Method) -> _Method:
    """Log what goes wrong in a reporting call instead of raising it into the request.

    The first failure of each call is logged with its traceback, the rest at
    debug level.
    """

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception:
            name = method.__qualname__
            state.failures.report(
                f"call: {name}", f"{name} failed; nothing was reported", exc_info=sys.exc_info()
            )
            return None

    return cast("_Method", call)


def _level_name(level: int | str) -> str:
    if isinstance(level, int):
        return _LOGGING_LEVELS.get(level, "error")
    name = level.lower()
    return {"warn": "warning", "critical": "fatal"}.get(name, name)


class _RavenContext:
    """What raven's ``client.context`` offered: the request's user, tags and extra data.

    Reads and writes go to the Sentry isolation scope the client is bound to.
    """

    def __init__(self, client: SentryClient) -> None:
        self._client = client

    def merge(self, data: Mapping[str, Any], activate: bool = True) -> None:
        """Merge ``{"user": ..., "tags": ..., "extra": ...}`` into the context."""
        if data.get("user"):
            self._client.user_context(data["user"])
        if data.get("tags"):
            self._client.tags_context(data["tags"])
        if data.get("extra"):
            self._client.extra_context(data["extra"])

    def get(self) -> dict[str, Any]:
        """A copy of the context: ``{"user": ..., "tags": ..., "extra": ...}``."""
        scope = self._client._data_scope()
        # sentry-sdk has no public getters for these.
        return {
            "user": dict(user_of(scope) or {}),
            "tags": dict(tags_of(scope)),
            "extra": dict(extras_of(scope)),
        }

    def clear(self, deactivate: bool | None = None) -> None:
        """Forget the user, tags and extra data the application set.

        The client's own tags and extra data, and the request's trace tags,
        stay.
        """
        client = self._client
        scope = client._data_scope()
        scope.set_user(None)
        for key in list(tags_of(scope)):
            scope.remove_tag(key)
        for key in list(extras_of(scope)):
            scope.remove_extra(key)
        client._set_defaults(scope)
        if client._request is not None:
            scope.set_tags(client._request.trace_tags)

    def activate(self, sticky: bool = False) -> None:
        """Does nothing: each request's scope is activated by the observer."""

    def deactivate(self) -> None:
        """Does nothing: each request's scope is deactivated by the observer."""


class SentryClient:
    """An error reporter with the calls of raven's ``Client``, on sentry-sdk.

    This is what :func:`baseplate.error_reporter_from_config` returns and
    :meth:`baseplate.core.Baseplate.configure_error_reporting` takes. During a
    request, ``context.sentry`` is a :class:`SentryClient` of the same
    reporter bound to that request's scope. Outside a request the calls use
    sentry-sdk's current isolation scope (one per thread or greenlet).

    :param sdk_client: The sentry-sdk client that sends the events. It is
        used through scopes only, never installed as sentry-sdk's global
        client.
    :param tags: Tags on every event (raven's ``Client(tags=...)``).
    :param extra: Extra data on every event (raven's ``Client(extra=...)``).

    .. versionadded:: 0.31
    """

    def __init__(
        self,
        sdk_client: sentry_sdk.Client,
        tags: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.sdk_client = sdk_client
        #: Tags added to every event; request and call tags take precedence.
        self.tags: dict[str, Any] = dict(tags or {})
        #: Extra data added to every event; request and call data take precedence.
        self.extra: dict[str, Any] = dict(extra or {})
        #: The id of the last event this object sent, or None.
        self.last_event_id: str | None = None
        self.context = _RavenContext(self)
        self._request: _RequestScopes | None = None

    # -- scopes ---------------------------------------------------------------

    def _bound_to(self, request: _RequestScopes) -> SentryClient:
        bound = copy.copy(self)  # shares the sdk client, tags and extra
        bound.last_event_id = None
        bound.context = _RavenContext(bound)
        bound._request = request
        return bound

    def _with_defaults(self, isolation: Scope) -> Scope:
        """``isolation`` forked, bound to our client, with our tags and extra under its own."""
        scope = isolation.fork()
        scope.client = self.sdk_client
        self._set_defaults(scope)
        return scope

    def _set_defaults(self, scope: Scope) -> None:
        """Add our tags and extra data to ``scope``, where it has none of its own."""
        existing = tags_of(scope)
        scope.set_tags({key: value for key, value in self.tags.items() if key not in existing})
        for key, value in self.extra.items():
            if key not in extras_of(scope):
                scope.set_extra(key, value)

    def _new_request_scopes(self) -> _RequestScopes:
        isolation = self._with_defaults(Scope.get_isolation_scope())
        current = Scope.get_current_scope().fork()
        current.client = self.sdk_client
        return _RequestScopes(isolation, current)

    def _data_scope(self) -> Scope:
        """Where the user, tags and extra data set through this object go."""
        if self._request is not None:
            return self._request.isolation
        return Scope.get_isolation_scope()

    @contextmanager
    def _capturing(self) -> Iterator[Scope]:
        if self._request is not None:
            isolation, current = self._request.isolation, self._request.current
        else:
            isolation = self._with_defaults(Scope.get_isolation_scope())
            current = Scope.get_current_scope().fork()
            current.client = self.sdk_client
        with use_isolation_scope(isolation), use_scope(current) as scope:
            yield scope

    def _capture(
        self,
        event: Event,
        hint: Hint | None,
        data: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        level: int | str | None = None,
        fingerprint: Sequence[str] | None = None,
        sample_rate: float | None = None,
        **ignored: Any,
    ) -> str | None:
        if sample_rate is not None and random.random() >= sample_rate:
            return None
        data = dict(data or {})
        scope_kwargs: dict[str, Any] = {}
        call_tags = {**data.pop("tags", {}), **(tags or {})}
        call_extra = {**data.pop("extra", {}), **(extra or {})}
        if call_tags:
            scope_kwargs["tags"] = call_tags
        if call_extra:
            scope_kwargs["extras"] = call_extra
        if "user" in data:
            scope_kwargs["user"] = data.pop("user")
        level = level if level is not None else data.pop("level", None)
        if level is not None:
            scope_kwargs["level"] = _level_name(level)
        fingerprint = fingerprint if fingerprint is not None else data.pop("fingerprint", None)
        if fingerprint is not None:
            scope_kwargs["fingerprint"] = list(fingerprint)
        event.update(data)
        with self._capturing() as scope:
            event_id = scope.capture_event(cast("SdkEvent", event), hint, **scope_kwargs)
        if event_id is not None:
            self.last_event_id = event_id
        return event_id

    # -- raven's calls --------------------------------------------------------

    @_never_raises
    def captureException(  # noqa: N802 - raven's name
        self, exc_info: ExcInfo | BaseException | bool | None = None, **kwargs: Any
    ) -> str | None:
        """Report an exception; by default the one being handled.

        :param exc_info: An ``(type, value, traceback)`` tuple or an exception;
            None or True for :func:`sys.exc_info`.
        :param kwargs: raven's options: ``tags``, ``extra``, ``level``,
            ``fingerprint``, ``sample_rate``, ``data`` (a dict of event fields,
            also ``user``, ``tags`` and ``extra``). Others are ignored.
        :returns: The event id, or None if the event was not sent.
        """
        if exc_info is None or exc_info is True or exc_info is False:
            exc_info = sys.exc_info()
        error = exc_info if isinstance(exc_info, BaseException) else exc_info[1]
        if error is None:
            logger.debug("captureException called with no exception")
            return None
        if self._request is not None:
            self._request.reported.append(error)
        event, hint = event_from_exception(error, client_options=self.sdk_client.options)
        return self._capture(cast(Event, event), hint, **kwargs)

    @_never_raises
    def captureMessage(self, message: str, **kwargs: Any) -> str | None:  # noqa: N802
        """Report a message, at level ``error`` unless ``level`` says otherwise.

        :param message: The message; with ``params``, a ``%`` format string.
        :param kwargs: As for :meth:`captureException`, plus ``params``.
        :returns: The event id, or None if the event was not sent.
        """
        params = kwargs.pop("params", ())
        logentry: dict[str, Any] = {"message": message}
        if params:
            logentry["params"] = list(params)
            with suppress(TypeError, ValueError):
                logentry["formatted"] = message % tuple(params)
        event: Event = {"logentry": logentry, "level": "error"}
        return self._capture(event, None, **kwargs)

    @_never_raises
    def captureBreadcrumb(self, **kwargs: Any) -> None:  # noqa: N802
        """Record a breadcrumb (``message``, ``category``, ``level``, ``data``, ``type``)."""
        crumb: dict[str, Any] = {
            key: kwargs[key] for key in ("message", "category", "data", "type") if key in kwargs
        }
        if "level" in kwargs:
            crumb["level"] = _level_name(kwargs["level"])
        self._data_scope().add_breadcrumb(crumb)

    @_never_raises
    def user_context(self, data: Mapping[str, Any]) -> None:
        """Merge ``data`` into the user of the events (``id``, ``email``, ...)."""
        scope = self._data_scope()
        # Forked scopes share the user dict: replace it, never change it.
        scope.set_user({**(user_of(scope) or {}), **data})

    @_never_raises
    def tags_context(self, data: Mapping[str, Any]) -> None:
        """Merge ``data`` into the tags of the events."""
        self._data_scope().set_tags(data)

    @_never_raises
    def extra_context(self, data: Mapping[str, Any]) -> None:
        """Merge ``data`` into the extra data of the events."""
        scope = self._data_scope()
        for key, value in data.items():
            scope.set_extra(key, value)

    def is_enabled(self) -> bool:
        """Whether events are sent anywhere (a DSN is configured)."""
        return self.sdk_client.transport is not None

    # -- the transport --------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds for queued events to be sent."""
        self.sdk_client.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued, waiting up to ``timeout`` seconds, and stop sending."""
        self.sdk_client.close(timeout=timeout)


class _RequestScopes:
    """The Sentry scopes of one request, and the exceptions it already reported."""

    __slots__ = ("current", "isolation", "reported", "trace_tags")

    def __init__(self, isolation: Scope, current: Scope) -> None:
        self.isolation = isolation
        self.current = current
        self.reported: list[BaseException] = []
        self.trace_tags: dict[str, str] = {}

    def has_reported(self, error: BaseException) -> bool:
        return any(reported is error for reported in self.reported)
