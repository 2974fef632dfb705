"""A trace destination that is down: one warning line, counted drops, bounded waits.

Against real sockets on 127.0.0.1: a port where nothing listens (connection
refused) and a collector stand-in that takes requests and holds the answers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from baseplate.core import Baseplate
from baseplate.diagnostics.tracing import TracingClient
from bridge import provider, shutdown
from tests.diagnostics.tracing.standins import HOLD_LIMIT, tracing_client_to

ROUNDS = 4
SPANS_PER_REQUEST = 2


def serve_request(client: TracingClient) -> None:
    """One request: a server span and a child, both sampled."""
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    server = baseplate.make_server_span(SimpleNamespace(), "get_thing")
    with server, server.make_child("db.query"):
        pass


def at_least_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("exporter", ["zipkin", "otlp"])
def test_a_destination_down_is_one_warning_line_and_counted(
    exporter, closed_port, fresh_provider, monkeypatch, caplog
):
    # The OTLP exporter retries until its timeout: keep each export short.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0.5")
    caplog.set_level(logging.DEBUG)
    client = tracing_client_to(closed_port, exporter)

    for _ in range(ROUNDS):
        serve_request(client)
        assert client.flush(10)

    [warning] = at_least_warnings(caplog)
    assert warning.name == "bridge.batching"
    message = warning.getMessage()
    assert message.startswith(
        f"dropped {SPANS_PER_REQUEST} span(s): exporting to http://127.0.0.1:"
    )
    assert "\n" not in message
    assert not [record for record in caplog.records if record.exc_info]
    # Each round's failure is counted, and logged at debug level with the count.
    assert client.dropped_spans == ROUNDS * SPANS_PER_REQUEST
    repeats = [r.getMessage() for r in caplog.records if r.name == "bridge.batching"]
    assert [repeat.endswith(f"({n} times so far)") for n, repeat in enumerate(repeats, 1)] == [
        False,
        *[True] * (ROUNDS - 1),
    ]


class BrokenExporter(SpanExporter):
    """An exporter with a bug: what it raises is not the network's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise TypeError("a bug in the encoder")


def test_a_bug_in_the_exporter_is_logged_with_its_traceback(fresh_provider, caplog):
    client = TracingClient("svc", 1.0, BrokenExporter())
    for _ in range(2):
        serve_request(client)
        client.flush(10)

    [error] = at_least_warnings(caplog)
    assert error.levelno == logging.ERROR
    assert error.exc_info is not None and error.exc_info[0] is TypeError
    assert client.dropped_spans == 2 * SPANS_PER_REQUEST


def test_flush_and_shutdown_return_on_time_when_the_collector_does_not_answer(
    collector, fresh_provider, caplog, monkeypatch
):
    # The export waits for the collector's answer longer than the collector
    # holds it: had flush or shutdown waited for the export, they would have
    # returned only once the collector answered.
    monkeypatch.setenv("OTEL_EXPORTER_ZIPKIN_TIMEOUT", str(int(HOLD_LIMIT * 2)))
    collector.hold()
    client = tracing_client_to(collector.port)
    serve_request(client)
    assert not client.flush(0.5)
    collector.wait_for(1)  # the export is under way, and stuck
    assert collector.answered == 0

    with shutdown.deadline_in(0.5):
        provider.shutdown_provider()
    assert collector.answered == 0
    assert client.dropped_spans == SPANS_PER_REQUEST
    [warning] = at_least_warnings(caplog)
    # What was left of the 0.5 s deadline when the route's processor was shut down.
    waited = re.search(r"did not take them within ([\d.]+) s of the shutdown", warning.getMessage())
    assert waited is not None
    assert 0.3 < float(waited.group(1)) <= 0.5
