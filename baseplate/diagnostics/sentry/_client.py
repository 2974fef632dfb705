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
   :class:`SentryClient` and :func:`make_client`; the original used raven.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib.util
import logging
import os
import random
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

try:
    import sentry_sdk
    import urllib3
    from sentry_sdk.envelope import Envelope
    from sentry_sdk.scope import Scope, use_isolation_scope, use_scope
    from sentry_sdk.utils import event_from_exception
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "baseplate.diagnostics.sentry needs sentry-sdk: install baseplate[sentry]"
    ) from exc

if TYPE_CHECKING:
    from sentry_sdk.types import Event as SdkEvent

from baseplate.core import BaseplateObserver, ServerSpan, ServerSpanObserver
from baseplate.core._observers import ExcInfo
from bridge import shutdown
from bridge._sentry_internals import WatchedHttpTransport, extras_of, tags_of, user_of
from bridge.failures import FailureLog, holding_records, one_line, pass_on_at_debug

__all__ = ["SentryBaseplateObserver", "SentryClient", "make_client"]

logger = logging.getLogger(__name__)

Event: TypeAlias = "dict[str, Any]"
Hint: TypeAlias = "dict[str, Any]"
#: A before-send hook as sentry-sdk takes it: return the event, changed or
#: not, or None to drop it.
EventProcessor: TypeAlias = "Callable[[Event, Hint], Event | None]"

_LOGGING_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}
#: Exceptions that stop a process or a generator rather than signal a bug.
_NOT_ERRORS = (KeyboardInterrupt, SystemExit, GeneratorExit)


_Method = TypeVar("_Method", bound="Callable[..., Any]")
#: Failures of reporting calls and of sending to Sentry: each kind logged once.
_failures = FailureLog(logger)


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
            _failures.report(
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


# -- sending, and the end of the process --------------------------------------------


class _ReportingTransport(WatchedHttpTransport):
    """sentry-sdk's HTTP transport, saying once, not per event, that Sentry can't be reached.

    sentry-sdk's transport sends each envelope through urllib3, which logs a
    warning for each of its retries, then drops the envelope without a word.
    This one holds urllib3's lines about a send back (passing them on at
    debug level), reports failed sends by :class:`~bridge.failures.FailureLog`'s
    policy and counts them, and keeps track of the events queued and not yet
    handled: what a shutdown leaves unsent. It sees each send through the
    bridge's :class:`~bridge._sentry_internals.WatchedHttpTransport`, which
    keeps the private method of sentry-sdk it overrides out of this module.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        #: Events that could not be sent: Sentry unreachable or refusing them, queue full.
        self.dropped_events = 0
        self._waiting = 0
        self._counts = threading.Lock()

    @property
    def destination(self) -> str:
        """Sentry's address, without the DSN's key."""
        dsn = self.parsed_dsn
        return f"{dsn.scheme}://{dsn.netloc}" if dsn is not None else "Sentry"

    @property
    def waiting_events(self) -> int:
        """Events queued for sending and not sent or dropped yet."""
        return self._waiting

    def capture_envelope(self, envelope: Envelope) -> None:
        """Queue the envelope, counting the event it carries as waiting."""
        self._count(envelope, waiting=1)
        super().capture_envelope(envelope)

    @contextmanager
    def sending(self, envelope: Envelope) -> Iterator[None]:
        """Report a failed send once, with urllib3's retry warnings held back."""
        try:
            with holding_records("urllib3.connectionpool") as held:
                try:
                    yield
                except (OSError, urllib3.exceptions.HTTPError) as exc:
                    # sentry-sdk recorded the loss; its worker would swallow the error.
                    cause = getattr(exc, "reason", None) or exc
                    self._fail(envelope, type(cause).__name__, one_line(str(exc)))
            pass_on_at_debug(held)
        finally:
            self._count(envelope, waiting=-1)

    def on_dropped_event(self, reason: str) -> None:
        """Report what sentry-sdk drops: a refusal by Sentry, or a full queue."""
        super().on_dropped_event(reason)
        if reason == "full_queue":
            with self._counts:
                self._waiting -= 1
                self.dropped_events += 1
            _failures.report(reason, "dropped a Sentry event: the send queue is full")
        elif reason.startswith("status_") and reason != "status_429":
            self._fail(None, reason, f"Sentry answered HTTP {reason.removeprefix('status_')}")

    def _fail(self, envelope: Envelope | None, kind: str, why: str) -> None:
        if envelope is None or envelope.get_event() is not None:
            with self._counts:
                self.dropped_events += 1
        _failures.report(f"send: {kind}", f"sending to {self.destination} failed: {why}")

    def _count(self, envelope: Envelope, waiting: int) -> None:
        if envelope.get_event() is not None:
            with self._counts:
                self._waiting += waiting


#: The reporters made by make_client, closed when the process's telemetry is shut down.
_open_clients: weakref.WeakSet[SentryClient] = weakref.WeakSet()


def _close_at_shutdown() -> None:
    """The :mod:`bridge.shutdown` hook: send what waits until the deadline, then stop."""
    for client in list(_open_clients):
        _close_within(client, shutdown.time_left())


def _close_within(client: SentryClient, timeout: float) -> None:
    """Flush ``client`` for at most ``timeout`` seconds, close it, and report what was left."""
    transport = client.sdk_client.transport
    if transport is None:
        return
    client.flush(timeout=timeout)
    unsent = transport.waiting_events if isinstance(transport, _ReportingTransport) else 0
    client.close(timeout=0)
    if unsent:
        where = transport.destination if isinstance(transport, _ReportingTransport) else "Sentry"
        _failures.report(
            "shutdown",
            f"dropped {unsent} Sentry event(s): {where} did not take them within "
            f"{timeout:.3g} s of the shutdown",
        )


# -- building a client ----------------------------------------------------------


def _exception_names(error_type: type[BaseException]) -> tuple[str, str]:
    return f"{error_type.__module__}.{error_type.__qualname__}", error_type.__name__


def _before_send_chain(
    ignore_exceptions: Sequence[str], processors: Sequence[EventProcessor]
) -> EventProcessor:
    """One before-send hook: drop ignored exceptions, then run the processors.

    ``processors`` is read at each event, so it may be filled in later.
    """
    patterns = tuple(ignore_exceptions)

    def before_send(event: Event, hint: Hint) -> Event | None:
        exc_info = hint.get("exc_info")
        if patterns and exc_info and exc_info[0] is not None:
            names = _exception_names(exc_info[0])
            if any(fnmatch.fnmatchcase(name, p) for name in names for p in patterns):
                return None
        for processor in processors:
            try:
                result = processor(event, hint)
            except Exception:
                # Sending the event unprocessed could leak what the processor
                # was there to scrub: drop it instead.
                _failures.report(
                    f"processor: {processor!r}",
                    f"sentry processor {processor!r} failed; event dropped",
                    exc_info=sys.exc_info(),
                )
                return None
            if result is None:
                return None
            event = result
        return event

    return before_send


def _as_event_processor(processor: Any, client: SentryClient) -> EventProcessor:
    """A before-send hook from a callable, or from a raven-style processor class."""
    if isinstance(processor, type) and hasattr(processor, "process"):
        instance = processor(client)

        def process(event: Event, hint: Hint) -> Event | None:
            result: Event | None = instance.process(event)
            return result

        return process
    hook: EventProcessor = processor
    return hook


#: Seconds ``git rev-parse`` may take: it reads a few files, but a slow disk
#: or a loaded machine must not hold up the application's start for long.
GIT_TIMEOUT = 2.0


def _git_revision(module_name: str) -> str | None:
    """The commit checked out in the git repository ``module_name`` lives in.

    Asks ``git rev-parse HEAD`` in the module's directory, as git finds the
    repository above it (worktrees included). None when the module has no
    file, git is not installed or the directory is not in a repository.
    """
    try:
        module = sys.modules.get(module_name)
        origin = getattr(module, "__file__", None)
        if origin is None:
            spec = importlib.util.find_spec(module_name)
            origin = spec.origin if spec is not None else None
        if origin is None:
            return None
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(origin).resolve().parent,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, ValueError, ImportError, subprocess.TimeoutExpired):
        logger.debug("could not ask git for the revision of %s", module_name, exc_info=True)
        return None
    if result.returncode != 0:
        logger.debug("no git revision for %s: %s", module_name, result.stderr.strip())
        return None
    return result.stdout.strip()


