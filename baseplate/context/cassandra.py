"""Cassandra CQL client: a traced cassandra-driver session on the context object.

:class:`CassandraContextFactory` puts a proxy of a
:class:`cassandra.cluster.Session` on every request's context object. Its
``execute``, ``execute_async`` and ``prepare`` calls are child spans of the
request, named ``<attribute>.execute`` and ``<attribute>.prepare``, with the
CQL text as the ``statement`` tag; everything else is the session's own::

    cluster = cluster_from_config(app_config)
    baseplate.add_to_context("cassandra", CassandraContextFactory(cluster.connect("ks")))

    def handler(context):
        return context.cassandra.execute("SELECT * FROM things")  # span "cassandra.execute"

:class:`CQLMapperContextFactory` puts a `cqlmapper
<https://github.com/reddit/cqlmapper>`_ connection on the context instead,
whose queries go through the same proxy.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

from baseplate import config
from baseplate._extras import missing_extra
from baseplate.context import ContextFactory

try:
    from cassandra.cluster import Cluster  # type: ignore[import-untyped]
    from cassandra.query import (  # type: ignore[import-untyped]
        BoundStatement,
        PreparedStatement,
        SimpleStatement,
    )
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.context.cassandra", "cassandra-driver", "cassandra") from exc

if TYPE_CHECKING:
    from baseplate.core import ExcInfo, Span

__all__ = [
    "CQLMapperContextFactory",
    "CassandraContextFactory",
    "CassandraSessionAdapter",
    "cluster_from_config",
]

#: The keys :func:`cluster_from_config` reads, by the Cluster argument each sets.
_CONFIG_SPEC: config.ConfigSpec = {
    "contact_points": config.TupleOf(config.String),
    "port": config.Optional(config.Integer),
}


def cluster_from_config(
    app_config: Mapping[str, str], prefix: str = "cassandra.", **kwargs: Any
) -> Cluster:
    """Make a Cluster from a configuration dictionary.

    The keys useful to :func:`cluster_from_config` should be prefixed, e.g.
    ``cassandra.contact_points`` etc. The ``prefix`` argument specifies the
    prefix used to filter keys. Each key is mapped to a corresponding keyword
    argument on the :class:`~cassandra.cluster.Cluster` constructor. Any
    keyword arguments given to this function will be passed through to the
    :class:`~cassandra.cluster.Cluster` constructor. Keyword arguments take
    precedence over the configuration file, and a key whose argument is
    given is not read.

    Supported keys:

    ``contact_points`` (required)
        Comma delimited list of contact points to try connecting for cluster
        discovery, e.g. ``10.0.0.1, 10.0.0.2``.
    ``port``
        The server-side port to open connections to (the driver's default,
        9042, if not set).

    :raises baseplate.config.ConfigurationError: A key is missing or has a
        bad value; the error names the full key.
    :raises ValueError: ``prefix`` is not dot-separated names ending with a
        dot.
    """
    spec = {key: parser for key, parser in _CONFIG_SPEC.items() if key not in kwargs}
    parsed = config.parse_under_prefix(app_config, prefix, spec)
    arguments = {key: value for key, value in parsed.items() if value is not None}
    return Cluster(**{**arguments, **kwargs})


class _SessionDefault:
    """No timeout given: the execution profile's ``request_timeout`` applies."""

    def __repr__(self) -> str:
        return "<session default>"


_SESSION_DEFAULT: Any = _SessionDefault()


