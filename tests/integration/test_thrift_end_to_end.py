"""Thrift end to end: two real processes, as services run in production.

The downstream service is generated from an IDL with
``python -m baseplate.thrift.codegen`` and run by ``baseplate-serve`` with the
gevent Thrift server (``[server:main] factory = baseplate.server.thrift``),
its processor instrumented by ``BaseplateProcessorEventHandler`` with metrics
and an edge context factory over a secrets file. The upstream is this test
process: a Baseplate server span whose context has a ``ThriftContextFactory``
proxy over a ``ThriftConnectionPool``. Both sides send their metrics to
:class:`~baseplate.testing.StatsdCapture` sockets in this process.

Checked: the downstream server span continues the trace from the client's
child span; the edge context (LoID, session, a verified token) arrives
intact; the timers and counters of both sides; ``baseplate-healthcheck``
against the running service; and one pool outliving a killed and restarted
server.
"""

from __future__ import annotations

import json
import random
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from baseplate import config, metrics_client_from_config
from baseplate.context.thrift import ThriftContextFactory
from baseplate.core import Baseplate, BaseplateObserver, ServerSpanObserver, Span, TraceInfo
from baseplate.testing import StatsdCapture
from baseplate.thrift_pool import ThriftConnectionPool
from tests._helpers import closed_afterwards, run_python, wait_until
from tests.integration.edge import VALID_USER_TOKEN, write_edge_secrets
from tests.server import (
    LISTENING_RE,
    ServerGroup,
    ServerProcess,
    free_port,
    run_command,
    write,
)

PACKAGE = "downstream_e2e"

IDL = f"""
include "baseplate.thrift"

namespace py {PACKAGE}

exception Oops {{
    1: string why;
}}

service Downstream extends baseplate.BaseplateService {{
    string echo(1: string text) throws (1: Oops oops),
}}
"""

APP = f"""
import json
import logging
import os

from baseplate import config, metrics_client_from_config
from baseplate.core import Baseplate, EdgeRequestContextFactory
from baseplate.integration.thrift import BaseplateProcessorEventHandler
from baseplate.secrets import secrets_store_from_config
from {PACKAGE} import Downstream
from {PACKAGE}.ttypes import Oops

logger = logging.getLogger("downstream_app")


class Handler(Downstream.ContextIface):
    def __init__(self, unhealthy_file):
        self.unhealthy_file = unhealthy_file

    def is_healthy(self, context):
        return not os.path.exists(self.unhealthy_file)

    def echo(self, context, text):
        if text == "oops":
            raise Oops(why="declared")
        if text == "crash":
            raise RuntimeError("undeclared")
        trace = context.trace
        edge = context.request_context
        user = edge.user
        raw = context.raw_request_context
        return json.dumps({{
            "text": text,
            "name": trace.name,
            "trace_id": trace.trace_id,
            "parent_id": trace.parent_id,
            "span_id": trace.id,
            "sampled": trace.sampled,
            "raw_request_context": None if raw is None else raw.hex(),
            "loid": user.loid,
            "cookie_created_ms": user.cookie_created_ms,
            "session_id": edge.session.id,
            "logged_in": user.is_logged_in,
            "user_id": user.id if user.is_logged_in else None,
        }})


def make_processor(app_config):
    cfg = config.parse_config(app_config, {{"downstream": {{"unhealthy_file": config.String}}}})
    baseplate = Baseplate()
    baseplate.configure_logging()
    baseplate.configure_metrics(metrics_client_from_config(app_config))
    edge_factory = EdgeRequestContextFactory(secrets_store_from_config(app_config))
    processor = Downstream.ContextProcessor(Handler(cfg.downstream.unhealthy_file))
    processor.setEventHandler(BaseplateProcessorEventHandler(logger, baseplate, edge_factory))
    return processor
"""

INI = """
[server:main]
factory = baseplate.server.thrift
stop_timeout = 5

[app:main]
factory = downstream_app:make_processor
metrics.namespace = downstream
metrics.endpoint = {statsd}
secrets.path = {secrets}
downstream.unhealthy_file = {unhealthy}
"""

TOKEN_SUBJECT = "t2_example"  # the subject of VALID_USER_TOKEN
ID_MASK = 2**64 - 1


def random_id() -> int:
    return random.randrange(1, 2**64)


# -- the downstream service ------------------------------------------------------


