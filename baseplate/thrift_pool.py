"""A Thrift client connection pool.

.. note::

    See :class:`baseplate.context.thrift.ThriftContextFactory` for a
    convenient way to integrate the pool with your application.

The pool lazily creates connections and maintains them in a pool. Individual
connections have a maximum lifetime, after which they will be recycled.

A basic example of usage::

    pool = thrift_pool_from_config(app_config, "example_service.")
    with pool.connection() as protocol:
        client = ExampleService.Client(protocol)
        client.do_example_thing()

Every error the pool raises is a :class:`~thrift.transport.TTransport.TTransportException`
whose message names the endpoint: a connection that cannot be opened
(``NOT_OPEN``), no connection becoming free in time or a call taking too long
(``TIMED_OUT``), a connection lost mid-call (``END_OF_FILE`` or ``UNKNOWN``).

The pool blocks with :mod:`queue` and :mod:`socket`, which gevent's
monkey-patching makes cooperative: under ``baseplate-serve``'s gevent server,
a request waiting for a connection lets the others run.
"""

from __future__ import annotations

import datetime
import queue
import socket
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from thrift.protocol.THeaderProtocol import THeaderProtocolFactory
from thrift.protocol.TProtocol import TProtocolBase, TProtocolException, TProtocolFactory
from thrift.Thrift import TApplicationException, TException
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TTransportException

from baseplate import config

__all__ = ["ThriftConnectionPool", "thrift_pool_from_config"]

#: The defaults of the constructor, which the configuration keys share.
DEFAULT_SIZE = 10
DEFAULT_MAX_AGE = datetime.timedelta(seconds=120)
DEFAULT_TIMEOUT = datetime.timedelta(seconds=1)
DEFAULT_MAX_RETRIES = 3


def _positive_timespan(text: str) -> datetime.timedelta:
    value = config.Timespan(text)
    if value <= datetime.timedelta(0):
        raise ValueError("must be longer than zero")
    return value


_CONFIG_SPEC: config.ConfigSpec = {
    "endpoint": config.Endpoint,
    "size": config.Optional(config.at_least(1), default=DEFAULT_SIZE),
    "max_age": config.Optional(config.Timespan, default=DEFAULT_MAX_AGE),
    "timeout": config.Optional(_positive_timespan, default=DEFAULT_TIMEOUT),
    "max_retries": config.Optional(config.at_least(1), default=DEFAULT_MAX_RETRIES),
}


def thrift_pool_from_config(
    app_config: Mapping[str, str], prefix: str, **kwargs: Any
) -> ThriftConnectionPool:
    """Make a :class:`ThriftConnectionPool` from a configuration dictionary.

    The keys useful to :func:`thrift_pool_from_config` should be prefixed,
    e.g. ``example_service.endpoint`` etc. The ``prefix`` argument specifies
    the prefix used to filter keys. Each key is mapped to a corresponding
    keyword argument on the :class:`ThriftConnectionPool` constructor. Any
    keyword arguments given to this function will be also be passed through
    to the constructor. Keyword arguments take precedence over the
    configuration file.

    Supported keys:

    ``endpoint`` (required)
        A ``host:port`` pair, e.g. ``localhost:2014``, or the path of a Unix
        domain socket, where the Thrift server can be found.
    ``size``
        The size of the connection pool (default 10).
    ``max_age``
        The oldest a connection can be before it's recycled and replaced with
        a new one. Written as a time span e.g. ``1 minute`` (default 2
        minutes).
    ``timeout``
        The maximum amount of time a connection attempt or RPC call can take
        before a timeout error is raised, e.g. ``500 milliseconds`` (default
        1 second).
    ``max_retries``
        The maximum number of times the pool will attempt to open a
        connection (default 3).

    :raises baseplate.config.ConfigurationError: A key is missing or has a
        bad value; the error names the full key.
    :raises ValueError: ``prefix`` does not end with a dot.
    """
    if not prefix.endswith("."):
        raise ValueError(f"prefix must end with a dot, not {prefix!r}")
    group = prefix[:-1]
    spec: config.ConfigSpec = {k: v for k, v in _CONFIG_SPEC.items() if k not in kwargs}
    parsed = config.parse_config(app_config, {group: spec})[group]
    return ThriftConnectionPool(**{**parsed, **kwargs})


