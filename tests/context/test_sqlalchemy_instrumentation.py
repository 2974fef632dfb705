"""With OpenTelemetry's SQLAlchemy instrumentation on, a statement is still one span and one timer.

The instrumentation traces each statement and each ``Engine.connect()``;
through the request's engine only Baseplate's span remains. Outside requests
the instrumentation still works, which shows that it was on.

The instrumentation declares support for SQLAlchemy below 2.1, so it is
turned on with ``skip_dep_check=True``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import Engine, text

from baseplate.context.sqlalchemy import (
    SQLAlchemyEngineContextFactory,
    SQLAlchemySessionContextFactory,
    engine_from_config,
)
from baseplate.core import Baseplate
from tests.context.serving import make_baseplate
from tests.context.sqlalchemy_databases import Database, database_of, metric_lines


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request, tmp_path_factory) -> Iterator[Database]:
    with database_of(request.param, tmp_path_factory) as database:
        yield database


@pytest.fixture(params=["one engine", "globally"])
def engine(request, spans, database) -> Iterator[Engine]:
    """An engine that OpenTelemetry's SQLAlchemy instrumentation traces."""
    instrumentor = SQLAlchemyInstrumentor()
    if request.param == "globally":
        instrumentor.instrument(skip_dep_check=True)  # engines created from now on
        engine = engine_from_config({"database.url": database.url})
    else:
        engine = engine_from_config({"database.url": database.url})
        instrumentor.instrument(engine=engine, skip_dep_check=True)
    yield engine
    instrumentor.uninstrument()
    engine.dispose()


@pytest.fixture
def baseplate(engine, statsd) -> Baseplate:
    return make_baseplate(
        statsd,
        db=SQLAlchemyEngineContextFactory(engine),
        session=SQLAlchemySessionContextFactory(engine),
    )


def test_the_instrumentation_is_on(engine, spans):
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    names = [span.name for span in spans.get_finished_spans()]
    assert names[0] == "connect"
    assert names[1].startswith("SELECT")
    assert spans.get_finished_spans()[1].attributes["db.statement"] == "SELECT 1"


def test_a_statement_through_the_request_engine_is_one_span(baseplate, spans, statsd):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        with context.db.connect() as connection:
            connection.execute(text("SELECT 1"))
        with context.db.begin() as connection:
            connection.execute(text("SELECT 2"))

    assert [span.name for span in spans.get_finished_spans()] == [
        "db.execute",
        "db.execute",
        "handler",
    ]
    assert metric_lines(statsd.received()) == [
        "svc.clients.db.execute.success:2|c",
        "svc.clients.db.execute:<ms>|ms",
        "svc.clients.db.execute:<ms>|ms",
        "svc.server.handler.success:1|c",
        "svc.server.handler:<ms>|ms",
    ]


def test_a_statement_through_the_session_is_one_span(baseplate, spans, statsd):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        assert context.session.execute(text("SELECT 1")).scalar_one() == 1

    assert [span.name for span in spans.get_finished_spans()] == ["session.execute", "handler"]
    assert metric_lines(statsd.received()) == [
        "svc.clients.session.execute.success:1|c",
        "svc.clients.session.execute:<ms>|ms",
        "svc.server.handler.success:1|c",
        "svc.server.handler:<ms>|ms",
    ]


def test_a_failing_statement_is_one_failed_span(baseplate, spans, statsd):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), context.db.connect() as connection:
        with pytest.raises(Exception, match="SELEC"):
            connection.execute(text("SELEC 1"))
        connection.rollback()  # PostgreSQL: the failed transaction must end before the next
        connection.execute(text("SELECT 1"))

    assert [span.name for span in spans.get_finished_spans()] == [
        "db.execute",
        "db.execute",
        "handler",
    ]
    assert metric_lines(statsd.received()) == [
        "svc.clients.db.execute.failure:1|c",
        "svc.clients.db.execute.success:1|c",
        "svc.clients.db.execute:<ms>|ms",
        "svc.clients.db.execute:<ms>|ms",
        "svc.server.handler.success:1|c",
        "svc.server.handler:<ms>|ms",
    ]
