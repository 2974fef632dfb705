"""A database connection killed on the server: one failed statement, then a new connection.

The server side of a pooled connection is ended as an operator would
(``pg_terminate_backend`` on PostgreSQL, ``KILL`` on MariaDB). Without
``pool_pre_ping`` the next statement on it fails, counted as a failure, and
SQLAlchemy discards the pool's connections; the statement after that gets a
new one. With ``pool_pre_ping`` the dead connection is replaced when it is
checked out, and no statement fails.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import sqlalchemy.exc
from opentelemetry.trace import StatusCode
from sqlalchemy import Engine, text

from baseplate.context.sqlalchemy import (
    SQLAlchemyEngineContextFactory,
    SQLAlchemySessionContextFactory,
    engine_from_config,
)
from baseplate.core import Baseplate
from tests.context.serving import make_baseplate
from tests.context.sqlalchemy_databases import SERVERS, Database, metric_lines


@pytest.fixture(scope="module", params=sorted(SERVERS))
def database(request) -> Iterator[Database]:
    with SERVERS[request.param]() as database:
        yield database


def baseplate_on(engine: Engine, statsd) -> Baseplate:
    return make_baseplate(
        statsd,
        db=SQLAlchemyEngineContextFactory(engine),
        session=SQLAlchemySessionContextFactory(engine),
    )


@pytest.fixture
def engines(database) -> Iterator[object]:
    """Make engines on the database, with a pool of one connection; disposed of after the test."""
    made: list[Engine] = []

    def make(**config: str) -> Engine:
        raw = {"database.url": database.url, "database.pool_size": "1"}
        raw.update({f"database.{key}": value for key, value in config.items()})
        made.append(engine_from_config(raw))
        return made[-1]

    yield make
    for engine in made:
        engine.dispose()


def backend_of_a_request(baseplate: Baseplate, database: Database) -> int:
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), context.db.connect() as connection:
        return database.backend_id(connection)


def statement_metrics(success: bool) -> list[str]:
    outcome = "success" if success else "failure"
    return sorted(
        [
            "svc.clients.db.execute:<ms>|ms",
            f"svc.clients.db.execute.{outcome}:1|c",
            "svc.server.handler:<ms>|ms",
            "svc.server.handler.success:1|c",
        ]
    )


def test_the_statement_after_a_kill_fails_and_the_next_reconnects(database, engines, statsd, spans):
    engine = engines()
    baseplate = baseplate_on(engine, statsd)
    killed = backend_of_a_request(baseplate, database)
    database.kill(killed)
    statsd.received()

    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), context.db.connect() as connection:
        with pytest.raises(sqlalchemy.exc.OperationalError) as excinfo:
            connection.execute(text("SELECT 1"))
        assert excinfo.value.connection_invalidated
        assert isinstance(excinfo.value.orig, engine.dialect.loaded_dbapi.OperationalError)
    assert metric_lines(statsd.received()) == statement_metrics(success=False)

    assert backend_of_a_request(baseplate, database) != killed
    assert metric_lines(statsd.received()) == statement_metrics(success=True)
    assert engine.pool.checkedout() == 0


def test_pre_ping_replaces_a_killed_connection(database, engines, statsd, spans):
    engine = engines(pool_pre_ping="true")
    baseplate = baseplate_on(engine, statsd)
    killed = backend_of_a_request(baseplate, database)
    database.kill(killed)
    statsd.received()

    assert backend_of_a_request(baseplate, database) != killed
    assert metric_lines(statsd.received()) == statement_metrics(success=True)


def test_a_session_rolls_back_and_carries_on_after_a_kill(database, engines, statsd, spans):
    # A kill in the middle of a request's transaction cannot be pinged away:
    # the statement fails, and the session must be rolled back before it can
    # be used again, on a new connection.
    engine = engines(pool_pre_ping="true")
    baseplate = baseplate_on(engine, statsd)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        killed = database.backend_id(context.session.connection())
        database.kill(killed)
        with pytest.raises(sqlalchemy.exc.OperationalError):
            context.session.execute(text("SELECT 1"))
        with pytest.raises(sqlalchemy.exc.PendingRollbackError):
            context.session.execute(text("SELECT 1"))
        context.session.rollback()
        assert database.backend_id(context.session.connection()) != killed

    assert metric_lines(statsd.received()) == sorted(
        [
            *["svc.clients.session.execute:<ms>|ms"] * 3,
            "svc.clients.session.execute.success:2|c",
            "svc.clients.session.execute.failure:1|c",
            "svc.server.handler:<ms>|ms",
            "svc.server.handler.success:1|c",
        ]
    )
    assert engine.pool.checkedout() == 0


def test_an_unreachable_server_fails_the_connect_not_a_statement(closed_port, statsd, spans):
    # No statement ran, so there is no statement span: the request fails.
    engine = engine_from_config(
        {"database.url": f"postgresql+psycopg://postgres@127.0.0.1:{closed_port}/test"}
    )
    baseplate = baseplate_on(engine, statsd)
    context = SimpleNamespace()
    with pytest.raises(sqlalchemy.exc.OperationalError):  # noqa: SIM117
        with baseplate.make_server_span(context, "handler"), context.db.connect():
            pass
    assert [span.name for span in spans.get_finished_spans()] == ["handler"]
    assert metric_lines(statsd.received()) == [
        "svc.server.handler.failure:1|c",
        "svc.server.handler:<ms>|ms",
    ]
    engine.dispose()


class Deadline(BaseException):
    """Not the driver's: an exception that interrupts, as ``gevent.Timeout`` does."""


@pytest.fixture
def deadline() -> Iterator[object]:
    """Raise :class:`Deadline` in the main thread after a delay, as a timeout would."""

    def interrupt(signum, frame):
        raise Deadline

    previous = signal.signal(signal.SIGALRM, interrupt)

    def arm(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


SLEEP = {"postgresql": "SELECT pg_sleep(5)", "mysql": "SELECT SLEEP(5)"}


def test_an_interrupted_statement_ends_its_span_as_a_failure(
    database, engines, statsd, spans, deadline
):
    engine = engines()
    baseplate = baseplate_on(engine, statsd)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        with context.db.connect() as connection, pytest.raises(Deadline):
            # Long enough that it lands while the server sleeps, not while a
            # loaded machine is still on the way there (in the span's own
            # set-up, which an exception from a signal would leave half done).
            deadline(1.0)
            connection.execute(text(SLEEP[database.kind]))
        with context.db.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1

    interrupted, worked, handler = spans.get_finished_spans()
    assert interrupted.name == worked.name == "db.execute"
    assert interrupted.status.status_code is StatusCode.ERROR
    assert interrupted.events[0].attributes["exception.type"].endswith("Deadline")
    assert interrupted.parent.span_id == handler.context.span_id
    assert metric_lines(statsd.received()) == sorted(
        [
            *["svc.clients.db.execute:<ms>|ms"] * 2,
            "svc.clients.db.execute.success:1|c",
            "svc.clients.db.execute.failure:1|c",
            "svc.server.handler:<ms>|ms",
            "svc.server.handler.success:1|c",
        ]
    )
    assert engine.pool.checkedout() == 0
