"""SQL client for relational databases (e.g. PostgreSQL), through SQLAlchemy.

The context factories here put a SQLAlchemy :class:`~sqlalchemy.engine.Engine`
(:class:`SQLAlchemyEngineContextFactory`) or ORM
:class:`~sqlalchemy.orm.Session` (:class:`SQLAlchemySessionContextFactory`)
on each request's context object. Every statement either of them runs is a
child span of the request named ``<attribute>.execute``, tagged with the
statement, and the statement the database receives ends with a comment naming
that span::

    SELECT * FROM accounts WHERE id = %(id)s -- trace:2356263485328476928,span:7623487823

so that a slow query log or the server's list of running queries leads back
to the request.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from baseplate import config
from baseplate._extras import missing_extra
from baseplate.context import ContextFactory
from baseplate.context.pool_watch import PoolWatch
from baseplate.core import LocalSpan, SpanObserver

try:
    import sqlalchemy
    from sqlalchemy import event
    from sqlalchemy.engine import Connection, Engine, ExceptionContext, ExecutionContext
    from sqlalchemy.engine.base import OptionEngine
    from sqlalchemy.engine.url import URL, make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import Pool, QueuePool
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.context.sqlalchemy", "SQLAlchemy 2", "sql") from exc

if TYPE_CHECKING:
    from baseplate.core import ExcInfo, Span
    from baseplate.secrets import SecretsStore

__all__ = [
    "SQLAlchemyEngineContextFactory",
    "SQLAlchemySessionContextFactory",
    "engine_from_config",
]

#: The execution options that carry a request's context attribute and span
#: from its engine to the statement listeners (the original's names).
_NAME_OPTION = "context_name"
_SPAN_OPTION = "server_span"
#: Where a statement's span waits on its execution context for the statement's end.
_SPAN_ATTRIBUTE = "_baseplate_span"


def _seconds(text: str) -> float:
    """Whole seconds (``3600``), as SQLAlchemy takes them, or a timespan (``1 hour``)."""
    if text.strip().isdigit():
        return float(text)
    return config.Timespan(text).total_seconds()


def engine_from_config(
    app_config: Mapping[str, str],
    secrets: SecretsStore | None = None,
    prefix: str = "database.",
    **kwargs: Any,
) -> Engine:
    """Make an :class:`~sqlalchemy.engine.Engine` from a configuration dictionary.

    The keys useful to :func:`engine_from_config` should be prefixed, e.g.
    ``database.url``, etc. The ``prefix`` argument specifies the prefix used
    to filter keys. Other keys under the prefix are ignored.

    Supported keys:

    ``url``
        The connection URL to the database, as
        :func:`~sqlalchemy.engine.make_url` takes it, e.g.
        ``postgresql+psycopg://db.local/accounts``.
    ``credentials_secret`` (optional)
        The path of a :class:`~baseplate.secrets.CredentialSecret` in
        ``secrets``; its username and password replace any in ``url``.
    ``pool_size``, ``max_overflow`` (optional)
        How many connections the pool keeps open, and how many more it may
        open when all are in use (SQLAlchemy's defaults are 5 and 10).
    ``pool_recycle`` (optional)
        Replace connections older than this, in seconds (``3600``) or as a
        timespan (``1 hour``).
    ``pool_pre_ping`` (optional)
        ``true`` to test each connection as it is checked out of the pool, so
        that one the server has closed is replaced before a statement fails on
        it.

    Keyword arguments are passed to :func:`~sqlalchemy.create_engine` and take
    precedence over the configuration.

    :param app_config: The raw application configuration.
    :param secrets: A secrets store, needed if ``credentials_secret`` is set.
    :param prefix: The prefix for configuration keys.
    :raises ConfigurationError: The URL is missing or unusable (its dialect
        or driver is not installed), or an option is invalid.
    :raises TypeError: ``credentials_secret`` is set but ``secrets`` is not
        given.

    .. versionchanged:: 0.31
       The pool options and keyword arguments.
    """
    options = config.parse_under_prefix(
        app_config,
        prefix,
        {
            "url": config.String,
            "credentials_secret": config.Optional(config.String),
            "pool_size": config.Optional(config.at_least(1)),
            "max_overflow": config.Optional(config.Integer),
            "pool_recycle": config.Optional(_seconds),
            "pool_pre_ping": config.Optional(config.Boolean),
        },
    )
    url = _parse_url(f"{prefix}url", options.url)
    if options.credentials_secret:
        if secrets is None:
            raise TypeError(
                f"engine_from_config needs a secrets store when {prefix}credentials_secret is set"
            )
        credentials = secrets.get_credentials(options.credentials_secret)
        url = url.set(username=credentials.username, password=credentials.password)
    engine_args = {
        key: options[key]
        for key in ("pool_size", "max_overflow", "pool_recycle", "pool_pre_ping")
        if options[key] is not None
    }
    engine_args.update(kwargs)
    return _create_engine(f"{prefix}url", url, engine_args)


def _parse_url(key: str, text: str) -> URL:
    try:
        return make_url(text)
    except ArgumentError:
        # Not the value itself: it may hold a password.
        raise config.ConfigurationError(
            key, "not a database URL (dialect+driver://host/database)"
        ) from None


def _create_engine(key: str, url: URL, engine_args: dict[str, Any]) -> Engine:
    """Create the engine, reporting a dialect or driver that is not installed as the URL's fault."""
    try:
        # Looked up when called, so that instrumentation that wraps it applies.
        return sqlalchemy.create_engine(url, **engine_args)
    except NoSuchModuleError:
        raise config.ConfigurationError(key, f"no SQLAlchemy dialect {url.drivername!r}") from None
    except ModuleNotFoundError as exc:
        raise config.ConfigurationError(
            key,
            f"the driver for {url.drivername!r} is not installed ({exc}); install it, "
            "or name an installed driver in the URL (dialect+driver://)",
        ) from None


class _RequestEngine(OptionEngine):
    """A request's engine: the factory's engine, with the request's span as an execution option.

    It shares the pool, dialect and event listeners of the engine it was made
    from. Its connections are made without going through
    :meth:`Engine.connect <sqlalchemy.engine.Engine.connect>`, which
    OpenTelemetry's SQLAlchemy instrumentation wraps to trace a ``connect``
    span: Baseplate's statement spans already trace this engine, and one
    call should be one span. (Suppressing the instrumentation instead would
    also hide the checkout from its connection-usage metric while the checkin
    still counted.)
    """

    def connect(self) -> Connection:
        """Return a new :class:`~sqlalchemy.engine.Connection`, checked out of the pool.

        The checkout is charged to the request (see
        :mod:`baseplate.context.pool_watch`).
        """
        with watch_of(self.pool).calls_of(self.get_execution_options()[_SPAN_OPTION]):
            return Connection(self)


# Engines derived with execution_options() keep the request's span and connect the same way.
_RequestEngine._option_cls = _RequestEngine


def _listen(engine: Engine) -> None:
    """Trace the statements of ``engine``'s request engines.

    ``handle_error`` belongs to the dialect, which every engine derived from
    the application's shares: its listener is added once, and does nothing
    for statements without a span.
    """
    for name, listener in (
        ("before_cursor_execute", _start_statement_span),
        ("after_cursor_execute", _finish_statement_span),
        ("handle_error", _fail_statement_span),
    ):
        if not event.contains(engine, name, listener):
            event.listen(engine, name, listener, retval=name != "after_cursor_execute")


def _start_statement_span(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: ExecutionContext | None,
    executemany: bool,
) -> tuple[str, Any]:
    """Start the statement's span, and name it in a comment at the end of the statement."""
    options = conn.get_execution_options()
    parent: Span | None = options.get(_SPAN_OPTION)
    # Without handle_error events (MySQL reflection expects to fail) the span could not end.
    if parent is None or context is None or options.get("skip_user_error_events"):
        return statement, parameters
    span = parent.make_child(f"{options[_NAME_OPTION]}.execute")
    span.start()
    span.set_tag("statement", statement)
    setattr(context, _SPAN_ATTRIBUTE, span)
    return f"{statement} -- trace:{span.trace_id:d},span:{span.id:d}", parameters


def _take_span(context: ExecutionContext | None) -> Span | None:
    span: Span | None = getattr(context, _SPAN_ATTRIBUTE, None)
    if span is not None:
        setattr(context, _SPAN_ATTRIBUTE, None)
    return span


def _finish_statement_span(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: ExecutionContext | None,
    executemany: bool,
) -> None:
    """The cursor executed the statement: its span is a success."""
    span = _take_span(context)
    if span is not None:
        span.finish()


def _fail_statement_span(exception_context: ExceptionContext) -> None:
    """The statement failed: its span fails with the driver's exception.

    The driver's exception rather than SQLAlchemy's wrapper, whose message
    carries the statement's parameters into traces and error reports. The
    application still gets SQLAlchemy's exception.
    """
    span = _take_span(exception_context.execution_context)
    if span is not None:
        error = exception_context.original_exception
        span.finish(exc_info=(type(error), error, error.__traceback__))


_watches: weakref.WeakKeyDictionary[Pool, PoolWatch] = weakref.WeakKeyDictionary()


def watch_of(pool: Pool) -> PoolWatch:
    """The watch of ``pool``, made (and told of its checkouts) the first time it is asked for.

    Every engine and factory sharing a pool shares its watch. The size gauge
    is a :class:`~sqlalchemy.pool.QueuePool`'s ``pool_size``; other pools
    have none.
    """
    watch = _watches.get(pool)
    if watch is None:
        watch = _watches[pool] = _watch(pool)
    return watch


def _watch(pool: Pool) -> PoolWatch:
    lent = {"count": 0}

    def size() -> int | None:
        return pool.size() if isinstance(pool, QueuePool) else None

    watch = PoolWatch(size=size, in_use=lambda: lent["count"])

    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        lent["count"] += 1
        watch.checked_out(record)

    def checked_in(dbapi_connection: Any, record: Any) -> None:
        lent["count"] -= 1
        watch.checked_in(record)

    event.listen(pool, "checkout", checked_out)
    event.listen(pool, "checkin", checked_in)
    return watch


class _TracedEngineFactory(ContextFactory):
    """What both factories share: the engine, its listeners, and each request's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The listeners of a derived engine run before those of the engine it
        # derives from (SQLAlchemy ignores ``insert=True`` for these events).
        # So the span is current, and suppresses OpenTelemetry's SQLAlchemy
        # instrumentation of the application's engine, before that runs.
        self._traced_engine = engine.execution_options()
        _listen(self._traced_engine)

    def _request_engine(self, name: str, span: Span) -> Engine:
        """An engine whose statements are children of ``span``, named ``<name>.execute``."""
        return _RequestEngine(self._traced_engine, {_NAME_OPTION: name, _SPAN_OPTION: span})


class SQLAlchemyEngineContextFactory(_TracedEngineFactory):
    """SQLAlchemy core engine context factory.

    This factory will attach a SQLAlchemy :class:`~sqlalchemy.engine.Engine`
    to an attribute on the context object. All cursor (query) execution will
    automatically record diagnostic information.

    Additionally, the trace and span ID will be added as a comment to the
    text of the SQL statement. This is to aid correlation of queries with
    requests.

    Each request's engine shares the pool of ``engine``; statements made
    through ``engine`` itself, outside requests, are not traced.

    .. seealso::

        The engine is the low-level SQLAlchemy API. If you want to use the
        ORM, consider using :class:`SQLAlchemySessionContextFactory` instead.

    :param engine: A configured SQLAlchemy engine.
    """

    def make_object_for_context(self, name: str, span: Span) -> Engine:
        """Return an engine whose statements are children of ``span``, named ``<name>.execute``."""
        watch_of(self.engine.pool).watch_request(name, span)
        return self._request_engine(name, span)


class SQLAlchemySessionContextFactory(_TracedEngineFactory):
    """SQLAlchemy ORM session context factory.

    This factory will attach a new SQLAlchemy :class:`~sqlalchemy.orm.Session`
    to an attribute on the context object. All cursor (query) execution will
    automatically record diagnostic information.

    The session will be automatically closed, but not committed or rolled
    back, at the end of each request. (Closing returns its connection to the
    pool, which rolls back whatever was not committed.)

    A local span's context has the request's session, so that the whole
    request is one unit of work; its statements are children of the request.

    .. seealso::

        The session is part of the high-level SQLAlchemy ORM API. If you
        want to do raw queries, consider using
        :class:`SQLAlchemyEngineContextFactory` instead.

    :param engine: A configured SQLAlchemy engine.
    """

    def make_object_for_context(self, name: str, span: Span) -> Session:
        """Return the request's session: a new one, closed when ``span`` finishes."""
        if isinstance(span, LocalSpan):
            session: Session = getattr(span.context, name)
            return session
        session = Session(bind=self._request_engine(name, span))
        span.register(_SessionCloser(session))
        # After the closer: the session's connection is back before leaks are counted.
        watch_of(self.engine.pool).watch_request(name, span)
        return session


class _SessionCloser(SpanObserver):
    """Closes a request's session when the request ends."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        self.session.close()
