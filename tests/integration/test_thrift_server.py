"""The Thrift integration: a real THeader server and real clients over TCP.

The server is a small thread-per-connection loop around the processor (the
project's own gevent server is tested with ``baseplate-serve``); clients are
the generated clients over ``TSocket`` speaking THeader, as peers do.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import logging
import re
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocolFactory
from thrift.Thrift import TApplicationException
from thrift.transport import TSocket
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TTransport import TFramedTransport, TTransportException

from baseplate import config, metrics
from baseplate.core import Baseplate, EdgeRequestContextFactory
from baseplate.diagnostics.tracing import TracingClient
from baseplate.integration.thrift import BaseplateProcessorEventHandler
from baseplate.secrets import SecretsStore
from baseplate.testing import RecordingObserver
from baseplate.thrift.codegen import generate
from tests._helpers import closed_afterwards, wait_until
from tests.integration.edge import VALID_USER_TOKEN, write_edge_secrets

IDL = """
include "baseplate.thrift"

namespace py {package}

exception Refused {{
    1: string reason;
}}

service Inspector extends baseplate.BaseplateService {{
    /** The call's context, as JSON. */
    string describe() throws (1: Refused refused),
    string meet(1: string party),
    void explode(),
    oneway void poke(),
}}
"""

TIMER = r"[0-9]+(?:\.[0-9]+)?"
HANDLER_LOGGER = "tests.integration.thrift_handler"


# -- the service -------------------------------------------------------------


@pytest.fixture(scope="module")
def inspector(tmp_path_factory) -> Iterator[Any]:
    """The generated Inspector module, from an IDL generated for this module."""
    directory = tmp_path_factory.mktemp("inspector")
    package = f"inspector_{uuid.uuid4().hex[:12]}"
    idl = directory / "inspector.thrift"
    idl.write_text(IDL.format(package=package))
    generate(idl, directory / "gen")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(directory / "gen"))
        yield importlib.import_module(f"{package}.Inspector")
    for name in [name for name in sys.modules if name.split(".")[0] == package]:
        del sys.modules[name]


def describe_context(context: Any) -> dict[str, Any]:
    trace = context.trace
    described: dict[str, Any] = {
        "name": trace.name,
        "trace_id": trace.trace_id,
        "parent_id": trace.parent_id,
        "span_id": trace.id,
        "sampled": trace.sampled,
        "flags": trace.flags,
        "has_request_context": hasattr(context, "request_context"),
    }
    raw = context.raw_request_context
    described["raw_request_context"] = None if raw is None else base64.b64encode(raw).decode()
    if hasattr(context, "request_context"):
        edge = context.request_context
        described["user_logged_in"] = edge.user.is_logged_in
        described["loid"] = edge.user.loid
        described["session_id"] = edge.session.id
        if edge.user.is_logged_in:
            described["user_id"] = edge.user.id
    return described


class Handler:
    def __init__(self, inspector: Any) -> None:
        self.inspector = inspector
        self.barrier = threading.Barrier(2, timeout=10)
        self.pokes = threading.Event()

    def is_healthy(self, context: Any) -> bool:
        return True

    def describe(self, context: Any) -> str:
        if context.raw_request_context == b"refuse":
            raise self.inspector.Refused(reason="asked to")
        return json.dumps(describe_context(context))

    def meet(self, context: Any, party: str) -> str:
        # Both calls are in their handler at once: each must see its own trace.
        before = context.trace.trace_id
        self.barrier.wait()
        return json.dumps({"party": party, "before": before, "after": context.trace.trace_id})

    def explode(self, context: Any) -> None:
        raise RuntimeError("kaboom")

    def poke(self, context: Any) -> None:
        self.pokes.set()


class ThriftServer:
    """Serves a processor on 127.0.0.1, one thread per connection."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.protocol_factory = THeaderProtocolFactory(
            allowed_client_types=(
                THeaderClientType.HEADERS,
                THeaderClientType.FRAMED_BINARY,
            )
        )
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.connections: list[socket.socket] = []
        self.errors: list[BaseException] = []
        self._start(self._accept)

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            self._start(self._serve, connection)

    def _serve(self, connection: socket.socket) -> None:
        transport = TSocket.TSocket()
        transport.setHandle(connection)
        protocol = self.protocol_factory.getProtocol(transport)
        try:
            while True:
                self.processor.process(protocol, protocol)
        except (TTransportException, EOFError, OSError):
            pass  # the client left
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            connection.close()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(timeout=10)
        assert not self.errors


