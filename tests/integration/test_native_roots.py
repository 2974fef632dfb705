"""Requests whose root span an OpenTelemetry instrumentor started reach Baseplate's observers.

A Flask application served through opentelemetry-instrumentation-flask has no
Baseplate integration in its request path. Once its Baseplate is asked to
observe native root spans, each request still gets the metrics observer's
timers and counters, Sentry reports for its errors, the logging observer's
thread naming and its children as child spans. Everything here is real: the
Flask instrumentor on a Flask app, requests instrumented against a local HTTP
server, a UDP socket for statsd and a Sentry stand-in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import flask
import pytest
import requests
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.trace import SpanKind

from baseplate import error_reporter_from_config, metrics_client_from_config
from baseplate.core import Baseplate, NativeRequestContext, NativeServerSpan
from baseplate.testing import RecordingObserver
from bridge.processor import set_root_span_adopter
from tests.diagnostics.test_sentry import FLUSH_TIMEOUT, SentryStandIn

TIMER = r"[0-9]+(?:\.[0-9]+)?"
logger = logging.getLogger("native-roots-app")


@pytest.fixture
def downstream(http_server) -> str:
    return http_server.url()


@pytest.fixture
def sentry_server() -> Iterator[SentryStandIn]:
    server = SentryStandIn()
    yield server
    server.close()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def make_flask_app(downstream: str) -> flask.Flask:
    app = flask.Flask("native-roots")

    @app.route("/hello/<name>")
    def hello(name: str) -> str:
        logger.info("saying hello to %s", name)
        requests.get(downstream, timeout=10)
        return f"hello {name}"

    @app.route("/fail")
    def fail() -> str:
        raise ValueError("view failed")

    return app


class Service:
    """A Baseplate with metrics, Sentry, logging and a recorder; no integration."""

    def __init__(self, statsd: Any, sentry_server: SentryStandIn) -> None:
        self.baseplate = Baseplate()
        self.baseplate.configure_metrics(
            metrics_client_from_config(
                {"metrics.namespace": "svc", "metrics.endpoint": statsd.endpoint}
            )
        )
        self.reporter = error_reporter_from_config({"sentry.dsn": sentry_server.dsn}, __name__)
        self.baseplate.configure_error_reporting(self.reporter)
        self.baseplate.configure_logging()
        self.recorder = RecordingObserver()
        self.baseplate.register(self.recorder)
        self.statsd = statsd
        self.sentry_server = sentry_server

    def metric_lines(self) -> list[str]:
        return [
            line for datagram in self.statsd.received() for line in datagram.decode().split("\n")
        ]

    def sentry_events(self) -> list[dict[str, Any]]:
        self.reporter.flush(timeout=FLUSH_TIMEOUT)
        with self.sentry_server.lock:
            return list(self.sentry_server.events)


@pytest.fixture
def service(spans, statsd, sentry_server) -> Iterator[Service]:
    made = Service(statsd, sentry_server)
    yield made
    set_root_span_adopter(None)
    made.reporter.close(timeout=FLUSH_TIMEOUT)


@pytest.fixture
def client(spans, downstream, instrumented_requests) -> Iterator[Any]:
    """The Flask app under its instrumentor (instrumented after the fresh provider)."""
    app = make_flask_app(downstream)
    FlaskInstrumentor().instrument_app(app)
    yield app.test_client()
    FlaskInstrumentor().uninstrument_app(app)


def assert_timer(lines: list[str], name: str) -> None:
    assert any(re.fullmatch(rf"{re.escape(name)}:{TIMER}\|ms", line) for line in lines), lines


def server_metric_name(span_name: str) -> str:
    return "svc.server." + re.sub(r"[^A-Za-z0-9_-]+", "_", span_name).strip("_")


def test_a_native_server_span_becomes_a_baseplate_request(service, client, spans):
    service.baseplate.observe_native_root_spans()
    assert client.get("/hello/ann").data == b"hello ann"

    root = next(span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER)
    http = next(span for span in spans.get_finished_spans() if span.kind is SpanKind.CLIENT)
    assert http.parent.span_id == root.context.span_id

    created = service.recorder.events_named("on_server_span_created")
    assert created == [(root.name, "on_server_span_created")]
    assert service.recorder.events_named("on_start")[0] == (root.name, "on_start")
    assert (root.name, "on_child_span_created", http.name) in service.recorder.events
    assert (root.name, "on_finish", None) in service.recorder.events

    lines = service.metric_lines()
    timer = server_metric_name(root.name)
    assert_timer(lines, timer)
    assert f"{timer}.success:1|c" in lines
    # The child is timed too, under the dependency's name.
    assert any(line.startswith("svc.clients.") for line in lines), lines


def test_its_log_records_carry_the_request(service, client, records):
    service.baseplate.observe_native_root_spans()
    client.get("/hello/bob")
    [record] = [r for r in records.records if r.getMessage() == "saying hello to bob"]
    span_context_trace = int(record.trace_id)
    assert record.threadName == str(span_context_trace)


def test_its_errors_reach_sentry_and_count_as_failures(service, client, spans):
    service.baseplate.observe_native_root_spans()
    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    assert client.get("/fail").status_code == 500

    [root] = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    lines = service.metric_lines()
    assert f"{server_metric_name(root.name)}.failure:1|c" in lines
    [event] = service.sentry_events()
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "ValueError"
    assert exception["value"] == "view failed"


def test_the_server_span_and_context_describe_the_native_span(service, spans):
    seen: list[Any] = []

    class Keep(RecordingObserver):
        def on_server_span_created(self, context: Any, server_span: Any) -> None:
            seen.append((context, server_span))

    service.baseplate.register(Keep())
    service.baseplate.observe_native_root_spans()
    tracer = trace.get_tracer("worker")
    with tracer.start_as_current_span("job", kind=SpanKind.CONSUMER) as job:
        job_context = job.get_span_context()
    [(context, server_span)] = seen
    assert isinstance(context, NativeRequestContext)
    assert isinstance(server_span, NativeServerSpan)
    assert context.trace is server_span
    assert server_span.native
    assert (server_span.trace_id, server_span.id) == (
        job_context.trace_id & (2**64 - 1),
        job_context.span_id,
    )
    assert server_span.parent_id is None
    assert hasattr(context, "metrics")
    assert_timer(service.metric_lines(), "svc.server.job")


def test_only_request_roots_are_observed(service, spans):
    service.baseplate.observe_native_root_spans()
    tracer = trace.get_tracer("worker")
    with (
        tracer.start_as_current_span("internal-root"),
        tracer.start_as_current_span("nested-server", kind=SpanKind.SERVER),
    ):
        pass  # the server span is not a local root
    with tracer.start_as_current_span("outbound", kind=SpanKind.CLIENT):
        pass
    assert service.recorder.events == []


def test_nothing_is_observed_unless_asked(service, client):
    client.get("/hello/cy")
    assert service.recorder.events == []
    assert not any(line.startswith("svc.server.") for line in service.metric_lines())


def test_the_last_baseplate_to_ask_gets_them(service, client, statsd):
    other = RecordingObserver()
    second = Baseplate()
    second.register(other)
    service.baseplate.observe_native_root_spans()
    second.observe_native_root_spans()
    client.get("/hello/dee")
    assert service.recorder.events == []
    assert other.events_named("on_server_span_created")
