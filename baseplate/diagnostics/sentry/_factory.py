"""Making a reporter: sentry-sdk's client set up for Baseplate, and the before-send hooks."""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

import sentry_sdk

from baseplate.diagnostics.sentry._client import Event, Hint, SentryClient
from baseplate.diagnostics.sentry._release import git_revision
from baseplate.diagnostics.sentry._sending import ReportingTransport, close_at_shutdown
from baseplate.diagnostics.sentry._state import state

#: A before-send hook as sentry-sdk takes it: return the event, changed or
#: not, or None to drop it.
EventProcessor: TypeAlias = "Callable[[Event, Hint], Event | None]"


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
                state.failures.report(
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
        release = os.environ.get("SENTRY_RELEASE") or git_revision(module_name)
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
        options["transport"] = ReportingTransport
    options.update(sdk_options)
    client = SentryClient(sentry_sdk.Client(**options), tags={"site": site} if site else None)
    hooks.extend(_as_event_processor(processor, client) for processor in processors)
    if client.is_enabled():
        close_at_shutdown(client)
    return client
