"""``baseplate.context.sqlalchemy`` on SQLite, PostgreSQL and MariaDB: spans, metrics, comments."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import sqlalchemy.exc
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Engine, MetaData, Table, inspect, select, text
from sqlalchemy.orm import Session

from baseplate.context.sqlalchemy import (
    SQLAlchemyEngineContextFactory,
    SQLAlchemySessionContextFactory,
    engine_from_config,
)
from baseplate.core import Baseplate
from tests.context.serving import make_baseplate
from tests.context.sqlalchemy_databases import (
    COMMENT,
    Database,
    database_of,
    items,
    metric_lines,
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mysql"])
def database(request, tmp_path_factory) -> Iterator[Database]:
    with database_of(request.param, tmp_path_factory) as database:
        yield database


@pytest.fixture
def engine(database) -> Iterator[Engine]:
    engine = engine_from_config({"database.url": database.url})
    items.create(engine)
    yield engine
    items.drop(engine)
    engine.dispose()


@pytest.fixture
def baseplate(spans, engine, statsd, recorder) -> Baseplate:
    return make_baseplate(
        statsd,
        recorder,
        db=SQLAlchemyEngineContextFactory(engine),
        session=SQLAlchemySessionContextFactory(engine),
    )


def finished(spans):
    return {span.name: span for span in spans.get_finished_spans()}


def stored_names(engine: Engine) -> list[str]:
    """What another connection sees in the table."""
    with engine.connect() as other:
        return list(other.execute(select(items.c.name).order_by(items.c.id)).scalars())


def one_statement_metrics(successes: int = 1, failures: int = 0) -> list[str]:
    lines = ["svc.clients.db.execute:<ms>|ms"] * (successes + failures)
    if successes:
        lines.append(f"svc.clients.db.execute.success:{successes}|c")
    if failures:
        lines.append(f"svc.clients.db.execute.failure:{failures}|c")
    return sorted([*lines, "svc.server.handler:<ms>|ms", "svc.server.handler.success:1|c"])


# -- each statement is one child span and one timer ---------------------------------


def test_a_select_is_one_child_span(baseplate, spans, statsd):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), context.db.connect() as connection:
        assert connection.execute(text("SELECT name FROM items")).all() == []

    assert [span.name for span in spans.get_finished_spans()] == ["db.execute", "handler"]
    child, server = finished(spans)["db.execute"], finished(spans)["handler"]
    assert child.kind is SpanKind.CLIENT
    assert child.parent.span_id == server.context.span_id
    assert child.context.trace_id == server.context.trace_id
    assert child.attributes["statement"] == "SELECT name FROM items"
    assert child.status.status_code is StatusCode.UNSET
    assert metric_lines(statsd.received()) == one_statement_metrics()


def test_an_insert_is_one_child_span(baseplate, engine, spans, statsd, recorder):
    statement = text("INSERT INTO items (id, name) VALUES (:id, :name)")
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), context.db.connect() as connection:
        connection.execute(statement, {"id": 1, "name": "one"})
        connection.commit()  # a commit is not a statement: no span

    assert stored_names(engine) == ["one"]
    assert [span.name for span in spans.get_finished_spans()] == ["db.execute", "handler"]
    compiled = str(statement.compile(dialect=engine.dialect))
    assert finished(spans)["db.execute"].attributes["statement"] == compiled
    assert [event for event in recorder.events if event[0] == "db.execute"] == [
        ("db.execute", "on_start"),
        ("db.execute", "on_set_tag", "statement", compiled),
        ("db.execute", "on_finish", None),
    ]
    assert metric_lines(statsd.received()) == one_statement_metrics()


def test_the_database_sees_the_span_in_a_comment(baseplate, database, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler") as server_span:
        with context.db.connect() as connection:
            seen = database.statement_seen(connection)
        trace_id = server_span.trace_id

    (child,) = [span for span in spans.get_finished_spans() if span.name == "db.execute"]
    match = COMMENT.fullmatch(seen)
    assert match is not None, seen
    assert match["statement"] == child.attributes["statement"]
    assert int(match["trace"]) == trace_id
    assert int(match["span"]) == child.context.span_id


def test_each_statement_is_its_own_span(baseplate, spans, statsd):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), context.db.connect() as connection:
        connection.execute(text("SELECT 1"))
        connection.execute(text("SELECT 2"))

    children = [span for span in spans.get_finished_spans() if span.name == "db.execute"]
    assert [child.attributes["statement"] for child in children] == ["SELECT 1", "SELECT 2"]
    assert children[0].context.span_id != children[1].context.span_id
    assert metric_lines(statsd.received()) == one_statement_metrics(successes=2)


# -- failures -------------------------------------------------------------------------


def test_a_failing_statement_raises_sqlalchemys_error_and_counts_a_failure(
    baseplate, database, engine, spans, statsd, recorder
):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        with (
            context.db.connect() as connection,
            pytest.raises(sqlalchemy.exc.DBAPIError) as excinfo,
        ):
            connection.execute(text("SELEC name FROM items"))
        assert type(excinfo.value) is database.syntax_error
        assert isinstance(excinfo.value.orig, engine.dialect.loaded_dbapi.Error)
        with context.db.connect() as connection:  # the pool still works
            assert connection.execute(text("SELECT 1")).scalar_one() == 1

    failed, worked = [span for span in spans.get_finished_spans() if span.name == "db.execute"]
    assert failed.status.status_code is StatusCode.ERROR
    (exception,) = failed.events
    assert exception.name == "exception"
    assert exception.attributes["exception.type"].endswith(type(excinfo.value.orig).__name__)
    assert worked.status.status_code is StatusCode.UNSET
    (first_finish, _) = [e for e in recorder.events if e[:2] == ("db.execute", "on_finish")]
    assert first_finish[2][1] is excinfo.value.orig
    assert metric_lines(statsd.received()) == one_statement_metrics(successes=1, failures=1)
    assert engine.pool.checkedout() == 0


def test_a_failed_request_leaves_the_pool_usable(baseplate, engine, statsd):
    context = SimpleNamespace()
    with pytest.raises(sqlalchemy.exc.DBAPIError):  # noqa: SIM117
        with baseplate.make_server_span(context, "handler"), context.db.connect() as connection:
            connection.execute(text("SELECT * FROM no_such_table"))
    statsd.received()

    with baseplate.make_server_span(context, "handler"), context.db.connect() as connection:
        assert connection.execute(text("SELECT 2")).scalar_one() == 2
    assert metric_lines(statsd.received()) == one_statement_metrics()
    assert engine.pool.checkedout() == 0


# -- sessions ---------------------------------------------------------------------------


def test_the_session_is_closed_not_committed(baseplate, engine, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        assert isinstance(context.session, Session)
        context.session.execute(items.insert(), {"id": 1, "name": "uncommitted"})
        assert context.session.execute(select(items.c.name)).scalars().all() == ["uncommitted"]

    assert engine.pool.checkedout() == 0
    assert stored_names(engine) == []
    names = [span.name for span in spans.get_finished_spans()]
    assert names == ["session.execute", "session.execute", "handler"]


def test_what_the_session_commits_is_kept(baseplate, engine):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.session.execute(items.insert(), {"id": 1, "name": "committed"})
        context.session.commit()
        context.session.execute(items.insert(), {"id": 2, "name": "after the commit"})

    assert stored_names(engine) == ["committed"]
    assert engine.pool.checkedout() == 0


def test_each_request_has_its_own_session(baseplate):
    first, second = SimpleNamespace(), SimpleNamespace()
    with baseplate.make_server_span(first, "handler"):
        first.session.execute(text("SELECT 1"))
    with baseplate.make_server_span(second, "handler"):
        assert second.session is not first.session
        assert second.session.execute(text("SELECT 1")).scalar_one() == 1


# -- statements SQLAlchemy makes on its own ---------------------------------------------


def test_reflection_leaves_no_span_open(baseplate, recorder):
    # On MySQL, reflecting a missing table runs statements that SQLAlchemy
    # expects to fail without telling the error listeners: no span may wait
    # for an end that never comes.
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), context.db.connect() as connection:
        assert inspect(connection).has_table("items")
        assert not inspect(connection).has_table("no_such_table")
        with pytest.raises(sqlalchemy.exc.NoSuchTableError):
            Table("no_such_table", MetaData(), autoload_with=connection)
        reflected = Table("items", MetaData(), autoload_with=connection)
    assert [column.name for column in reflected.columns] == ["id", "name"]

    started = [event for event in recorder.events if event[:2] == ("db.execute", "on_start")]
    ended = [event for event in recorder.events if event[:2] == ("db.execute", "on_finish")]
    assert started
    assert len(started) == len(ended)
    assert recorder.events[-1] == ("handler", "on_finish", None)
