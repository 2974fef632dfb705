"""``baseplate.context.cassandra``: the real cassandra-driver against a CQL stand-in.

The driver talks the native protocol (v4) over loopback to
:class:`~tests.context.cql_standin.CQLStandIn`; each test checks the span tree
the calls make, and the exact statsd lines of the metrics observer.
"""

from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace

import pytest
from cassandra import InvalidRequest
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    ExecutionProfile,
    NoHostAvailable,
    ResponseFuture,
)
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import ConstantReconnectionPolicy, DCAwareRoundRobinPolicy
from cassandra.protocol import SyntaxException
from cassandra.query import SimpleStatement, named_tuple_factory
from cqlmapper import columns
from cqlmapper.connection import Connection
from cqlmapper.models import Model
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from baseplate.config import ConfigurationError
from baseplate.context.cassandra import (
    CassandraContextFactory,
    CassandraSessionAdapter,
    CQLMapperContextFactory,
    cluster_from_config,
)
from baseplate.core import Baseplate, BaseplateObserver, ServerSpanObserver, SpanObserver
from tests.context.cql_standin import CQLStandIn, Table
from tests.context.serving import make_baseplate

KEYSPACE = "baseplate_test"
#: How long a test waits for the driver to notice the stand-in is back, at most.
RECONNECT_LIMIT = 10


@pytest.fixture
def standin():
    server = CQLStandIn(
        KEYSPACE,
        [
            Table(
                KEYSPACE,
                "things",
                {"id": "varchar", "value": "int"},
                [{"id": "a", "value": 1}, {"id": "b", "value": 2}],
            )
        ],
    )
    server.start()
    yield server
    server.stop()


def stand_in_cluster(port, **kwargs):
    """A Cluster for the stand-in: protocol v4, its data centre, no schema or token metadata.

    The reconnection policy retries every 100 ms, so a test sees the stand-in
    come back at once; the driver's default waits 1 s, then 2, 4 ... (see the
    docs).
    """
    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(local_dc="dc1"))
    return cluster_from_config(
        {"cassandra.contact_points": "127.0.0.1", "cassandra.port": str(port)},
        protocol_version=4,
        schema_metadata_enabled=False,
        token_metadata_enabled=False,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        reconnection_policy=ConstantReconnectionPolicy(0.1, max_attempts=None),
        **kwargs,
    )


@pytest.fixture
def cluster(standin):
    cluster = stand_in_cluster(standin.port)
    yield cluster
    cluster.shutdown()


@pytest.fixture
def session(cluster):
    return cluster.connect(KEYSPACE)


@pytest.fixture
def baseplate(recorder, statsd, session):
    return make_baseplate(statsd, recorder, cassandra=CassandraContextFactory(session))


def statsd_lines(statsd):
    """Every line received, with timer values replaced by ``T``."""
    lines = b"\n".join(statsd.received()).decode().split("\n")
    return [re.sub(r":[0-9.]+\|ms$", ":T|ms", line) for line in lines if line]


def one_request_lines(*client_lines):
    """The lines of a request "handler" that made the given client calls, in order."""
    timers = [f"svc.clients.cassandra.{op}:T|ms" for op, _ in client_lines]
    counters = {}
    for op, outcome in client_lines:
        name = f"svc.clients.cassandra.{op}.{outcome}"
        counters[name] = counters.get(name, 0) + 1
    return [
        *timers,
        "svc.server.handler:T|ms",
        *(f"{name}:{count}|c" for name, count in counters.items()),
        "svc.server.handler.success:1|c",
    ]


def events_of(recorder, name):
    return [event[1:] for event in recorder.events if event[0] == name]


def finished_by_name(spans):
    return {span.name: span for span in spans.get_finished_spans()}


def assert_child_of_handler(exported, name):
    child, server = exported[name], exported["handler"]
    assert child.kind is SpanKind.CLIENT
    assert child.parent.span_id == server.context.span_id
    assert child.context.trace_id == server.context.trace_id


# -- configuration -------------------------------------------------------------------


def test_cluster_from_config():
    cluster = cluster_from_config(
        {"cassandra.contact_points": "10.0.0.1, 10.0.0.2", "cassandra.port": "9999"},
        protocol_version=3,
    )
    assert cluster.contact_points == ["10.0.0.1", "10.0.0.2"]
    assert cluster.port == 9999
    assert cluster.protocol_version == 3