@pytest.fixture
def secrets_store(tmp_path) -> SecretsStore:
    return SecretsStore(str(write_edge_secrets(tmp_path / "secrets.json")))


@pytest.fixture
def baseplate() -> Baseplate:
    return Baseplate()


@pytest.fixture
def recorder(baseplate) -> RecordingObserver:
    recorder = RecordingObserver()
    baseplate.register(recorder)
    return recorder


@pytest.fixture
def handler(inspector) -> Handler:
    return Handler(inspector)


@pytest.fixture
def serve(inspector, baseplate, handler) -> Iterator[Callable[..., ThriftServer]]:
    def start(
        edge_context_factory: EdgeRequestContextFactory | None = None,
        observe_health_checks: bool = False,
    ) -> ThriftServer:
        processor = inspector.ContextProcessor(handler)
        event_handler = BaseplateProcessorEventHandler(
            logging.getLogger(HANDLER_LOGGER),
            baseplate,
            edge_context_factory,
            observe_health_checks=observe_health_checks,
        )
        processor.setEventHandler(event_handler)
        return ThriftServer(processor)

    with closed_afterwards(start) as make:
        yield make


@pytest.fixture
def server(serve) -> ThriftServer:
    return serve()


class Client:
    """A generated client over a THeader socket; headers apply to the next call."""

    def __init__(self, inspector: Any, port: int, framed_binary: bool = False) -> None:
        self.socket = TSocket.TSocket("127.0.0.1", port)
        self.socket.setTimeout(10_000)
        if framed_binary:
            self.protocol = TBinaryProtocol(TFramedTransport(self.socket))
        else:
            self.protocol = THeaderProtocolFactory().getProtocol(self.socket)
        self.client = inspector.Client(self.protocol)
        self.socket.open()

    def headers(self, **headers: str | bytes) -> Client:
        for name, value in headers.items():
            encoded = value if isinstance(value, bytes) else value.encode()
            self.protocol.trans.set_header(name.replace("_", "-").encode(), encoded)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def connect(inspector) -> Iterator[Callable[..., Client]]:
    with closed_afterwards(
        lambda server, **kwargs: Client(inspector, server.port, **kwargs)
    ) as make:
        yield make


def finished(recorder: RecordingObserver, name: str, count: int = 1) -> list[tuple[Any, ...]]:
    """The server finishes a span after the client has its reply: wait for it."""

    def events() -> list[tuple[Any, ...]]:
        found = [event for event in recorder.events_named("on_finish") if event[0] == name]
        return found if len(found) >= count else []

    return wait_until(events, f"{count} finished {name!r} span(s)")


def exported(spans: Any, name: str) -> Any:
    def find() -> Any:
        return [span for span in spans.get_finished_spans() if span.name == name]

    (span,) = wait_until(find, f"exported span {name!r}")
    return span


def assert_new_trace(described: dict[str, Any], sent: set[int] = frozenset()) -> None:
    assert described["span_id"] == described["trace_id"]
    assert described["trace_id"] not in sent
    assert 0 <= described["trace_id"] < 2**64
    assert described["parent_id"] is None
    assert described["sampled"] is None
    assert described["flags"] is None


# -- trace headers -------------------------------------------------------------

UPSTREAM = {"Trace": "1234", "Parent": "2345", "Span": "3456", "Sampled": "1", "Flags": "0"}


