"""The private parts of sentry-sdk Baseplate relies on are still there, and still work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sentry_sdk
import urllib3
from sentry_sdk.envelope import Envelope
from sentry_sdk.scope import Scope

from bridge import _sentry_internals as internals
from tests.diagnostics.test_sentry import SentryStandIn


def test_every_hook_is_present():
    assert internals.missing_hooks() == [], "sentry-sdk no longer has these hooks"


def test_what_a_scope_was_given_is_read_back():
    scope = Scope()
    assert internals.user_of(scope) is None
    scope.set_user({"id": "t2_x"})
    scope.set_tag("tag", "value")
    scope.set_extra("extra", 1)
    assert internals.user_of(scope) == {"id": "t2_x"}
    assert internals.tags_of(scope) == {"tag": "value"}
    assert internals.extras_of(scope) == {"extra": 1}
    scope.remove_tag("tag")
    assert internals.tags_of(scope) == {}


class RecordingTransport(internals.WatchedHttpTransport):
    """Records each envelope sent and the error its send raised, if any."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.sends: list[tuple[Envelope, BaseException | None]] = []

    @contextmanager
    def sending(self, envelope: Envelope) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            self.sends.append((envelope, error))
        else:
            self.sends.append((envelope, None))


def send_one(dsn: str) -> list[BaseException | None]:
    """Send one event envelope; what the hook saw of each of its sends."""
    client = sentry_sdk.Client(dsn=dsn, transport=RecordingTransport, default_integrations=False)
    transport = client.transport
    assert isinstance(transport, RecordingTransport)
    envelope = Envelope()
    envelope.add_event({"message": "hello"})
    try:
        transport.capture_envelope(envelope)
        client.flush(timeout=10)
    finally:
        client.close(timeout=0)
    # sentry-sdk may send an envelope of its own, reporting the lost event.
    return [error for sent, error in transport.sends if sent is envelope]


def test_a_send_runs_inside_the_transport_hook():
    sentry = SentryStandIn()
    try:
        assert send_one(sentry.dsn) == [None]
        assert [event["message"] for event in sentry.events] == ["hello"]
    finally:
        sentry.close()


def test_a_failed_send_raises_its_error_inside_the_transport_hook(closed_port):
    [error] = send_one(f"http://key@127.0.0.1:{closed_port}/1")
    assert isinstance(error, urllib3.exceptions.MaxRetryError)
