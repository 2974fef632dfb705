"""SQLAlchemy pools report their gauges per request, and connections left out as leaks."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy

from baseplate.context.sqlalchemy import (
    SQLAlchemyEngineContextFactory,
    SQLAlchemySessionContextFactory,
)
from tests.context.serving import make_baseplate, serve, statsd_lines


@pytest.fixture
def engine(tmp_path):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}", pool_size=3)
    yield engine
    engine.dispose()


def select_one(context):
    with context.db.connect() as connection:
        connection.execute(sqlalchemy.text("select 1"))


def test_a_request_reports_the_pool_gauges(engine, statsd):
    baseplate = make_baseplate(statsd, db=SQLAlchemyEngineContextFactory(engine))
    serve(baseplate, select_one)
    sent = statsd_lines(statsd)
    assert "svc.clients.db.pool.size:3|g" in sent
    assert "svc.clients.db.pool.in_use:0|g" in sent
    assert not [line for line in sent if "leaked" in line]


def open_and_forget(context):
    return context.db.connect()  # never closed: the connection stays out of the pool


def test_a_connection_left_open_is_a_leak(engine, statsd, caplog):
    baseplate = make_baseplate(statsd, db=SQLAlchemyEngineContextFactory(engine))
    kept = []
    with caplog.at_level(logging.WARNING, logger="baseplate.context.pool_watch"):
        server_span = serve(baseplate, lambda context: kept.append(open_and_forget(context)))

    sent = statsd_lines(statsd)
    assert "svc.clients.db.pool.leaked:1|c" in sent
    assert "svc.clients.db.pool.in_use:1|g" in sent
    [warning] = caplog.records
    assert f"trace {server_span.trace_id}" in warning.getMessage()
    assert "in open_and_forget" in warning.getMessage()
    kept[0].close()


def test_a_session_closed_at_the_end_of_the_request_leaks_nothing(engine, statsd):
    baseplate = make_baseplate(statsd, db=SQLAlchemySessionContextFactory(engine))
    serve(baseplate, lambda context: context.db.execute(sqlalchemy.text("select 1")))
    sent = statsd_lines(statsd)
    assert "svc.clients.db.pool.in_use:0|g" in sent
    assert not [line for line in sent if "leaked" in line]
