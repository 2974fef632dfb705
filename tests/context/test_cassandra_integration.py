"""``baseplate.context.cassandra`` against a real Cassandra cluster.

These run only when ``CASSANDRA_HOSTS`` names the cluster's contact points,
comma-separated (``CASSANDRA_PORT`` is the port, 9042 if not set), e.g.::

    CASSANDRA_HOSTS=127.0.0.1 .venv/bin/pytest tests/context/test_cassandra_integration.py

Everywhere else the same calls are tested against the CQL stand-in
(``test_cassandra.py``). The cluster is configured as an application would
configure it, with the driver's defaults, and the queries only read the
``system`` keyspace, which every cluster has.
"""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

import pytest
from cassandra import InvalidRequest

from baseplate.context.cassandra import CassandraContextFactory, cluster_from_config
from tests.context.serving import make_baseplate

HOSTS = os.environ.get("CASSANDRA_HOSTS", "")

pytestmark = pytest.mark.skipif(
    not HOSTS,
    reason="CASSANDRA_HOSTS is not set: these tests need a real Cassandra cluster "
    "(CASSANDRA_HOSTS=host[,host...], CASSANDRA_PORT=9042)",
)

LOCAL_QUERY = "SELECT release_version FROM system.local WHERE key = 'local'"


@pytest.fixture(scope="module")
def session():
    cluster = cluster_from_config(
        {
            "cassandra.contact_points": HOSTS,
            "cassandra.port": os.environ.get("CASSANDRA_PORT", "9042"),
        }
    )
    yield cluster.connect("system")
    cluster.shutdown()


@pytest.fixture
def baseplate(session, recorder, statsd):
    return make_baseplate(statsd, recorder, cassandra=CassandraContextFactory(session))


def finishes(recorder):
    return [event[2] for event in recorder.events if event[1] == "on_finish"]


def counters(statsd):
    lines = b"\n".join(statsd.received()).decode().split("\n")
    return [line for line in lines if re.search(r"\|c$", line)]


def test_execute(baseplate, recorder, statsd):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        (row,) = context.cassandra.execute(LOCAL_QUERY)
    assert row.release_version
    assert ("cassandra.execute", "on_set_tag", "statement", LOCAL_QUERY) in recorder.events
    assert finishes(recorder) == [None, None]
    assert counters(statsd) == [
        "svc.clients.cassandra.execute.success:1|c",
        "svc.server.handler.success:1|c",
    ]


def test_error_response(baseplate, recorder, statsd):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with pytest.raises(InvalidRequest) as excinfo:
            context.cassandra.execute("SELECT * FROM does_not_exist")
    assert finishes(recorder)[0][1] is excinfo.value
    assert counters(statsd)[0] == "svc.clients.cassandra.execute.failure:1|c"


def test_execute_async_and_prepared(baseplate, recorder):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        statement = context.cassandra.prepare("SELECT key FROM system.local WHERE key = ?")
        (row,) = context.cassandra.execute_async(statement, ["local"]).result()
        assert finishes(recorder) == [None, None]  # prepare, then the execution
    assert row.key == "local"
    created = [event[2] for event in recorder.events if event[1] == "on_child_span_created"]
    assert created == ["cassandra.prepare", "cassandra.execute"]