def make_client(
    dsn: str | None,
    *,
    site: str | None = None,
    environment: str | None = None,
    release: str | None = None,
    module_name: str | None = None,
    include_paths: Iterable[str] = (),
    exclude_paths: Iterable[str] = (),
    ignore_exceptions: Iterable[str] = (),
    sample_rate: float = 1.0,
    processors: Iterable[Any] = (),
    **sdk_options: Any,
) -> SentryClient:
    """Make a :class:`SentryClient` on a new sentry-sdk client.

    sentry-sdk is set up without its default and auto-enabling integrations
    (no ``sys.excepthook``, logging or threading hooks that would compete
    with Baseplate's observer), and is not made sentry-sdk's global client.
    Events go out from sentry-sdk's background thread, so reporting never
    waits for the network.

    :param dsn: Where to send events; empty or None discards them (the
        ``SENTRY_DSN`` environment variable is not consulted).
    :param site: Added to every event as the ``site`` tag.
    :param environment: The environment the application runs in.
    :param release: The release; by default ``SENTRY_RELEASE``, else the git
        commit checked out where ``module_name`` lives (``git rev-parse
        HEAD``), else what sentry-sdk finds.
    :param module_name: The application's root module.
    :param include_paths: Module prefixes that are the application's own
        code (sentry-sdk's ``in_app_include``).
    :param exclude_paths: Module prefixes that are not (``in_app_exclude``).
    :param ignore_exceptions: Exception classes not to report, by fully
        qualified or bare name, ``*`` globs allowed.
    :param sample_rate: The fraction of events to send, from 0.0 to 1.0.
    :param processors: Hooks run on each event before it is sent, in order:
        callables taking ``(event, hint)``, or raven-style classes, made with
        the client, whose ``process(event)`` method is called. Each returns
        the event or None to drop it.
    :param sdk_options: Further options for ``sentry_sdk.Client``.
    """
    if release is None and module_name is not None:
        release = os.environ.get("SENTRY_RELEASE") or _git_revision(module_name)
    hooks: list[EventProcessor] = []  # filled in once the client exists
    options: dict[str, Any] = {
        "dsn": dsn or "",
        "environment": environment,
        "release": release,
        "in_app_include": list(include_paths),
        "in_app_exclude": list(exclude_paths),
        "sample_rate": sample_rate,
        "before_send": _before_send_chain(list(ignore_exceptions), hooks),
        "default_integrations": False,
        "auto_enabling_integrations": False,
        "integrations": [],
    }
    if "transport" not in sdk_options:
        options["transport"] = _ReportingTransport
    options.update(sdk_options)
    client = SentryClient(sentry_sdk.Client(**options), tags={"site": site} if site else None)
    hooks.extend(_as_event_processor(processor, client) for processor in processors)
    if client.is_enabled():
        _open_clients.add(client)
        shutdown.add_hook(_close_at_shutdown)
    return client