def test_server_span_takes_the_upstream_ids(server, connect, recorder, spans):
    described = json.loads(connect(server).headers(**UPSTREAM).describe())
    assert described == {
        "name": "describe",
        "trace_id": 1234,
        "parent_id": 2345,
        "span_id": 3456,
        "sampled": True,
        "flags": 0,
        "has_request_context": False,
        "raw_request_context": None,
    }
    assert finished(recorder, "describe") == [("describe", "on_finish", None)]
    assert recorder.events[:2] == [
        ("describe", "on_server_span_created"),
        ("describe", "on_start"),
    ]

    span = exported(spans, "describe")
    assert span.kind is SpanKind.SERVER
    assert span.context.trace_id == 1234
    assert span.context.span_id == 3456
    assert span.parent.span_id == 2345
    assert span.status.status_code is not StatusCode.ERROR


WIDE_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN = 0x00F067AA0BA902B7


def test_traceparent_alone_makes_a_child_of_the_callers_span(server, connect, spans):
    traceparent = f"00-{WIDE_TRACE:032x}-{CALLER_SPAN:016x}-01"
    described = json.loads(connect(server).headers(traceparent=traceparent).describe())
    assert described["trace_id"] == WIDE_TRACE & (2**64 - 1)
    assert described["parent_id"] == CALLER_SPAN
    assert described["span_id"] != CALLER_SPAN
    assert described["sampled"] is True

    span = exported(spans, "describe")
    assert span.context.trace_id == WIDE_TRACE
    assert span.context.span_id == described["span_id"]
    assert span.parent.span_id == CALLER_SPAN


def test_baseplate_headers_win_over_a_disagreeing_traceparent(server, connect, spans):
    traceparent = f"00-{WIDE_TRACE:032x}-{CALLER_SPAN:016x}-01"
    described = json.loads(connect(server).headers(**UPSTREAM, traceparent=traceparent).describe())
    assert (described["trace_id"], described["parent_id"], described["span_id"]) == (
        1234,
        2345,
        3456,
    )
    assert exported(spans, "describe").context.span_id == 3456


def test_b3_header_names(server, connect):
    described = json.loads(
        connect(server)
        .headers(
            **{
                "B3-TraceId": "11",
                "B3-ParentSpanId": "22",
                "B3-SpanId": "33",
                "B3-Sampled": "0",
                "B3-Flags": "1",
            }
        )
        .describe()
    )
    assert (described["trace_id"], described["parent_id"], described["span_id"]) == (11, 22, 33)
    assert described["sampled"] is False
    assert described["flags"] == 1


def test_header_names_are_case_insensitive(server, connect):
    described = json.loads(
        connect(server).headers(trace="5", PARENT="6", sPaN="7", sampled="1").describe()
    )
    assert (described["trace_id"], described["parent_id"], described["span_id"]) == (5, 6, 7)
    assert described["sampled"] is True
    assert described["flags"] is None


def test_sampled_is_false_without_the_header(server, connect):
    described = json.loads(connect(server).headers(Trace="5", Parent="6", Span="7").describe())
    assert described["sampled"] is False


def test_no_headers_start_a_new_trace(server, connect):
    assert_new_trace(json.loads(connect(server).describe()))


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Trace": "abc", "Parent": "1", "Span": "2"}, id="not decimal"),
        pytest.param({"Trace": "0x10", "Parent": "1", "Span": "2"}, id="hex"),
        pytest.param({"Trace": "1", "Span": "2"}, id="parent missing"),
        pytest.param({"Trace": "-1", "Parent": "1", "Span": "2"}, id="negative"),
        pytest.param({"Trace": str(2**64), "Parent": "1", "Span": "2"}, id="too big"),
        pytest.param({"Trace": "1", "B3-TraceId": "9", "Parent": "1", "Span": "2"}, id="conflict"),
        pytest.param({"Trace": "1", "Parent": "1", "Span": "2", "Flags": "x"}, id="bad flags"),
        pytest.param({"Trace": b"\xff", "Parent": "1", "Span": "2"}, id="not ascii"),
    ],
)
def test_invalid_headers_start_a_new_trace(server, connect, recorder, headers):
    described = json.loads(connect(server).headers(**headers).describe())
    sent = {int(v) for v in headers.values() if isinstance(v, str) and v.lstrip("-").isdigit()}
    assert_new_trace(described, sent)
    assert finished(recorder, "describe") == [("describe", "on_finish", None)]


