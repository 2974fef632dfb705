"""Intersphinx inventories for the docs, made from local facts only.

The docs build never uses the network, so Sphinx cannot fetch the
``objects.inv`` of the projects these pages link to. Python's comes from the
local copy of its documentation (Debian's ``python3-doc``, which
``scripts/test`` installs). For the other projects, :data:`PROJECTS` lists the
names these docs mention, each with the page of the project's published
documentation that describes it; :func:`write_inventories` turns each
project's list into a small ``objects.inv`` at build time.

Every project here documents its API with Sphinx's autodoc, whose anchor for
an object is its dotted name, so an entry needs only the object's type, its
name and its page. A name that a project re-exports (``opentelemetry.trace.Span``)
links to the object where it is defined (``opentelemetry.trace.span.Span``):
write ``name = anchor``. A name these docs start to mention and that is not
listed here makes the build fail (``nitpicky``); add it with its page.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

#: The directives an entry may name, and the intersphinx role they stand for.
_ROLES = {
    "module": "py:module",
    "class": "py:class",
    "exception": "py:exception",
    "function": "py:function",
    "method": "py:method",
    "attribute": "py:attribute",
    "data": "py:data",
}

#: Where the Python documentation's inventory is looked for, in order.
PYTHON_INVENTORIES = (
    "/usr/share/doc/python3/html/objects.inv",
    "/usr/share/doc/python3-doc/html/objects.inv",
)


@dataclass(frozen=True)
class Project:
    """One project's published documentation and the names these docs link to.

    ``pages`` maps a page, relative to ``url``, to its entries, one a line:
    ``<type> <name>`` or ``<type> <name> = <anchor>``.
    """

    title: str
    url: str
    pages: dict[str, str]

    def entries(self) -> list[str]:
        """The inventory's lines: ``name domain:role priority uri display-name``."""
        lines = []
        for page, text in self.pages.items():
            for entry in text.strip().splitlines():
                match = re.fullmatch(r"\s*(\w+)\s+([\w.]+)(?:\s*=\s*([\w.-]+))?\s*", entry)
                if match is None or match[1] not in _ROLES:
                    raise ValueError(f"{self.title}: cannot read the entry {entry!r}")
                kind, name, target = match[1], match[2], match[3] or match[2]
                anchor = f"module-{target}" if kind == "module" else target
                lines.append(f"{name} {_ROLES[kind]} 1 {page}#{anchor} -")
        return sorted(lines)


