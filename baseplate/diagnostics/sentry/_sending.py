"""Getting events out: the reporters' transport, and their closing when the process ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import urllib3
from sentry_sdk.envelope import Envelope

from baseplate.diagnostics.sentry._state import state
from bridge import shutdown
from bridge._sentry_internals import WatchedHttpTransport
from bridge.failures import holding_records, one_line, pass_on_at_debug

if TYPE_CHECKING:
    from baseplate.diagnostics.sentry._client import SentryClient


class ReportingTransport(WatchedHttpTransport):
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
            state.failures.report(reason, "dropped a Sentry event: the send queue is full")
        elif reason.startswith("status_") and reason != "status_429":
            self._fail(None, reason, f"Sentry answered HTTP {reason.removeprefix('status_')}")

    def _fail(self, envelope: Envelope | None, kind: str, why: str) -> None:
        if envelope is None or envelope.get_event() is not None:
            with self._counts:
                self.dropped_events += 1
        state.failures.report(f"send: {kind}", f"sending to {self.destination} failed: {why}")

    def _count(self, envelope: Envelope, waiting: int) -> None:
        if envelope.get_event() is not None:
            with self._counts:
                self._waiting += waiting


def close_at_shutdown(client: SentryClient) -> None:
    """Have ``client`` send what waits and close when the process's telemetry is shut down."""
    state.open_clients.add(client)
    shutdown.add_hook(_close_open_clients)


def _close_open_clients() -> None:
    """The :mod:`bridge.shutdown` hook: send what waits until the deadline, then stop."""
    for client in list(state.open_clients):
        _close_within(client, shutdown.time_left())


def _close_within(client: SentryClient, timeout: float) -> None:
    """Flush ``client`` for at most ``timeout`` seconds, close it, and report what was left."""
    transport = client.sdk_client.transport
    if transport is None:
        return
    client.flush(timeout=timeout)
    unsent = transport.waiting_events if isinstance(transport, ReportingTransport) else 0
    client.close(timeout=0)
    if unsent:
        where = transport.destination if isinstance(transport, ReportingTransport) else "Sentry"
        state.failures.report(
            "shutdown",
            f"dropped {unsent} Sentry event(s): {where} did not take them within "
            f"{timeout:.3g} s of the shutdown",
        )
