"""Publishing messages to AMQP (RabbitMQ) with `kombu <https://docs.celeryq.dev/projects/kombu/>`_.

:class:`KombuProducerContextFactory` puts a :class:`KombuProducer` on the
context object. Each :meth:`~KombuProducer.publish` borrows a producer from a
pool shared by all requests and is a child span of the request named
``<attribute>.publish``, which the metrics observer times as
``clients.<attribute>.publish``::

    connection = connection_from_config(app_config, prefix="amqp.")
    exchange = exchange_from_config(app_config, prefix="amqp.")
    baseplate.add_to_context("amqp", KombuProducerContextFactory(connection, exchange))

    def handler(context):
        context.amqp.publish({"id": 42}, routing_key="things.created")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from baseplate import config
from baseplate._extras import missing_extra
from baseplate.context import ContextFactory

try:
    from kombu.connection import Connection
    from kombu.entity import Exchange
    from kombu.pools import Producers
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.context.kombu", "kombu", "amqp") from exc

if TYPE_CHECKING:
    from baseplate.core import Span

__all__ = [
    "KombuProducer",
    "KombuProducerContextFactory",
    "connection_from_config",
    "exchange_from_config",
]

#: For each configuration key: the constructor argument it becomes, and its parser.
_Keys: TypeAlias = Mapping[str, tuple[str, Callable[[str], Any]]]

_CONNECTION_KEYS: _Keys = {
    "hostname": ("hostname", config.String),
    "virtual_host": ("virtual_host", config.Optional(config.String)),
}

_EXCHANGE_KEYS: _Keys = {
    "exchange_name": ("name", config.Optional(config.String, default="")),
    "exchange_type": ("type", config.String),
}


def _constructor_arguments(
    app_config: Mapping[str, str], prefix: str, keys: _Keys, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The configured arguments, overridden by ``kwargs``.

    A key whose argument the caller passes is not read at all, so it need
    not be in the configuration: keyword arguments take precedence.
    """
    spec: config.ConfigSpec = {
        key: parser for key, (argument, parser) in keys.items() if argument not in kwargs
    }
    parsed = config.parse_under_prefix(app_config, prefix, spec)
    return {**{keys[key][0]: value for key, value in parsed.items()}, **kwargs}


def connection_from_config(
    app_config: Mapping[str, str], prefix: str = "amqp.", **kwargs: Any
) -> Connection:
    """Make a Connection from a configuration dictionary.

    The keys useful to :func:`connection_from_config` should be prefixed,
    e.g. ``amqp.hostname`` etc. The ``prefix`` argument specifies the prefix
    used to filter keys. Each key is mapped to a corresponding keyword
    argument on the :class:`~kombu.Connection` constructor. Any keyword
    arguments given to this function will be passed through to the
    :class:`~kombu.Connection` constructor. Keyword arguments take precedence
    over the configuration file.

    Supported keys:

    ``hostname`` (required)
        The broker: a host name (``rabbit.local``), or a URL, which may
        carry the credentials, port and virtual host
        (``amqp://user:password@rabbit.local:5672/myvhost``).
    ``virtual_host``
        The virtual host, ``/`` if not set. kombu lets a virtual host in a
        ``hostname`` URL win over this key.

    :raises baseplate.config.ConfigurationError: A key is missing or has a
        bad value; the error names the full key.
    :raises ValueError: ``prefix`` is not dot-separated names ending with a
        dot.
    """
    arguments = _constructor_arguments(app_config, prefix, _CONNECTION_KEYS, kwargs)
    return Connection(**arguments)  # type: ignore[no-untyped-call]  # kombu's is unannotated