PROJECTS = {
    "opentelemetry": Project(
        "OpenTelemetry Python",
        "https://opentelemetry-python.readthedocs.io/en/latest/",
        {
            "api/trace.html": """
                module opentelemetry.trace
                class opentelemetry.trace.TracerProvider
                class opentelemetry.trace.SpanKind
                function opentelemetry.trace.get_current_span
                function opentelemetry.trace.get_tracer_provider
                function opentelemetry.trace.set_tracer_provider
            """,
            "api/trace.span.html": """
                class opentelemetry.trace.span.Span
                class opentelemetry.trace.span.SpanContext
                class opentelemetry.trace.Span = opentelemetry.trace.span.Span
                class opentelemetry.trace.SpanContext = opentelemetry.trace.span.SpanContext
            """,
            "api/context.html": """
                module opentelemetry.context
                function opentelemetry.context.attach
                function opentelemetry.context.detach
                function opentelemetry.context.get_current
                function opentelemetry.context.create_key
            """,
            "api/context.context.html": """
                class opentelemetry.context.context.Context
                class opentelemetry.context.Context = opentelemetry.context.context.Context
            """,
            "api/propagators.textmap.html": """
                class opentelemetry.propagators.textmap.TextMapPropagator
            """,
            "sdk/trace.html": """
                module opentelemetry.sdk.trace
                class opentelemetry.sdk.trace.TracerProvider
                class opentelemetry.sdk.trace.SpanProcessor
                class opentelemetry.sdk.trace.ReadableSpan
                class opentelemetry.sdk.trace.Span
                class opentelemetry.sdk.trace.Event
            """,
            "api/attributes.html": """
                class opentelemetry.attributes.BoundedAttributes
            """,
            "sdk/trace.export.html": """
                class opentelemetry.sdk.trace.export.SpanExporter
                class opentelemetry.sdk.trace.export.SpanExportResult
                class opentelemetry.sdk.trace.export.BatchSpanProcessor
            """,
            "sdk/trace.sampling.html": """
                class opentelemetry.sdk.trace.sampling.Sampler
                class opentelemetry.sdk.trace.sampling.Decision
                class opentelemetry.sdk.trace.sampling.SamplingResult
            """,
            "sdk/trace.id_generator.html": """
                class opentelemetry.sdk.trace.id_generator.IdGenerator
            """,
        },
    ),
    "pyramid": Project(
        "Pyramid",
        "https://docs.pylonsproject.org/projects/pyramid/en/latest/",
        {
            "api/events.html": """
                class pyramid.events.ContextFound
                class pyramid.events.NewResponse
            """,
            "api/httpexceptions.html": """
                exception pyramid.httpexceptions.HTTPException
            """,
            "api/csrf.html": """
                function pyramid.csrf.new_csrf_token
            """,
        },
    ),
    "sqlalchemy": Project(
        "SQLAlchemy",
        "https://docs.sqlalchemy.org/en/20/",
        {
            "core/engines.html": """
                function sqlalchemy.create_engine
                function sqlalchemy.engine.make_url
            """,
            "core/connections.html": """
                class sqlalchemy.engine.Engine
                class sqlalchemy.engine.base.Engine = sqlalchemy.engine.Engine
            """,
            "orm/session_api.html": """
                class sqlalchemy.orm.Session
                class sqlalchemy.orm.session.Session = sqlalchemy.orm.Session
                method sqlalchemy.orm.Session.rollback
            """,
            "core/exceptions.html": """
                exception sqlalchemy.exc.OperationalError
                exception sqlalchemy.exc.PendingRollbackError
                exception sqlalchemy.exc.ProgrammingError
            """,
        },
    ),
    "redis": Project(
        "redis-py",
        "https://redis.readthedocs.io/en/stable/",
        {
            "connections.html": """
                class redis.Redis
                class redis.client.Redis = redis.Redis
                class redis.StrictRedis = redis.Redis
                method redis.Redis.lock
                method redis.Redis.set_response_callback
                method redis.Redis.transaction
                class redis.connection.ConnectionPool
                class redis.ConnectionPool = redis.connection.ConnectionPool
            """,
            "exceptions.html": """
                exception redis.exceptions.ConnectionError
                exception redis.exceptions.DataError
                exception redis.exceptions.NoScriptError
                exception redis.exceptions.ResponseError
                exception redis.exceptions.TimeoutError
                exception redis.exceptions.WatchError
                exception redis.ConnectionError = redis.exceptions.ConnectionError
                exception redis.DataError = redis.exceptions.DataError
                exception redis.ResponseError = redis.exceptions.ResponseError
                exception redis.TimeoutError = redis.exceptions.TimeoutError
                exception redis.WatchError = redis.exceptions.WatchError
            """,
            "lock.html": """
                class redis.lock.Lock
            """,
            # PubSub has no entry of its own; this section describes it.
            "advanced_features.html": """
                class redis.client.PubSub = publish-subscribe
            """,
        },
    ),
    "pymemcache": Project(
        "pymemcache",
        "https://pymemcache.readthedocs.io/en/latest/",
        {
            "apidoc/pymemcache.client.html": """
                class pymemcache.client.base.PooledClient
            """,
            "apidoc/pymemcache.html": """
                exception pymemcache.exceptions.MemcacheClientError
            """,
        },
    ),
    "kombu": Project(
        "Kombu",
        "https://docs.celeryq.dev/projects/kombu/en/stable/",
        {
            "reference/kombu.html": """
                class kombu.Connection
                class kombu.connection.Connection = kombu.Connection
                class kombu.Exchange
                class kombu.entity.Exchange = kombu.Exchange
                class kombu.Producer
                class kombu.messaging.Producer = kombu.Producer
                method kombu.Producer.publish
                class kombu.Queue
                class kombu.entity.Queue = kombu.Queue
                class kombu.Consumer
                class kombu.messaging.Consumer = kombu.Consumer
            """,
            "reference/kombu.message.html": """
                class kombu.message.Message
                method kombu.message.Message.ack
                method kombu.message.Message.reject
                method kombu.message.Message.requeue
            """,
            "reference/kombu.pools.html": """
                data kombu.pools.connections
                function kombu.pools.get_limit
                function kombu.pools.set_limit
                class kombu.pools.Producers
            """,
            "reference/kombu.exceptions.html": """
                exception kombu.exceptions.OperationalError
            """,
        },
    ),
    "kazoo": Project(
        "kazoo",
        "https://kazoo.readthedocs.io/en/latest/",
        {
            "api/client.html": """
                class kazoo.client.KazooClient
                method kazoo.client.KazooClient.start
                method kazoo.client.KazooClient.stop
                attribute kazoo.client.KazooClient.connected
            """,
            "api/recipe/watchers.html": """
                class kazoo.recipe.watchers.DataWatch
            """,
            "api/exceptions.html": """
                exception kazoo.exceptions.NoAuthError
            """,
        },
    ),
    "amqp": Project(
        "py-amqp",
        "https://docs.celeryq.dev/projects/amqp/en/latest/",
        {
            "reference/amqp.exceptions.html": """
                module amqp.exceptions
                exception amqp.exceptions.NotFound
            """,
        },
    ),
    "cassandra": Project(
        "DataStax Python Driver for Apache Cassandra",
        "https://docs.datastax.com/en/developer/python-driver/3.29/",
        {
            "api/cassandra/": """
                exception cassandra.InvalidRequest
                exception cassandra.OperationTimedOut
                exception cassandra.ReadTimeout
                exception cassandra.Unavailable
                exception cassandra.WriteTimeout
            """,
            "api/cassandra/cluster/": """
                class cassandra.cluster.Cluster
                class cassandra.cluster.Session
                method cassandra.cluster.Session.execute
                class cassandra.cluster.ResponseFuture
                exception cassandra.cluster.NoHostAvailable
            """,
            "api/cassandra/concurrent/": """
                function cassandra.concurrent.execute_concurrent_with_args
            """,
            "api/cassandra/policies/": """
                class cassandra.policies.ExponentialReconnectionPolicy
            """,
            "api/cassandra/protocol/": """
                exception cassandra.protocol.SyntaxException
            """,
            "api/cassandra/query/": """
                class cassandra.query.BatchStatement
                class cassandra.query.BoundStatement
                class cassandra.query.PreparedStatement
                class cassandra.query.SimpleStatement
            """,
        },
    ),
    "gevent": Project(
        "gevent",
        "https://www.gevent.org/",
        {
            "api/gevent.html": """
                function gevent.spawn
                function gevent.spawn_later
            """,
            "api/gevent.timeout.html": """
                class gevent.Timeout
            """,
            "api/gevent.pywsgi.html": """
                class gevent.pywsgi.WSGIHandler
            """,
        },
    ),
    "hvac": Project(
        "hvac",
        "https://hvac.readthedocs.io/en/stable/",
        {
            "source/hvac_v1.html": """
                class hvac.v1.Client
                class hvac.Client = hvac.v1.Client
            """,
            "source/hvac_exceptions.html": """
                module hvac.exceptions
            """,
        },
    ),
    "requests": Project(
        "Requests",
        "https://requests.readthedocs.io/en/latest/",
        {
            "api/": """
                exception requests.ConnectionError
                exception requests.RequestException
            """,
        },
    ),
    "sentry_sdk": Project(
        "sentry-python",
        "https://getsentry.github.io/sentry-python/",
        {
            "apidocs.html": """
                class sentry_sdk.Client
                class sentry_sdk.Scope
                class sentry_sdk.scope.Scope = sentry_sdk.Scope
            """,
        },
    ),
}