class CassandraContextFactory(ContextFactory):
    """Cassandra session context factory.

    This factory will attach a proxy object which acts like a
    :class:`cassandra.cluster.Session` to an attribute on the context
    object. The ``execute``, ``execute_async`` or ``prepare`` methods will
    automatically record diagnostic information.

    Statements prepared through the proxies are cached here, by their text,
    for all requests (see :meth:`CassandraSessionAdapter.prepare`).

    :param session: A configured session object.
    :type session: cassandra.cluster.Session
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.prepared_statements: dict[str, Any] = {}

    def make_object_for_context(self, name: str, span: Span) -> CassandraSessionAdapter:
        """Return a proxy of the session whose calls are child spans of ``span``."""
        return CassandraSessionAdapter(name, span, self.session, self.prepared_statements)


class CQLMapperContextFactory(CassandraContextFactory):
    """CQLMapper ORM connection context factory.

    This factory will attach a new CQLMapper
    :class:`cqlmapper.connection.Connection` to an attribute on the context
    object. This Connection object will use the same proxy object that
    :class:`CassandraContextFactory` attaches to a context to run queries, so
    the ``execute`` command will automatically record diagnostic information.

    The first connection adds cqlmapper's execution profile to the cluster;
    it is made here, so that two first requests cannot both try to add it.

    :param session: A configured session object.
    :type session: cassandra.cluster.Session
    :raises ImportError: ``reddit-cqlmapper`` is not installed.
    """

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        try:
            from cqlmapper.connection import Connection  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "CQLMapperContextFactory needs cqlmapper: pip install reddit-cqlmapper"
            ) from exc
        self._connection_class = Connection
        Connection(session)

    def make_object_for_context(self, name: str, span: Span) -> Any:
        """Return a cqlmapper connection whose queries are child spans of ``span``."""
        return self._connection_class(super().make_object_for_context(name, span))


def _statement_text(query: Any) -> str | None:
    """The CQL of a query as the application gave it, for the ``statement`` tag."""
    if isinstance(query, str):
        return query
    if isinstance(query, SimpleStatement | PreparedStatement):
        return str(query.query_string)
    if isinstance(query, BoundStatement):
        return str(query.prepared_statement.query_string)
    return None  # a BatchStatement: many statements


class _SpanFinisher:
    """Finishes the span of an asynchronous call once, on whichever thread sees its outcome first.

    The driver's callbacks run on its event loop thread *after* it wakes
    ``result()``, so the caller could otherwise end its request (and flush
    the request's metrics) before the callback finished the span. The lock
    is held while the span finishes: a second caller waits for the first.
    """

    def __init__(self, span: Span) -> None:
        self._span = span
        self._lock = threading.Lock()
        self._finished = False

    def succeeded(self, _result: Any) -> None:
        self._finish(None)

    def failed(self, error: BaseException) -> None:
        self._finish((type(error), error, error.__traceback__))

    def _finish(self, exc_info: ExcInfo | None) -> None:
        with self._lock:
            if not self._finished:
                self._finished = True
                self._span.finish(exc_info=exc_info)


def _finish_with_future(future: Any, span: Span) -> None:
    """Finish ``span`` when ``future`` resolves, and by the time its ``result()`` returns."""
    finisher = _SpanFinisher(span)
    future.add_callbacks(finisher.succeeded, finisher.failed)
    driver_result = future.result

    @functools.wraps(driver_result)
    def result() -> Any:
        try:
            rows = driver_result()
        except Exception as error:
            finisher.failed(error)
            raise
        finisher.succeeded(rows)
        return rows

    future.result = result


class CassandraSessionAdapter:
    """The object on the context: a :class:`~cassandra.cluster.Session`, its queries traced.

    * ``execute`` and ``execute_async`` are child spans of the request named
      ``<attribute>.execute``, which the metrics observer times as
      ``clients.<attribute>.execute``; ``prepare`` is ``<attribute>.prepare``.
      Each has the CQL text as its ``statement`` tag.
    * A call that fails finishes its span with the driver's exception, which
      counts as a failure, and then raises that same exception.
    * The span of ``execute_async`` finishes when the returned
      :class:`~cassandra.cluster.ResponseFuture` resolves, succeeding or
      failing; once its ``result()`` has returned or raised, the span is
      finished.
    * Every other attribute is the session's: reading it reads the session's,
      and setting it (``default_fetch_size`` ...) sets it on the session,
      which all requests share.

    .. versionadded:: 0.31
       The reference did not document the proxy's class; its name and
       constructor are the original's.
    """

    # The original's attribute names; set past __setattr__, which sets the session's.
    context_name: str
    server_span: Span
    session: Any
    prepared_statements: dict[str, Any]

    def __init__(
        self,
        context_name: str,
        server_span: Span,
        session: Any,
        prepared_statements: dict[str, Any],
    ) -> None:
        object.__setattr__(self, "context_name", context_name)
        object.__setattr__(self, "server_span", server_span)
        object.__setattr__(self, "session", session)
        object.__setattr__(self, "prepared_statements", prepared_statements)

    def __getattr__(self, name: str) -> Any:
        if name == "session":  # not yet set (copying): no session to ask
            raise AttributeError(name)
        return getattr(self.session, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.session, name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self.session)) | set(dir(type(self))))

    def __repr__(self) -> str:
        return f"<CassandraSessionAdapter {self.context_name!r}>"

    def _start_span(self, operation: str, query: Any) -> Span:
        span = self.server_span.make_child(f"{self.context_name}.{operation}")
        span.start()
        statement = _statement_text(query)
        if statement is not None:
            span.set_tag("statement", statement)
        return span

    def execute(self, query: Any, parameters: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Run a query and wait for its result, as :meth:`Session.execute
        <cassandra.cluster.Session.execute>` (same arguments) does.
        """
        span = self._start_span("execute", query)
        try:
            result = self.session.execute(query, parameters, *args, **kwargs)
        except BaseException:
            span.finish(exc_info=sys.exc_info())
            raise
        span.finish()
        return result

    def execute_async(
        self, query: Any, parameters: Any = None, timeout: Any = _SESSION_DEFAULT, **kwargs: Any
    ) -> Any:
        """Start a query and return its :class:`~cassandra.cluster.ResponseFuture`.

        As in the original, the third positional argument is ``timeout``
        (the driver's is ``trace``); the driver's other arguments are passed
        through by keyword. Without ``timeout``, the execution profile's
        ``request_timeout`` applies; None means no timeout.

        The span is not the current span once this returns: the request goes
        on while the query runs, and the span ends when the future resolves.
        """
        if timeout is not _SESSION_DEFAULT:
            kwargs["timeout"] = timeout
        request_context = otel_context.get_current()
        span = self._start_span("execute", query)
        try:
            future = self.session.execute_async(query, parameters, **kwargs)
        except BaseException:
            span.finish(exc_info=sys.exc_info())
            raise
        finally:
            otel_context.attach(request_context)
        _finish_with_future(future, span)
        return future

    def prepare(self, query: str, cache: bool = True, **kwargs: Any) -> Any:
        """Prepare a CQL statement.

        :param cache: If true (the default), prepared statements are cached
            and reused, keyed on the text of the statement: only the first
            preparation talks to Cassandra (and is traced). Set it false for
            a very high-cardinality query set; cached statements are kept for
            the life of the factory, so be wary of memory use.
        :param kwargs: The driver's other arguments (``custom_payload``,
            ``keyspace``); a statement prepared with them is not cached.
        """
        cache = cache and not kwargs
        if cache:
            prepared = self.prepared_statements.get(query)
            if prepared is not None:
                return prepared
        with self.server_span.make_child(f"{self.context_name}.prepare") as span:
            span.set_tag("statement", query)
            prepared = self.session.prepare(query, **kwargs)
        if cache:
            self.prepared_statements[query] = prepared
        return prepared
