"""Sentry down: one warning line for the whole outage, not a few per event.

The DSN names a port on 127.0.0.1 where nothing listens, so every send is
refused; sentry-sdk's own transport and urllib3 do the sending.
"""

from __future__ import annotations

import logging

from baseplate.diagnostics import sentry as sentry_module
from baseplate.diagnostics.sentry import make_client, reset_state

EVENTS = 3


def test_sentry_down_is_one_warning_line_and_counted(closed_port, caplog):
    reset_state()  # the first failure of the test is the first of the process
    caplog.set_level(logging.DEBUG)
    reporter = make_client(f"http://key@127.0.0.1:{closed_port}/1")
    try:
        for number in range(EVENTS):
            try:
                raise ValueError(number)
            except ValueError:
                assert reporter.captureException() is not None
            reporter.flush(timeout=10)

        warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
        assert [record.name for record in warnings] == [sentry_module.__name__], caplog.text
        message = warnings[0].getMessage()
        assert message.startswith(f"sending to http://127.0.0.1:{closed_port} failed: ")
        assert "Connection refused" in message
        assert "key" not in message
        assert warnings[0].exc_info is None
        # urllib3's retries are still there, at debug level, for whoever wants them.
        assert any("Retrying" in record.getMessage() for record in caplog.records)
        transport = reporter.sdk_client.transport
        assert getattr(transport, "dropped_events", None) == EVENTS
        assert getattr(transport, "waiting_events", None) == 0
    finally:
        reporter.close(timeout=1)
