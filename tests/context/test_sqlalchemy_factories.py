"""The SQLAlchemy factories on SQLite: local spans, the ORM, several Baseplates and engines."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine, String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baseplate import metrics_client_from_config
from baseplate.context.sqlalchemy import (
    SQLAlchemyEngineContextFactory,
    SQLAlchemySessionContextFactory,
    engine_from_config,
)
from baseplate.core import Baseplate
from tests.context.serving import make_baseplate
from tests.context.sqlalchemy_databases import COMMENT, items, metric_lines, sqlite_database


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


def make_engine(path) -> Engine:
    engine = engine_from_config({"database.url": sqlite_database(str(path)).url})
    items.create(engine)
    Base.metadata.create_all(engine)
    return engine


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    engine = make_engine(tmp_path / "test.db")
    yield engine
    engine.dispose()


@pytest.fixture
def other_engine(tmp_path) -> Iterator[Engine]:
    engine = make_engine(tmp_path / "other.db")
    yield engine
    engine.dispose()


@pytest.fixture
def baseplate(spans, engine, recorder) -> Baseplate:
    return make_baseplate(
        recorder=recorder,
        db=SQLAlchemyEngineContextFactory(engine),
        session=SQLAlchemySessionContextFactory(engine),
    )


def traced_statements(connection, statement: str) -> list[str]:
    """The statements SQLite executes while ``statement`` runs on ``connection``."""
    traced: list[str] = []
    driver_connection = connection.connection.driver_connection
    driver_connection.set_trace_callback(traced.append)
    try:
        connection.execute(text(statement))
    finally:
        driver_connection.set_trace_callback(None)
    return traced


def parents(spans) -> dict[str, str]:
    """Each finished span's name mapped to its parent's name."""
    finished = spans.get_finished_spans()
    names = {span.context.span_id: span.name for span in finished}
    return {span.name: names.get(span.parent.span_id) for span in finished if span.parent}


# -- local spans ---------------------------------------------------------------------


def test_a_local_spans_statements_are_its_children(baseplate, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler") as server_span:
        with (
            server_span.make_child("work", local=True, component_name="jobs") as local,
            local.context.db.connect() as connection,
        ):
            connection.execute(text("SELECT 'in the local span'"))
        with context.db.connect() as connection:
            connection.execute(text("SELECT 'in the request'"))

    finished = spans.get_finished_spans()
    by_statement = {span.attributes.get("statement"): span for span in finished}
    local_span = next(span for span in finished if span.name == "work")
    handler = next(span for span in finished if span.name == "handler")
    in_local = by_statement["SELECT 'in the local span'"]
    in_request = by_statement["SELECT 'in the request'"]
    assert in_local.parent.span_id == local_span.context.span_id
    assert in_request.parent.span_id == handler.context.span_id


def test_a_local_span_shares_the_requests_session(baseplate, engine, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler") as server_span:
        with server_span.make_child("work", local=True, component_name="jobs") as local:
            assert local.context.session is context.session
            local.context.session.add(Thing(id=1, name="from the local span"))
        context.session.commit()

    with engine.connect() as other:
        assert other.execute(select(Thing.name)).scalars().all() == ["from the local span"]
    # The unit of work is the request's: its statements are children of the request.
    assert parents(spans)["session.execute"] == "handler"


# -- the ORM ----------------------------------------------------------------------------


def test_orm_objects_through_the_session(baseplate, engine, spans, recorder):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.session.add(Thing(id=1, name="cool"))
        context.session.commit()
        assert context.session.get(Thing, 1).name == "cool"

    statements = [span.attributes["statement"] for span in spans.get_finished_spans()[:-1]]
    assert len(statements) == 2
    assert statements[0].startswith("INSERT INTO things")
    assert statements[1].startswith("SELECT things.id")
    finishes = [event for event in recorder.events if event[:2] == ("session.execute", "on_finish")]
    assert finishes == [("session.execute", "on_finish", None)] * 2


def test_an_executemany_is_one_span(baseplate, engine, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), context.db.begin() as connection:
        connection.execute(items.insert(), [{"id": i, "name": str(i)} for i in range(5)])

    assert [span.name for span in spans.get_finished_spans()] == ["db.execute", "handler"]
    with engine.connect() as other:
        assert len(other.execute(select(items.c.id)).all()) == 5


# -- what is traced, and under which name ------------------------------------------------


def test_the_span_is_named_after_the_attribute(spans, engine):
    baseplate = make_baseplate(accounts_db=SQLAlchemyEngineContextFactory(engine))
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), context.accounts_db.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert [span.name for span in spans.get_finished_spans()] == ["accounts_db.execute", "handler"]


def test_the_engine_itself_is_not_traced(baseplate, engine, spans):
    with engine.connect() as connection:
        assert traced_statements(connection, "SELECT 1") == ["SELECT 1"]
    assert spans.get_finished_spans() == ()


def test_derived_engines_are_traced_too(baseplate, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        autocommit = context.db.execution_options(isolation_level="AUTOCOMMIT")
        with autocommit.connect() as connection:
            (statement,) = traced_statements(connection, "SELECT 1")
    (child, _) = spans.get_finished_spans()
    assert child.name == "db.execute"
    assert COMMENT.fullmatch(statement)["span"] == str(child.context.span_id)


# -- several Baseplates and engines in one process --------------------------------------


def test_two_baseplates_on_one_engine_keep_to_themselves(spans, engine, statsd):
    first, second = Baseplate(), Baseplate()
    for namespace, baseplate, name in (("one", first, "db"), ("two", second, "main_db")):
        baseplate.configure_metrics(
            metrics_client_from_config(
                {"metrics.namespace": namespace, "metrics.endpoint": statsd.endpoint}
            )
        )
        baseplate.add_to_context(name, SQLAlchemyEngineContextFactory(engine))

    first_context, second_context = SimpleNamespace(), SimpleNamespace()
    with first.make_server_span(first_context, "handler"):
        with second.make_server_span(second_context, "handler"):  # noqa: SIM117
            with second_context.main_db.connect() as connection:
                connection.execute(text("SELECT 2"))
        with first_context.db.connect() as connection:
            connection.execute(text("SELECT 1"))

    assert metric_lines(statsd.received()) == sorted(
        [
            "one.clients.db.execute:<ms>|ms",
            "one.clients.db.execute.success:1|c",
            "one.server.handler:<ms>|ms",
            "one.server.handler.success:1|c",
            "two.clients.main_db.execute:<ms>|ms",
            "two.clients.main_db.execute.success:1|c",
            "two.server.handler:<ms>|ms",
            "two.server.handler.success:1|c",
        ]
    )
    statements = {
        span.name: span.attributes["statement"]
        for span in spans.get_finished_spans()
        if span.name != "handler"
    }
    assert statements == {"main_db.execute": "SELECT 2", "db.execute": "SELECT 1"}


def test_two_engines_in_one_baseplate(spans, engine, other_engine):
    baseplate = make_baseplate(
        db=SQLAlchemyEngineContextFactory(engine),
        other=SQLAlchemyEngineContextFactory(other_engine),
    )
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        with context.other.begin() as connection:
            connection.execute(items.insert(), {"id": 1, "name": "other"})
        with context.db.connect() as connection:
            assert connection.execute(select(items.c.name)).all() == []
    names = [span.name for span in spans.get_finished_spans()]
    assert names == ["other.execute", "db.execute", "handler"]


def test_concurrent_requests_each_get_their_own_spans(baseplate, spans):
    errors: list[BaseException] = []

    def request(number: int) -> None:
        try:
            context = SimpleNamespace()
            with baseplate.make_server_span(context, f"request{number}"):
                for _ in range(5):
                    with context.db.connect() as connection:
                        connection.execute(text(f"SELECT {number}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=request, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []

    finished = spans.get_finished_spans()
    servers = {span.context.span_id: span.name for span in finished if span.name != "db.execute"}
    children = [span for span in finished if span.name == "db.execute"]
    assert len(children) == 20
    for child in children:
        assert servers[child.parent.span_id] == "request" + child.attributes["statement"][-1]