def test_cluster_from_config_defaults_and_prefix():
    cluster = cluster_from_config(
        {"cassandra.contact_points": "10.0.0.1", "cas.main.contact_points": "10.0.0.9"},
        prefix="cas.main.",
    )
    assert cluster.contact_points == ["10.0.0.9"]
    assert cluster.port == 9042  # the driver's default


def test_keyword_arguments_win_and_their_keys_are_not_read():
    cluster = cluster_from_config({"cassandra.port": "9999"}, contact_points=["10.0.0.3"], port=1)
    assert cluster.contact_points == ["10.0.0.3"]
    assert cluster.port == 1


@pytest.mark.parametrize(
    ("app_config", "key"),
    [
        ({}, "cassandra.contact_points"),
        ({"cassandra.contact_points": " , "}, "cassandra.contact_points"),
        ({"cassandra.contact_points": "h", "cassandra.port": "ninety"}, "cassandra.port"),
    ],
)
def test_bad_configuration_names_the_key(app_config, key):
    with pytest.raises(ConfigurationError) as excinfo:
        cluster_from_config(app_config)
    assert excinfo.value.key == key


def test_prefix_must_end_with_a_dot():
    with pytest.raises(ValueError, match="dot"):
        cluster_from_config({"cassandra.contact_points": "h"}, prefix="cassandra")


# -- the proxy -----------------------------------------------------------------------


def test_the_proxy_is_the_session(baseplate, session, recorder):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        proxy = context.cassandra
        assert isinstance(proxy, CassandraSessionAdapter)
        assert proxy.session is session
        assert proxy.cluster is session.cluster
        assert proxy.encoder is session.encoder
        assert proxy.keyspace == KEYSPACE
        assert proxy.row_factory is named_tuple_factory
        proxy.default_fetch_size = 10
        assert session.default_fetch_size == 10
        assert {"execute", "execute_async", "prepare", "set_keyspace"} <= set(dir(proxy))
    assert recorder.events_named("on_child_span_created") == []


# -- execute -------------------------------------------------------------------------


def test_execute_is_a_child_span_and_a_timer(baseplate, recorder, spans, statsd, standin):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        rows = context.cassandra.execute("SELECT * FROM things WHERE id = %s", ["b"])
    assert [(row.id, row.value) for row in rows] == [("b", 2)]
    assert standin.user_queries() == [("QUERY", "SELECT * FROM things WHERE id = 'b'")]

    assert events_of(recorder, "cassandra.execute") == [
        ("on_start",),
        ("on_set_tag", "statement", "SELECT * FROM things WHERE id = %s"),
        ("on_finish", None),
    ]
    exported = finished_by_name(spans)
    assert set(exported) == {"cassandra.execute", "handler"}
    assert_child_of_handler(exported, "cassandra.execute")
    assert exported["cassandra.execute"].attributes["statement"] == (
        "SELECT * FROM things WHERE id = %s"
    )
    assert exported["cassandra.execute"].status.status_code is not StatusCode.ERROR
    assert statsd_lines(statsd) == one_request_lines(("execute", "success"))


def test_the_statement_tag_of_a_statement_object(baseplate, recorder):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.cassandra.execute(SimpleStatement("SELECT value FROM things"))
    assert ("on_set_tag", "statement", "SELECT value FROM things") in events_of(
        recorder, "cassandra.execute"
    )


def test_an_error_response_is_a_failure_with_the_drivers_exception(
    baseplate, recorder, spans, statsd
):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        with pytest.raises(InvalidRequest, match="unconfigured table missing") as invalid:
            context.cassandra.execute("SELECT * FROM missing")
        with pytest.raises(SyntaxException) as syntax:
            context.cassandra.execute("SELEKT 1")

    finishes = [
        event for event in events_of(recorder, "cassandra.execute") if event[0] == "on_finish"
    ]
    assert [finish[1][1] for finish in finishes] == [invalid.value, syntax.value]
    exported = [span for span in spans.get_finished_spans() if span.name == "cassandra.execute"]
    assert [span.status.status_code for span in exported] == [StatusCode.ERROR] * 2
    assert statsd_lines(statsd) == one_request_lines(("execute", "failure"), ("execute", "failure"))


# -- execute_async ---------------------------------------------------------------------