def test_framed_binary_clients_get_a_new_trace(server, connect):
    assert_new_trace(json.loads(connect(server, framed_binary=True).describe()))


def test_concurrent_calls_keep_their_own_trace(server, connect):
    results = {}

    def meet(party: str, trace_id: str) -> None:
        client = connect(server).headers(Trace=trace_id, Parent="1", Span=trace_id)
        results[party] = json.loads(client.meet(party))

    threads = [
        threading.Thread(target=meet, args=("a", "101")),
        threading.Thread(target=meet, args=("b", "202")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == {
        "a": {"party": "a", "before": 101, "after": 101},
        "b": {"party": "b", "before": 202, "after": 202},
    }


# -- the edge request context --------------------------------------------------


def test_edge_context_is_attached(serve, connect, secrets_store):
    factory = EdgeRequestContextFactory(secrets_store)
    server = serve(factory)
    header = factory.new(
        authentication_token=VALID_USER_TOKEN,
        loid_id="t2_deadbeef",
        loid_created_ms=100000,
        session_id="beefdead",
    ).header
    described = json.loads(connect(server).headers(**UPSTREAM, Edge_Request=header).describe())
    assert described["raw_request_context"] == base64.b64encode(header).decode()
    assert described["has_request_context"] is True
    assert described["user_logged_in"] is True
    assert described["user_id"] == "t2_example"
    assert described["loid"] == "t2_deadbeef"
    assert described["session_id"] == "beefdead"


def test_edge_header_name_is_case_insensitive(serve, connect, secrets_store):
    factory = EdgeRequestContextFactory(secrets_store)
    header = factory.new(loid_id="t2_x", session_id="s").header
    described = json.loads(connect(serve(factory)).headers(edge_request=header).describe())
    assert described["loid"] == "t2_x"
    assert described["user_logged_in"] is False


def test_garbage_edge_header_gives_an_empty_context(serve, connect, secrets_store):
    server = serve(EdgeRequestContextFactory(secrets_store))
    described = json.loads(connect(server).headers(Edge_Request=b"\x00garbage").describe())
    assert described["has_request_context"] is True
    assert described["loid"] is None
    assert described["session_id"] is None
    assert described["user_logged_in"] is False


def test_without_a_factory_the_raw_header_is_kept(server, connect):
    described = json.loads(connect(server).headers(Edge_Request=b"\x0c\x00\x01\x00\x00").describe())
    assert described["has_request_context"] is False
    assert base64.b64decode(described["raw_request_context"]) == b"\x0c\x00\x01\x00\x00"


def test_no_edge_header_without_a_factory(server, connect):
    assert json.loads(connect(server).describe())["raw_request_context"] is None


# -- exceptions ----------------------------------------------------------------


def test_declared_exception_is_returned_and_the_span_succeeds(
    inspector, server, connect, recorder, spans
):
    client = connect(server).headers(**UPSTREAM, Edge_Request=b"refuse")
    with pytest.raises(inspector.Refused) as caught:
        client.describe()
    assert caught.value.reason == "asked to"
    assert finished(recorder, "describe") == [("describe", "on_finish", None)]
    assert exported(spans, "describe").status.status_code is not StatusCode.ERROR


def test_undeclared_exception_is_an_internal_error_and_a_failure(
    server, connect, recorder, spans, caplog
):
    client = connect(server).headers(**UPSTREAM)
    with pytest.raises(TApplicationException) as caught:
        client.explode()
    assert caught.value.type == TApplicationException.INTERNAL_ERROR

    ((_, _, exc_info),) = finished(recorder, "explode")
    assert isinstance(exc_info[1], RuntimeError)
    assert exc_info[1].args == ("kaboom",)
    span = exported(spans, "explode")
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]

    logged = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [(record.name, record.getMessage()) for record in logged] == [
        (HANDLER_LOGGER, "Unexpected exception in 'explode'.")
    ]

    # The connection survives: the same client calls again.
    assert json.loads(client.describe())["name"] == "describe"


def test_oneway_call_gets_a_span(server, connect, handler, recorder):
    connect(server).headers(**UPSTREAM).poke()
    assert handler.pokes.wait(10)
    assert finished(recorder, "poke") == [("poke", "on_finish", None)]


def test_health_check_method_inherited_from_baseplate(server, connect, recorder):
    assert connect(server).is_healthy() is True
    assert finished(recorder, "is_healthy") == [("is_healthy", "on_finish", None)]


def trace_and_time(baseplate: Baseplate, statsd: Any) -> tuple[TracingClient, Any]:
    """Sample every trace into an in-memory exporter, and send metrics to ``statsd``."""
    exporter = InMemorySpanExporter()
    client = TracingClient("svc", 1.0, exporter)
    baseplate.configure_tracing(client)
    baseplate.configure_metrics(metrics.make_client("svc", config.Endpoint(statsd.endpoint)))
    return client, exporter


def test_health_checks_are_neither_traced_nor_timed_by_default(
    baseplate, server, connect, recorder, statsd, spans
):
    client, exporter = trace_and_time(baseplate, statsd)
    thrift = connect(server)
    assert thrift.is_healthy() is True
    thrift.describe()
    finished(recorder, "describe")  # calls finish in order: is_healthy is done too
    # The observers hear of the finish before the span ends: wait for the export.
    exported = wait_until(lambda: client.flush() and exporter.get_finished_spans(), "the export")
    assert [span.name for span in exported] == ["describe"]
    # Unsampled, so not even the provider's own processors record it.
    assert [span.name for span in spans.get_finished_spans()] == ["describe"]
    lines = metric_lines(statsd)  # describe's: is_healthy sent none before it
    assert lines[1:] == ["svc.server.describe.success:1|c"]
    # The other observers still see the health check.
    assert finished(recorder, "is_healthy") == [("is_healthy", "on_finish", None)]


def test_health_checks_are_traced_and_timed_when_asked(baseplate, serve, connect, statsd):
    client, exporter = trace_and_time(baseplate, statsd)
    assert connect(serve(observe_health_checks=True)).is_healthy() is True
    lines = metric_lines(statsd)
    assert lines[1:] == ["svc.server.is_healthy.success:1|c"]
    # The reply (and the metrics) can leave before the server's span has
    # ended: wait for the export rather than flush once.
    exported = wait_until(lambda: client.flush() and exporter.get_finished_spans(), "the export")
    assert [span.name for span in exported] == ["is_healthy"]


# -- metrics -------------------------------------------------------------------


def metric_lines(statsd: Any) -> list[str]:
    """The lines of the one datagram a call sends, once it has arrived."""
    (datagram,) = wait_until(statsd.received, "a metrics datagram")
    return datagram.decode().split("\n")


def test_metrics(baseplate, server, connect, statsd):
    baseplate.configure_metrics(metrics.make_client("svc", config.Endpoint(statsd.endpoint)))
    client = connect(server)
    client.describe()
    lines = metric_lines(statsd)
    assert re.fullmatch(rf"svc\.server\.describe:{TIMER}\|ms", lines[0])
    assert lines[1:] == ["svc.server.describe.success:1|c"]

    with pytest.raises(TApplicationException):
        client.explode()
    lines = metric_lines(statsd)
    assert re.fullmatch(rf"svc\.server\.explode:{TIMER}\|ms", lines[0])
    assert lines[1:] == ["svc.server.explode.failure:1|c"]


def test_declared_exception_counts_as_success(baseplate, inspector, server, connect, statsd):
    baseplate.configure_metrics(metrics.make_client("svc", config.Endpoint(statsd.endpoint)))
    with pytest.raises(inspector.Refused):
        connect(server).headers(Edge_Request=b"refuse").describe()
    assert metric_lines(statsd)[1:] == ["svc.server.describe.success:1|c"]