class Service:
    """The generated code, app and INI of the downstream service, in one directory."""

    def __init__(self, directory: Path, statsd: StatsdCapture) -> None:
        self.directory = directory
        self.statsd = statsd
        self.unhealthy_file = directory / "unhealthy"
        idl = write(directory / "downstream.thrift", IDL)
        run_python("-m", "baseplate.thrift.codegen", str(idl), "--out", str(directory))
        secrets = write_edge_secrets(directory / "secrets.json")
        write(directory / "downstream_app.py", APP)
        write(
            directory / "downstream.ini",
            INI.format(statsd=statsd.endpoint, secrets=secrets, unhealthy=self.unhealthy_file),
        )

    def start(self, group: ServerGroup, port: int) -> ServerProcess:
        """``baseplate-serve --bind 127.0.0.1:PORT downstream.ini``, once it listens."""
        server = group.start("--bind", f"127.0.0.1:{port}", "downstream.ini", cwd=self.directory)
        assert server.wait_for(LISTENING_RE)["address"] == f"127.0.0.1:{port}", server.output
        return server


@pytest.fixture(scope="module")
def server_statsd() -> Iterator[StatsdCapture]:
    capture = StatsdCapture()
    yield capture
    capture.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory, server_statsd) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("downstream"), server_statsd)
    sys.path.insert(0, str(service.directory))
    try:
        yield service
    finally:
        sys.path.remove(str(service.directory))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def downstream(service) -> Any:
    """The generated ``Downstream`` module, for the client side."""
    import importlib

    return importlib.import_module(f"{PACKAGE}.Downstream")


@pytest.fixture(scope="module")
def oops_class(service) -> type[Exception]:
    import importlib

    return importlib.import_module(f"{PACKAGE}.ttypes").Oops


@pytest.fixture(scope="module")
def running(service) -> Iterator[tuple[ServerProcess, int]]:
    """One downstream server for the module: the process and its port."""
    with ServerGroup() as group:
        port = free_port()
        yield service.start(group, port), port


# -- metrics -----------------------------------------------------------------------


class Metrics:
    """What a StatsdCapture received, as ``(name, value, type)`` lines."""

    def __init__(self, capture: StatsdCapture) -> None:
        self.capture = capture
        self.capture.received()  # forget what earlier tests left
        self.lines: list[tuple[str, float, str]] = []

    def collect(self) -> list[tuple[str, float, str]]:
        for datagram in self.capture.received():
            for line in datagram.decode().splitlines():
                name, _, rest = line.partition(":")
                value, _, kind = rest.partition("|")
                self.lines.append((name, float(value), kind))
        return self.lines

    def of(self, name: str) -> list[tuple[float, str]]:
        return [(value, kind) for line_name, value, kind in self.collect() if line_name == name]

    def wait_for(self, *names: str) -> None:
        """The server flushes its batch after the reply is written: wait for it."""
        wait_until(lambda: all(self.of(name) for name in names), f"the metrics {names}")

    def assert_timer(self, name: str, count: int = 1) -> None:
        found = self.of(name)
        assert len(found) == count, (name, self.lines)
        assert all(kind == "ms" and value >= 0 for value, kind in found), found

    def assert_counter(self, name: str, count: int = 1) -> None:
        found = self.of(name)
        assert sum(value for value, kind in found if kind == "c") == count, (name, self.lines)


@pytest.fixture
def server_metrics(server_statsd, upstream, downstream) -> Metrics:
    """The server's metrics from this test on.

    The server sends a call's metrics after its answer, so those of an
    earlier test's last call may still be on their way: a call goes first,
    and once its own metrics are in, everything before it is, and is
    forgotten.
    """
    barrier = Metrics(server_statsd)
    with upstream.pool.connection() as protocol:
        downstream.Client(protocol).echo("barrier")
    barrier.wait_for("downstream.server.echo")
    return Metrics(server_statsd)


# -- the upstream (this process) ------------------------------------------------------