def test_execute_async_finishes_its_span_when_the_future_resolves(
    baseplate, recorder, spans, statsd, standin
):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler") as server_span:
        standin.answering.clear()
        future = context.cassandra.execute_async("SELECT * FROM things")
        assert isinstance(future, ResponseFuture)
        # The query is in flight: its span is open, and not the current span.
        assert ("on_finish", None) not in events_of(recorder, "cassandra.execute")
        assert trace.get_current_span() is server_span.otel_span
        standin.answering.set()
        rows = future.result()
        assert ("on_finish", None) in events_of(recorder, "cassandra.execute")
    assert [row.id for row in rows] == ["a", "b"]

    exported = finished_by_name(spans)
    assert_child_of_handler(exported, "cassandra.execute")
    assert exported["cassandra.execute"].attributes["statement"] == "SELECT * FROM things"
    assert statsd_lines(statsd) == one_request_lines(("execute", "success"))


def test_execute_async_span_finishes_without_anyone_waiting(baseplate, recorder, standin):
    """The driver's callbacks finish the span, before the application's own callbacks."""
    resolved = threading.Event()
    seen_by_callback = []

    def on_rows(rows):
        seen_by_callback.append(events_of(recorder, "cassandra.execute")[-1])
        resolved.set()

    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        standin.answering.clear()
        future = context.cassandra.execute_async("SELECT * FROM things")
        future.add_callback(on_rows)
        standin.answering.set()
        assert resolved.wait(timeout=5)
    assert seen_by_callback == [("on_finish", None)]


class SlowToFinish(BaseplateObserver):
    """Takes a while to hear that a client span finished, as a busy observer might."""

    def on_server_span_created(self, context, server_span):
        class Slow(SpanObserver):
            def on_finish(self, exc_info):
                time.sleep(0.1)

        class Children(ServerSpanObserver):
            def on_child_span_created(self, span):
                span.register(Slow())

        server_span.register(Children())


def test_result_returns_once_every_observer_heard_of_the_end(recorder, statsd, session):
    """The driver wakes ``result()`` before it runs callbacks; ``result()`` waits for them."""
    baseplate = Baseplate()
    baseplate.register(SlowToFinish())  # told before the recorder
    baseplate.register(recorder)
    baseplate.add_to_context("cassandra", CassandraContextFactory(session))
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.cassandra.execute_async("SELECT * FROM things").result()
        assert events_of(recorder, "cassandra.execute")[-1] == ("on_finish", None)


def test_execute_async_failure(baseplate, recorder, spans, statsd, standin):
    failed = threading.Event()
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        standin.answering.clear()
        future = context.cassandra.execute_async("SELECT * FROM things WHERE nope = 1")
        future.add_errback(lambda error: failed.set())
        assert events_of(recorder, "cassandra.execute")[-1][0] == "on_set_tag"
        standin.answering.set()
        assert failed.wait(timeout=5)
        with pytest.raises(InvalidRequest, match="Undefined column name nope") as excinfo:
            future.result()

    (finish,) = [
        event for event in events_of(recorder, "cassandra.execute") if event[0] == "on_finish"
    ]
    assert finish[1][0] is InvalidRequest
    assert finish[1][1] is excinfo.value
    assert finished_by_name(spans)["cassandra.execute"].status.status_code is StatusCode.ERROR
    assert statsd_lines(statsd) == one_request_lines(("execute", "failure"))


def test_execute_async_takes_the_originals_timeout_argument(baseplate, standin):
    """The third positional argument is ``timeout``, as in the original."""
    from cassandra import OperationTimedOut

    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        standin.answering.clear()
        future = context.cassandra.execute_async("SELECT * FROM things", None, 0.05)
        with pytest.raises(OperationTimedOut):
            future.result()
        standin.answering.set()


# -- prepared statements -----------------------------------------------------------------


def test_prepare_then_execute(baseplate, recorder, spans, statsd, standin):
    query = "SELECT id, value FROM things WHERE id = ?"
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        statement = context.cassandra.prepare(query)
        assert context.cassandra.prepare(query) is statement  # cached: no second span
        rows = context.cassandra.execute(statement, ["a"])
    assert [(row.id, row.value) for row in rows] == [("a", 1)]
    assert standin.user_queries() == [("PREPARE", query), ("EXECUTE", query)]

    created = [event[2] for event in recorder.events_named("on_child_span_created")]
    assert created == ["cassandra.prepare", "cassandra.execute"]
    assert ("on_set_tag", "statement", query) in events_of(recorder, "cassandra.prepare")
    assert ("on_set_tag", "statement", query) in events_of(recorder, "cassandra.execute")
    exported = finished_by_name(spans)
    assert_child_of_handler(exported, "cassandra.prepare")
    assert_child_of_handler(exported, "cassandra.execute")
    assert statsd_lines(statsd) == one_request_lines(("prepare", "success"), ("execute", "success"))