def write_inventory(project: Project, path: Path) -> None:
    """Write ``project``'s entries to ``path`` in Sphinx's inventory format (version 2)."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project.title}\n"
        "# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(line + "\n" for line in project.entries())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + zlib.compress(body.encode(), 9))


def write_inventories(directory: Path) -> dict[str, tuple[str, str]]:
    """Write every project's inventory under ``directory``; return their intersphinx mapping."""
    mapping = {}
    for name, project in PROJECTS.items():
        path = directory / f"{name}.inv"
        write_inventory(project, path)
        mapping[name] = (project.url, str(path))
    return mapping


def python_inventory() -> tuple[str, str]:
    """The intersphinx entry for Python: the local inventory, linked to its version's docs.

    Raises :exc:`FileNotFoundError`, with advice, when no local copy exists.
    """
    for candidate in PYTHON_INVENTORIES:
        path = Path(candidate)
        if path.is_file():
            with path.open("rb") as stream:
                stream.readline()
                stream.readline()
                version = stream.readline().decode().removeprefix("# Version:").strip()
            return f"https://docs.python.org/{version or '3'}/", str(path)
    raise FileNotFoundError(
        "the docs link to Python's documentation through its local inventory, "
        f"looked for in {', '.join(PYTHON_INVENTORIES)}: install Debian's python3-doc "
        "(./scripts/test does)"
    )