#: The shortest socket timeout the pool sets, when a retry budget is nearly spent.
_MIN_TIMEOUT = 0.001


@dataclass(frozen=True)
class _Connection:
    protocol: TProtocolBase
    socket: TSocket
    opened_at: float


def _seconds(value: float | datetime.timedelta) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return float(value)


def _is_declared(error: BaseException) -> bool:
    """Is ``error`` an exception from the service's IDL, after which the connection is fine?"""
    return isinstance(error, TException) and not isinstance(
        error, TTransportException | TApplicationException | TProtocolException
    )


class ThriftConnectionPool:
    """A pool that maintains a queue of open Thrift connections.

    :param endpoint: The remote address of the Thrift service (a TCP
        ``host:port`` or a Unix domain socket).
    :type endpoint: baseplate.config.EndpointConfiguration
    :param size: The maximum number of connections that can be open before
        new attempts to open block.
    :param max_age: The maximum number of seconds a connection should be kept
        alive. Connections older than this will be reaped.
    :param timeout: The maximum number of seconds a connection attempt or
        RPC call can take before a timeout error is raised; also how long
        :meth:`connection` waits for a connection when all are in use.
    :param max_retries: The maximum number of times the pool will attempt to
        open a connection.
    :param protocol_factory: The factory to use for creating protocols from
        transports. This is useful for talking to services that don't
        support THeaderProtocol.
    :type protocol_factory: thrift.protocol.TProtocol.TProtocolFactory

    All exceptions raised by this class derive from
    :class:`~thrift.transport.TTransport.TTransportException`, except the
    :exc:`ValueError` of a bad constructor argument.

    .. versionadded:: 0.31
       ``max_age`` and ``timeout`` may also be given as
       :class:`datetime.timedelta` (as the configuration parses them), and a
       Unix domain socket endpoint is accepted.
    """

    def __init__(
        self,
        endpoint: config.EndpointConfiguration,
        size: int = DEFAULT_SIZE,
        max_age: float | datetime.timedelta = DEFAULT_MAX_AGE,
        timeout: float | datetime.timedelta = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        protocol_factory: TProtocolFactory | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size!r}")
        if max_retries < 1:
            raise ValueError(f"max_retries must be at least 1, not {max_retries!r}")
        if not _seconds(timeout) > 0:
            raise ValueError(f"timeout must be longer than zero, not {timeout!r}")
        if not _seconds(max_age) >= 0:
            raise ValueError(f"max_age must not be negative, not {max_age!r}")
        self.endpoint = endpoint
        self.size = size
        self.max_age = _seconds(max_age)
        self.timeout = _seconds(timeout)
        self.max_retries = max_retries
        self.protocol_factory = protocol_factory or THeaderProtocolFactory()
        # LIFO, so the warmest connection is reused and idle ones age out.
        # A slot is None until it has a connection (they are opened lazily).
        self._slots: queue.LifoQueue[_Connection | None] = queue.LifoQueue()
        for _ in range(size):
            self._slots.put(None)

    def __repr__(self) -> str:
        return f"<ThriftConnectionPool {self.endpoint} size={self.size}>"

    # -- opening connections --------------------------------------------------------

    def _connect(self, timeout: float) -> socket.socket:
        endpoint = self.endpoint
        if endpoint.family == socket.AF_UNIX:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(endpoint.address)
            except BaseException:
                sock.close()
                raise
            return sock
        assert isinstance(endpoint.address, tuple)
        sock = socket.create_connection(endpoint.address, timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        return sock

    def _open(self, timeout: float) -> _Connection:
        """Open a connection, trying up to ``max_retries`` times."""
        last_error: OSError | None = None
        for _ in range(self.max_retries):
            try:
                sock = self._connect(timeout)
            except OSError as exc:
                last_error = exc
                continue
            transport = TSocket()
            transport.setHandle(sock)
            try:
                protocol = self.protocol_factory.getProtocol(transport)
            except BaseException:
                transport.close()
                raise
            return _Connection(protocol, transport, time.monotonic())
        raise TTransportException(
            TTransportException.NOT_OPEN,
            f"could not connect to Thrift service at {self.endpoint} "
            f"after {self.max_retries} attempt(s): {last_error}",
            inner=last_error,
        )

    # -- checking connections out and in --------------------------------------------

    def _checkout(self, timeout: float) -> _Connection:
        try:
            slot = self._slots.get(timeout=timeout)
        except queue.Empty:
            raise TTransportException(
                TTransportException.TIMED_OUT,
                f"no connection to Thrift service at {self.endpoint} became free "
                f"within {timeout:g} seconds (all {self.size} in use)",
            ) from None
        try:
            if slot is not None:
                if time.monotonic() - slot.opened_at <= self.max_age and slot.socket.isOpen():
                    return slot
                slot.socket.close()  # too old, or closed by the server
            return self._open(timeout)
        except BaseException:
            self._slots.put(None)
            raise

    def connection(self) -> AbstractContextManager[TProtocolBase]:
        """Acquire a connection from the pool.

        This method is to be used with a context manager. It returns a
        connection from the pool, or blocks up to ``timeout`` seconds waiting
        for one if the pool is full and all connections are in use.

        When the context is exited, the connection is returned to the pool.
        However, if it was exited via an unexpected exception (anything but
        an exception declared in the service's IDL), the connection is closed
        instead because the state of the connection is unknown.

        :raises thrift.transport.TTransport.TTransportException: No
            connection became free in time, a connection could not be opened,
            or the connection failed while in use.
        """
        return _CheckedOutConnection(self, self.timeout)

    def _connection(self, time_limit: float | None) -> AbstractContextManager[TProtocolBase]:
        """:meth:`connection`, with the wait and the call timeout capped at ``time_limit``.

        The context factory passes what is left of a retry policy's budget.
        """
        timeout = self.timeout
        if time_limit is not None:
            timeout = max(min(timeout, time_limit), _MIN_TIMEOUT)
        return _CheckedOutConnection(self, timeout)

    def _release(self, connection: _Connection, error: BaseException | None) -> None:
        if error is None or _is_declared(error):
            self._slots.put(connection)
        else:
            connection.socket.close()
            self._slots.put(None)

    def close(self) -> None:
        """Close the idle connections; the pool stays usable.

        Connections in use are returned as usual; new connections are opened
        as needed.

        .. versionadded:: 0.31
        """
        idle = []
        while True:
            try:
                idle.append(self._slots.get_nowait())
            except queue.Empty:
                break
        for slot in idle:
            if slot is not None:
                slot.socket.close()
            self._slots.put(None)


class _CheckedOutConnection(AbstractContextManager[TProtocolBase]):
    """The context manager of :meth:`ThriftConnectionPool.connection`.

    A class rather than a generator: the exceptions that the Thrift compiler
    generates are immutable, and :func:`contextlib.contextmanager` fails
    when it re-raises one (it sets ``__traceback__``).
    """

    def __init__(self, pool: ThriftConnectionPool, timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout
        self.connection: _Connection | None = None

    def __enter__(self) -> TProtocolBase:
        connection = self.pool._checkout(self.timeout)
        try:
            connection.socket.setTimeout(self.timeout * 1000)
        except BaseException as exc:
            self.pool._release(connection, exc)
            raise
        self.connection = connection
        return connection.protocol

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        self.pool._release(connection, exc_value)
        endpoint = self.pool.endpoint
        if isinstance(exc_value, OSError):
            timed_out = isinstance(exc_value, TimeoutError)
            kind = TTransportException.TIMED_OUT if timed_out else TTransportException.UNKNOWN
            raise TTransportException(
                kind, f"Thrift service at {endpoint}: {exc_value}", inner=exc_value
            ) from exc_value
        if isinstance(exc_value, TTransportException):
            raise TTransportException(
                exc_value.type,
                f"Thrift service at {endpoint}: {exc_value}",
                inner=exc_value.inner or exc_value,
            ) from exc_value