def test_the_prepared_cache_is_shared_by_requests_and_can_be_bypassed(baseplate, standin):
    query = "INSERT INTO things (id, value) VALUES (?, ?)"
    for value in (3, 4):
        context = SimpleNamespace()
        with baseplate.make_server_span(context, "handler"):
            context.cassandra.execute(context.cassandra.prepare(query), ["c", value])
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.cassandra.prepare(query, cache=False)
    prepares = [op for op, _ in standin.user_queries() if op == "PREPARE"]
    assert prepares == ["PREPARE", "PREPARE"]
    assert standin.tables["things"].rows[-1] == {"id": "c", "value": 4}


def test_a_failed_prepare_is_a_failure(baseplate, recorder, statsd):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with pytest.raises(InvalidRequest) as excinfo:
            context.cassandra.prepare("SELECT * FROM missing WHERE id = ?")
    assert events_of(recorder, "cassandra.prepare")[-1][1][1] is excinfo.value
    assert statsd_lines(statsd) == one_request_lines(("prepare", "failure"))


def test_execute_concurrent_through_the_proxy(baseplate, recorder, spans):
    """The driver's concurrency helper takes the proxy for a session: one span per query."""
    query = "SELECT * FROM things WHERE id = ?"
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        statement = context.cassandra.prepare(query)
        results = execute_concurrent_with_args(context.cassandra, statement, [("a",), ("b",)])
    assert [[row.value for row in result.result_or_exc] for result in results] == [[1], [2]]
    created = [event[2] for event in recorder.events_named("on_child_span_created")]
    assert created == ["cassandra.prepare", "cassandra.execute", "cassandra.execute"]
    exported = [span for span in spans.get_finished_spans() if span.name != "handler"]
    assert len(exported) == 3
    assert all(span.attributes["statement"] == query for span in exported)


# -- the CQL mapper --------------------------------------------------------------------


class Thing(Model):
    __table_name__ = "things"
    id = columns.Text(primary_key=True)
    value = columns.Integer()


def test_cqlmapper_queries_are_traced(recorder, statsd, session, spans, standin):
    baseplate = make_baseplate(statsd, recorder, cassandra=CQLMapperContextFactory(session))
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        assert isinstance(context.cassandra, Connection)
        Thing.create(context.cassandra, id="z", value=26)
        thing = Thing.get(context.cassandra, id="z")
    assert (thing.id, thing.value) == ("z", 26)
    assert [op for op, _ in standin.user_queries()] == ["QUERY", "QUERY"]

    created = [event[2] for event in recorder.events_named("on_child_span_created")]
    assert created == ["cassandra.execute", "cassandra.execute"]
    statements = [span.attributes["statement"] for span in spans.get_finished_spans()[:2]]
    assert statements[0].startswith("INSERT INTO")
    assert statements[1].startswith("SELECT")
    assert statsd_lines(statsd) == one_request_lines(("execute", "success"), ("execute", "success"))


# -- Cassandra going away and coming back --------------------------------------------------


def wait_until_up(cluster):
    """Wait (a bounded time) until the driver has reconnected to every host."""
    deadline = time.monotonic() + RECONNECT_LIMIT
    while not all(host.is_up for host in cluster.metadata.all_hosts()):
        assert time.monotonic() < deadline, "the driver did not reconnect"
        time.sleep(0.02)


def wait_until_serving(session):
    """Wait (a bounded time) until the session's pool takes queries again.

    The driver marks a host up before the session's pool has reconnected to
    it; under load a query in between fails with NoHostAvailable. The raw
    session is not instrumented: nothing reaches the observers or statsd.
    """
    deadline = time.monotonic() + RECONNECT_LIMIT
    while True:
        try:
            session.execute("SELECT * FROM things")
            return
        except NoHostAvailable:
            assert time.monotonic() < deadline, "the session did not reconnect"
            time.sleep(0.02)


def test_cassandra_down_is_a_failure_then_the_session_reconnects(
    baseplate, cluster, session, recorder, statsd, standin
):
    standin.stop()
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with pytest.raises(NoHostAvailable) as excinfo:
            context.cassandra.execute("SELECT * FROM things")
    assert events_of(recorder, "cassandra.execute")[-1][1][1] is excinfo.value
    assert statsd_lines(statsd) == one_request_lines(("execute", "failure"))

    standin.start()  # the same port
    wait_until_up(cluster)
    wait_until_serving(session)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        rows = context.cassandra.execute("SELECT * FROM things")
    assert [row.id for row in rows] == ["a", "b"]
    assert statsd_lines(statsd) == one_request_lines(("execute", "success"))
