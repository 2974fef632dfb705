"""A small notes service: a Pyramid app instrumented with Baseplate.

Run it with ``baseplate-serve examples/example.ini`` and try::

    curl localhost:9090/
    curl -d 'buy milk' localhost:9090/notes
    curl localhost:9090/notes
    curl localhost:9090/health

What it shows (see ``docs/getting_started.rst`` for a walk-through):

* configuration parsed and checked with :mod:`baseplate.config`;
* a server span per request (:mod:`baseplate.integration.pyramid`), with
  metrics (discarded while ``metrics.endpoint`` is empty), tracing (spans
  logged by ``tracing.exporter = log``) and trace ids in the logs;
* a context factory of its own, :class:`NotesDatabase`: each request gets
  ``request.db``, a sqlite3 connection opened on first use and closed when the
  request ends, whose every statement is a client span ``db.execute``;
* a local span around rendering, and an application metric;
* a health check that runs ``SELECT 1`` through ``request.db``.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPBadRequest
from pyramid.response import Response

from baseplate import config, metrics_client_from_config, tracing_client_from_config
from baseplate.context import ContextFactory
from baseplate.core import Baseplate, ExcInfo, ServerSpan, ServerSpanObserver
from baseplate.integration.pyramid import BaseplateConfigurator

logger = logging.getLogger(__name__)

SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"
MAX_NOTE_LENGTH = 1000
_memory_databases = itertools.count()


# -- storage: a context factory of its own ------------------------------------------


class NotesDatabase(ContextFactory):
    """Gives each request a :class:`DatabaseSession` on a sqlite3 database.

    :param path: The database file, or ``:memory:`` for a database that lives
        as long as this factory (shared by all requests).
    """

    def __init__(self, path: str) -> None:
        if path == ":memory:":
            # A named in-memory database is shared by every connection to it
            # for as long as one stays open: this factory keeps one.
            self.uri = f"file:baseplate-example-{next(_memory_databases)}?mode=memory&cache=shared"
        else:
            self.uri = f"file:{path}"
        self._keeper = self.connect()
        with self._keeper:
            self._keeper.execute(SCHEMA)
        self._close_keeper = weakref.finalize(self, self._keeper.close)

    def connect(self) -> sqlite3.Connection:
        """A new connection to the database."""
        return sqlite3.connect(self.uri, uri=True, check_same_thread=False)

    def make_object_for_context(self, name: str, server_span: ServerSpan) -> DatabaseSession:
        """The request's session; it is closed when the request ends."""
        session = DatabaseSession(self.connect, name, server_span)
        server_span.register(_CloseWhenFinished(session))
        return session

    def close(self) -> None:
        """Close the factory's own connection (an in-memory database goes away)."""
        self._close_keeper()


class DatabaseSession:
    """A request's view of the database: ``request.db``.

    The connection is opened on first use. Each statement is a client span
    named ``<context attribute>.execute`` (so ``db.execute``: the metrics
    observer times it as ``clients.db.execute``), tagged with the statement.
    """

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], name: str, server_span: ServerSpan
    ) -> None:
        self._connect = connect
        self._connection: sqlite3.Connection | None = None
        self.name = name
        self.server_span = server_span

    def execute(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in its own transaction; the rows it returned."""
        span = self.server_span.make_child(f"{self.name}.execute")
        with span:
            span.set_tag("statement", statement)
            if self._connection is None:
                self._connection = self._connect()
            with self._connection:  # commits, or rolls back on error
                rows = self._connection.execute(statement, parameters).fetchall()
            span.set_tag("rows", len(rows))
        return rows

    def close(self) -> None:
        """Close the connection, if one was opened."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _CloseWhenFinished(ServerSpanObserver):
    def __init__(self, session: DatabaseSession) -> None:
        self.session = session

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        self.session.close()


# -- views ----------------------------------------------------------------------------


def hello(request: Any) -> Response:
    """``GET /``: the configured greeting."""
    greeting: str = request.registry.settings["example.greeting"]
    return Response(greeting + "\n", content_type="text/plain")


def list_notes(request: Any) -> dict[str, Any]:
    """``GET /notes``: every note, oldest first."""
    rows = request.db.execute("SELECT id, text FROM notes ORDER BY id")
    # A local span times in-process work: the metric is notes.render.
    with request.trace.make_child("render", local=True, component_name="notes"):
        notes = [{"id": note_id, "text": text} for note_id, text in rows]
    return {"notes": notes}


def add_note(request: Any) -> dict[str, Any]:
    """``POST /notes``: store the request body as a note."""
    text = request.body.decode("utf-8", errors="replace").strip()
    if not text or len(text) > MAX_NOTE_LENGTH:
        raise HTTPBadRequest(f"a note is 1 to {MAX_NOTE_LENGTH} characters")
    [(note_id,)] = request.db.execute("INSERT INTO notes (text) VALUES (?) RETURNING id", (text,))
    request.metrics.counter("notes.created").increment()
    logger.info("stored note %d", note_id)
    return {"id": note_id, "text": text}


def database_is_healthy(request: Any) -> bool:
    """The health check: the database answers."""
    return request.db.execute("SELECT 1") == [(1,)]


# -- the application factory ---------------------------------------------------------------


def make_app(app_config: Mapping[str, str]) -> Any:
    """Build the WSGI application from the ``[app:main]`` options."""
    cfg = config.parse_config(
        app_config,
        {
            "example": {"greeting": config.Optional(config.String, default="Hello!")},
            "database": {"path": config.Optional(config.String, default=":memory:")},
        },
    )

    baseplate = Baseplate()
    baseplate.configure_logging()
    baseplate.configure_metrics(metrics_client_from_config(app_config))
    baseplate.configure_tracing(tracing_client_from_config(app_config))
    baseplate.add_to_context("db", NotesDatabase(cfg.database.path))

    configurator = Configurator(settings={"example.greeting": cfg.example.greeting})
    configurator.include(BaseplateConfigurator(baseplate).includeme)
    configurator.add_route("hello", "/", request_method="GET")
    configurator.add_view(hello, route_name="hello")
    configurator.add_route("list_notes", "/notes", request_method="GET")
    configurator.add_view(list_notes, route_name="list_notes", renderer="json")
    configurator.add_route("add_note", "/notes", request_method="POST")
    configurator.add_view(add_note, route_name="add_note", renderer="json")
    configurator.add_health_check(database_is_healthy)
    logger.info("example service ready (database %s)", cfg.database.path)
    return configurator.make_wsgi_app()