def exchange_from_config(
    app_config: Mapping[str, str], prefix: str = "amqp.", **kwargs: Any
) -> Exchange:
    """Make an Exchange from a configuration dictionary.

    The keys useful to :func:`exchange_from_config` should be prefixed, e.g.
    ``amqp.exchange_name`` etc. The ``prefix`` argument specifies the prefix
    used to filter keys. Each key is mapped to a corresponding keyword
    argument on the :class:`~kombu.Exchange` constructor (``name`` and
    ``type``). Any keyword arguments given to this function will be passed
    through to the :class:`~kombu.Exchange` constructor. Keyword arguments
    take precedence over the configuration file.

    Supported keys:

    ``exchange_name``
        The exchange's name; if not set, the broker's default exchange
        (``""``), which routes a message to the queue named by its routing
        key.
    ``exchange_type`` (required)
        ``direct``, ``topic``, ``fanout``, ``headers``, or a type a broker
        plugin adds.

    :raises baseplate.config.ConfigurationError: A key is missing or has a
        bad value; the error names the full key.
    :raises ValueError: ``prefix`` is not dot-separated names ending with a
        dot.
    """
    arguments = _constructor_arguments(app_config, prefix, _EXCHANGE_KEYS, kwargs)
    return Exchange(**arguments)  # type: ignore[no-untyped-call]  # kombu's is unannotated


class KombuProducerContextFactory(ContextFactory):
    """KombuProducer context factory.

    This factory will attach a proxy object which acts like a
    :class:`kombu.Producer` to an attribute on the context object. The
    :meth:`~KombuProducer.publish` method will automatically record
    diagnostic information.

    Publishes borrow their producer from the factory's ``producers``, kombu's pool of
    producers for ``connection``, shared by every request. The producers
    take their connections from kombu's process-wide pool for that broker
    (:data:`kombu.pools.connections`, at most
    :func:`kombu.pools.get_limit` connections, 10 unless changed), so a
    publish made while every producer or connection is in use waits for one
    to be released.

    :param connection: A configured connection object.
    :param exchange: A configured exchange object; every message is
        published to it.
    :param max_connections: The maximum number of producers in use at once,
        and so of connections this factory holds; unbounded (up to kombu's
        connection limit) if None.
    """

    def __init__(
        self, connection: Connection, exchange: Exchange, max_connections: int | None = None
    ) -> None:
        self.connection = connection
        self.exchange = exchange
        #: kombu's group of producer pools, each bounded by ``max_connections``.
        self.producers = Producers(limit=max_connections)  # type: ignore[no-untyped-call]

    def make_object_for_context(self, name: str, span: Span) -> KombuProducer:
        """Return a producer whose publishes are child spans of ``span``."""
        return KombuProducer(name, span, self.connection, self.exchange, self.producers)


class KombuProducer:
    """The object on the context: publishes messages, each publish traced.

    :param name: The attribute of the context object; spans are named after
        it.
    :param span: The span each publish is a child of.
    :param connection: The broker connection the producers are for.
    :param exchange: The exchange messages are published to.
    :param producers: The group of producer pools to borrow from.
    """

    def __init__(
        self,
        name: str,
        span: Span,
        connection: Connection,
        exchange: Exchange,
        producers: Producers,
    ) -> None:
        self.name = name
        self.span = span
        self.connection = connection
        self.exchange = exchange
        self.producers = producers

    def publish(self, body: Any, routing_key: str | None = None, **kwargs: Any) -> Any:
        """Publish a message to the routing_key.

        The publish is a child span named ``<attribute>.publish`` with the
        tags ``kind = producer`` and, when a routing key is given,
        ``message_bus.destination``. An exception (kombu's, amqp's or the
        socket's) finishes the span as a failure and reaches the caller
        unchanged.

        :param body: The message body, serialized by kombu (JSON unless a
            ``serializer`` says otherwise).
        :param routing_key: The routing key to publish to.

        Other keyword arguments (``serializer``, ``compression``,
        ``headers``, ``declare``, ``retry``, ``retry_policy``...) are passed
        to :meth:`kombu.Producer.publish`; see `its documentation
        <https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.html#kombu.Producer.publish>`_.
        """
        with self.span.make_child(f"{self.name}.publish") as span:
            span.set_tag("kind", "producer")
            if routing_key:
                span.set_tag("message_bus.destination", routing_key)
            with self.producers[self.connection].acquire(block=True) as producer:
                return producer.publish(
                    body, routing_key=routing_key, exchange=self.exchange, **kwargs
                )