class ChildSpans(BaseplateObserver):
    """Keeps every child span of every server span, to read their ids."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    def on_server_span_created(self, context: Any, server_span: Any) -> None:
        server_span.register(_ChildRecorder(self.spans))


class _ChildRecorder(ServerSpanObserver):
    def __init__(self, spans: list[Span]) -> None:
        self.spans = spans

    def on_child_span_created(self, span: Span) -> None:
        self.spans.append(span)


class Upstream:
    """A Baseplate with metrics and the downstream client on its context."""

    def __init__(self, downstream: Any, port: int, statsd: StatsdCapture, edge_factory: Any):
        self.baseplate = Baseplate()
        self.baseplate.configure_metrics(
            metrics_client_from_config(
                {"metrics.namespace": "upstream", "metrics.endpoint": statsd.endpoint}
            )
        )
        self.children = ChildSpans()
        self.baseplate.register(self.children)
        self.pool = ThriftConnectionPool(config.Endpoint(f"127.0.0.1:{port}"), size=2, timeout=5)
        self.baseplate.add_to_context(
            "downstream", ThriftContextFactory(self.pool, downstream.Client)
        )
        self.edge_factory = edge_factory
        self.metrics = Metrics(statsd)

    def request(self, trace_info: TraceInfo | None = None, **edge: Any) -> Any:
        """A context with its server span ``upstream`` (not started) and an edge context."""
        context = types.SimpleNamespace()
        self.baseplate.make_server_span(context, "upstream", trace_info)
        if edge:
            self.edge_factory.new(**edge).attach_context(context)
        return context

    def call(self, text: str) -> Any:
        """``echo(text)`` in a request of its own; the result or the exception raised."""
        context = self.request()
        context.trace.start()
        try:
            result = context.downstream.echo(text)
        except Exception as exc:
            context.trace.finish()
            return exc
        context.trace.finish()
        return result

    def close(self) -> None:
        self.pool.close()


@pytest.fixture
def edge_factory(tmp_path) -> Any:
    from baseplate.core import EdgeRequestContextFactory
    from baseplate.secrets import SecretsStore

    return EdgeRequestContextFactory(
        SecretsStore(str(write_edge_secrets(tmp_path / "secrets.json")))
    )


@pytest.fixture
def make_upstream(downstream, statsd, edge_factory) -> Iterator[Callable[[int], Upstream]]:
    with closed_afterwards(lambda port: Upstream(downstream, port, statsd, edge_factory)) as make:
        yield make


@pytest.fixture
def upstream(make_upstream, running) -> Upstream:
    _, port = running
    return make_upstream(port)


# -- the call: trace, edge context, metrics -----------------------------------------


def test_call_continues_the_trace_and_carries_the_edge_context(upstream, server_metrics, spans):
    upstream_ids = TraceInfo.from_upstream(
        trace_id=random_id(), parent_id=random_id(), span_id=random_id(), sampled=True, flags=None
    )
    context = upstream.request(
        upstream_ids,
        authentication_token=VALID_USER_TOKEN,
        loid_id="t2_abc",
        loid_created_ms=1_600_000_000_000,
        session_id="sess",
    )
    sent_header = context.request_context.header
    server_span = context.trace
    server_span.start()
    described = json.loads(context.downstream.echo("hi"))
    server_span.finish()

    (child,) = upstream.children.spans
    assert child.name == "downstream.echo"
    assert (child.trace_id, child.parent_id) == (upstream_ids.trace_id, upstream_ids.span_id)
    assert server_span.id == upstream_ids.span_id

    # The downstream server span is the client's child span, seen from the other side.
    assert described["text"] == "hi"
    assert described["name"] == "echo"
    assert described["trace_id"] == upstream_ids.trace_id
    assert described["span_id"] == child.id
    assert described["parent_id"] == server_span.id
    assert described["sampled"] is True

    # The exported client span has the ids that were propagated.
    (exported,) = [span for span in spans.get_finished_spans() if span.name == "downstream.echo"]
    assert exported.context.span_id == child.id
    assert exported.context.trace_id & ID_MASK == upstream_ids.trace_id
    assert exported.parent.span_id == server_span.id

    # The edge context arrived byte for byte and the token verified downstream.
    assert bytes.fromhex(described["raw_request_context"]) == sent_header
    assert described["loid"] == "t2_abc"
    assert described["cookie_created_ms"] == 1_600_000_000_000
    assert described["session_id"] == "sess"
    assert described["logged_in"] is True
    assert described["user_id"] == TOKEN_SUBJECT

    # Metrics on both sides.
    upstream.metrics.assert_timer("upstream.server.upstream")
    upstream.metrics.assert_counter("upstream.server.upstream.success")
    upstream.metrics.assert_timer("upstream.clients.downstream.echo")
    upstream.metrics.assert_counter("upstream.clients.downstream.echo.success")
    upstream.metrics.assert_counter("upstream.clients.downstream.echo.failure", 0)
    server_metrics.wait_for("downstream.server.echo", "downstream.server.echo.success")
    server_metrics.assert_timer("downstream.server.echo")
    server_metrics.assert_counter("downstream.server.echo.success")
    server_metrics.assert_counter("downstream.server.echo.failure", 0)


def test_call_without_edge_context_or_sampling_decision(upstream):
    context = upstream.request()
    context.trace.start()
    described = json.loads(context.downstream.echo("plain"))
    context.trace.finish()

    (child,) = upstream.children.spans
    assert described["trace_id"] == context.trace.trace_id
    assert described["span_id"] == child.id
    assert described["parent_id"] == context.trace.id
    assert described["raw_request_context"] is None
    assert described["loid"] is None
    assert described["session_id"] is None
    assert described["logged_in"] is False


def test_declared_exception_is_an_answer_on_both_sides(upstream, oops_class, server_metrics):
    # thrift_client.rst / thrift.rst: an exception the IDL declares is raised
    # as declared and counts as a success for the client and the server.
    raised = upstream.call("oops")
    assert isinstance(raised, oops_class)
    assert raised.why == "declared"

    upstream.metrics.assert_timer("upstream.clients.downstream.echo")
    upstream.metrics.assert_counter("upstream.clients.downstream.echo.success")
    upstream.metrics.assert_counter("upstream.clients.downstream.echo.failure", 0)
    server_metrics.wait_for("downstream.server.echo.success")
    server_metrics.assert_timer("downstream.server.echo")
    server_metrics.assert_counter("downstream.server.echo.failure", 0)

    # The pooled connection was kept and still works.
    assert json.loads(upstream.call("after"))["text"] == "after"


def test_undeclared_exception_is_a_failure_on_both_sides(upstream, server_metrics, running):
    server, _ = running
    raised = upstream.call("crash")
    assert isinstance(raised, TApplicationException)
    assert raised.type == TApplicationException.INTERNAL_ERROR

    upstream.metrics.assert_counter("upstream.clients.downstream.echo.failure")
    upstream.metrics.assert_counter("upstream.clients.downstream.echo.success", 0)
    server_metrics.wait_for("downstream.server.echo.failure")
    server_metrics.assert_counter("downstream.server.echo.success", 0)
    server.wait_for(r"Unexpected exception in 'echo'")

    assert json.loads(upstream.call("after"))["text"] == "after"


# -- baseplate-healthcheck -------------------------------------------------------------


def test_healthcheck_ok(running, service):
    _, port = running
    result = run_command(
        "baseplate-healthcheck", "thrift", f"127.0.0.1:{port}", cwd=service.directory
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "OK!\n", "")


def test_healthcheck_sends_no_server_metrics(running, service, server_metrics, upstream):
    _, port = running
    result = run_command(
        "baseplate-healthcheck", "thrift", f"127.0.0.1:{port}", cwd=service.directory
    )
    assert result.returncode == 0
    upstream.call("after the health check")
    server_metrics.wait_for("downstream.server.echo")
    # The server's metrics come in the order of its calls: the health check's
    # would be in by now.
    assert [name for name, _, _ in server_metrics.lines if "is_healthy" in name] == []


def test_healthcheck_unhealthy(running, service):
    _, port = running
    service.unhealthy_file.touch()
    try:
        result = run_command(
            "baseplate-healthcheck", "thrift", f"127.0.0.1:{port}", cwd=service.directory
        )
    finally:
        service.unhealthy_file.unlink()
    assert result.returncode == 1
    assert result.stdout == "the service says it is not healthy\n"

    result = run_command(
        "baseplate-healthcheck", "thrift", f"127.0.0.1:{port}", cwd=service.directory
    )
    assert (result.returncode, result.stdout) == (0, "OK!\n")


def test_healthcheck_closed_port(service):
    port = free_port()
    result = run_command(
        "baseplate-healthcheck", "thrift", f"127.0.0.1:{port}", cwd=service.directory
    )
    assert result.returncode == 1
    assert result.stdout.startswith(f"cannot connect to 127.0.0.1:{port}: "), result.stdout
    assert "refused" in result.stdout.lower(), result.stdout


# -- the pool across a server restart --------------------------------------------------


def test_pool_recovers_after_the_server_is_killed_and_restarted(service, servers, make_upstream):
    port = free_port()
    server = service.start(servers, port)
    upstream = make_upstream(port)
    assert json.loads(upstream.call("before"))["text"] == "before"

    server.kill()  # SIGKILL: no goodbye, the pooled connection is simply dead
    # thrift_pool: every error is a TTransportException; while nothing
    # listens, opening a connection fails with NOT_OPEN.
    failures = [upstream.call("down") for _ in range(3)]
    for failure in failures:
        assert isinstance(failure, TTransportException), failure
        assert failure.type in {
            TTransportException.NOT_OPEN,
            TTransportException.END_OF_FILE,
            TTransportException.UNKNOWN,
        }
    for failure in failures[1:]:
        assert failure.type == TTransportException.NOT_OPEN, failure
        assert f"127.0.0.1:{port}" in str(failure)
    upstream.metrics.assert_counter("upstream.clients.downstream.echo.failure", 3)

    service.start(servers, port)  # the same port, the same pool and client factory
    for text in ("again", "and again"):
        assert json.loads(upstream.call(text))["text"] == text
    upstream.metrics.assert_counter("upstream.clients.downstream.echo.success", 3)
