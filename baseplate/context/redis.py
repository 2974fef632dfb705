"""Redis client for Baseplate applications, on redis-py.

:class:`RedisContextFactory` puts a :class:`MonitoredRedisConnection` on the
context object: a :class:`redis.StrictRedis` whose every round trip to Redis
is a child span of the request, named after the context attribute and the
command::

    pool = pool_from_config(app_config)
    baseplate.add_to_context("redis", RedisContextFactory(pool))

    def handler(context):
        context.redis.get("key")  # span "redis.GET", timed as clients.redis.GET

:class:`MessageQueue` is a Redis list with the interface of
:class:`baseplate.message_queue.MessageQueue`.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, cast

from baseplate import config
from baseplate._extras import missing_extra
from baseplate.context import ContextFactory
from baseplate.context.pool_watch import PoolWatch
from baseplate.message_queue import InvalidParametersError, TimedOutError
from bridge.posix_queues import checked_timeout

try:
    import redis
    import redis.connection
    from redis.client import Pipeline, PubSub
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.context.redis", "redis-py", "redis") from exc

if TYPE_CHECKING:
    from baseplate.core import Span

__all__ = [
    "MessageQueue",
    "MonitoredRedisConnection",
    "MonitoredRedisPipeline",
    "MonitoredRedisPubSub",
    "RedisContextFactory",
    "WatchedConnectionPool",
    "pool_from_config",
]


def pool_from_config(
    app_config: Mapping[str, str], prefix: str = "redis.", **kwargs: Any
) -> redis.BlockingConnectionPool:
    """Make a ConnectionPool from a configuration dictionary.

    The keys useful to :func:`pool_from_config` should be prefixed, e.g.
    ``redis.url``, ``redis.max_connections``, etc. The ``prefix`` argument
    specifies the prefix used to filter keys. Each key is mapped to a
    corresponding keyword argument on the :class:`redis.ConnectionPool`
    constructor.

    Supported keys:

    ``url`` (required)
        A URL like ``redis://localhost/0``.
    ``max_connections``
        The most connections the pool opens, at least 1; when all are in
        use, a command waits for one (20 seconds at most, then
        :exc:`redis.ConnectionError`).
    ``socket_connect_timeout``
        How long to wait for sockets to connect, e.g. ``200 milliseconds``.
    ``socket_timeout``
        How long to wait for socket operations, e.g. ``200 milliseconds``.

    Keyword arguments are passed to the pool, and win over the
    configuration.

    :param app_config: The raw application configuration.
    :param prefix: The prefix for configuration keys.
    :raises ~baseplate.config.ConfigurationError: A key is missing or invalid;
        the error names it (``redis.url: required but missing``).
    """
    options = config.parse_under_prefix(
        app_config,
        prefix,
        {
            "url": config.String,
            "max_connections": config.Optional(config.at_least(1), default=None),
            "socket_connect_timeout": config.Optional(config.Timespan, default=None),
            "socket_timeout": config.Optional(config.Timespan, default=None),
        },
    )

    try:
        redis.connection.parse_url(options.url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise config.ConfigurationError(
            prefix + "url", f"invalid value {options.url!r}: {exc}"
        ) from exc
    if options.max_connections is not None:
        kwargs.setdefault("max_connections", options.max_connections)
    for key in ("socket_connect_timeout", "socket_timeout"):
        timespan = options[key]
        if timespan is None:
            continue
        if not timespan:
            raise config.ConfigurationError(prefix + key, "must be longer than zero")
        kwargs.setdefault(key, timespan.total_seconds())

    pool: WatchedConnectionPool = WatchedConnectionPool.from_url(options.url, **kwargs)
    return pool


class WatchedConnectionPool(redis.BlockingConnectionPool):
    """The pool :func:`pool_from_config` makes: redis-py's blocking pool, watched.

    Every connection it lends and takes back is reported to its ``watch`` (a
    :class:`~baseplate.context.pool_watch.PoolWatch`),
    so that a request ending with a connection still out (a pipeline or a
    publish/subscribe that was never reset) is reported as a leak, and each
    request sends the pool's size and connections in use as gauges (see
    :mod:`baseplate.context.pool_watch`).

    .. versionadded:: 0.31
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._lent = 0
        #: Leaks and gauges of this pool, per request.
        self.watch = PoolWatch(size=lambda: int(self.max_connections), in_use=lambda: self._lent)

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """Lend a connection (waiting for one, as redis-py does), and say so."""
        connection = super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._lent += 1
        self.watch.checked_out(connection)
        return connection

    def release(self, connection: Any) -> None:
        """Take a connection back, and say so."""
        self.watch.checked_in(connection)
        self._lent -= 1
        super().release(connection)  # type: ignore[no-untyped-call]


def _watch_of(connection_pool: object) -> PoolWatch | None:
    """The watch of a pool :func:`pool_from_config` made; None for other pools."""
    return connection_pool.watch if isinstance(connection_pool, WatchedConnectionPool) else None


class RedisContextFactory(ContextFactory):
    """Redis client context factory.

    This factory will attach a
    :class:`~baseplate.context.redis.MonitoredRedisConnection` to an
    attribute on the context object. When redis commands are executed
    via this connection object, they will use connections from the provided
    :class:`redis.ConnectionPool` and automatically record diagnostic
    information.

    :param connection_pool: A connection pool, shared by every request.
    """

    def __init__(self, connection_pool: redis.ConnectionPool) -> None:
        self.connection_pool = connection_pool
        self._prototype: MonitoredRedisConnection | None = None

    def make_object_for_context(self, name: str, span: Span) -> MonitoredRedisConnection:
        """Return a connection whose commands are child spans of ``span``.

        Every request gets one, so it is a copy of a connection made once:
        redis-py 8 takes over 100 microseconds to make a client, mostly to
        build its table of response callbacks, which the copies share until
        one of them changes it (:meth:`~redis.Redis.set_response_callback`).
        """
        prototype = self._prototype
        if prototype is None or prototype.connection_pool is not self.connection_pool:
            prototype = MonitoredRedisConnection("", cast("Span", None), self.connection_pool)
            prototype._shared_response_callbacks = True
            self._prototype = prototype
        connection = copy.copy(prototype)
        connection.context_name = name
        connection.server_span = span
        watch = _watch_of(self.connection_pool)
        if watch is not None:
            watch.watch_request(name, span)
        return connection


def _span_name(context_name: str, command: object) -> str:
    """``<context name>.<command>``, as the original named its spans.

    A command of several words (``CLIENT LIST``) is joined with ``_``: the
    name becomes a statsd metric name, where a space is not allowed.
    """
    if type(command) is str and " " not in command:
        return f"{context_name}.{command}"
    if isinstance(command, bytes | bytearray | memoryview):
        command = bytes(command).decode("utf-8", "replace")
    return context_name + "." + "_".join(str(command).split())


class MonitoredRedisConnection(redis.StrictRedis):
    """Redis connection that collects diagnostic information.

    This connection acts like :class:`redis.StrictRedis` except that all
    operations are automatically wrapped with diagnostic collection.

    The interface is the same as that class except for the :meth:`pipeline`
    method, which takes a name for its span.

    Each command is one child span of the request named
    ``<attribute>.<COMMAND>``: ``redis.GET``, ``redis.SET``. It is a client
    span, so the metrics observer times it as ``clients.redis.GET`` and
    counts ``clients.redis.GET.success`` or ``.failure``; a command that
    raises finishes its span with the error, which then reaches the caller
    unchanged. Commands of several words have their words joined by ``_``
    (``redis.CLIENT_LIST``). OpenTelemetry's Redis instrumentation is
    suppressed inside the span: one command, one span.

    Locks (:meth:`~redis.Redis.lock`), transactions (:meth:`pipeline` and
    :meth:`transaction`) and publish/subscribe (:meth:`pubsub`) work; see
    :doc:`/context_redis` for what they trace.

    .. versionchanged:: 0.31
       :meth:`~redis.Redis.lock`, :meth:`pubsub` and :meth:`transaction` work; they raised
       :exc:`NotImplementedError`.

    :param context_name: The attribute of the context object, which names
        the spans.
    :param server_span: The span the commands are children of.
    :param connection_pool: Where connections come from.
    :param single_connection_client: Use one connection of the pool for
        every command (see :meth:`client`).
    """

    def __init__(
        self,
        context_name: str,
        server_span: Span,
        connection_pool: redis.ConnectionPool,
        *,
        single_connection_client: bool = False,
    ) -> None:
        self.context_name = context_name
        self.server_span = server_span
        super().__init__(
            connection_pool=connection_pool, single_connection_client=single_connection_client
        )

    #: Whether :attr:`response_callbacks` is the table shared by the
    #: connections of a :class:`RedisContextFactory`; changing it makes a
    #: copy first.
    _shared_response_callbacks = False

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one command and return its parsed response, in a span of its own."""
        with (
            self.server_span.make_child(_span_name(self.context_name, args[0])),
            _charged_to(self.connection_pool, self.server_span),
        ):
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def set_response_callback(self, command: str, callback: Callable[..., Any]) -> None:
        """Set a custom response callback, for this connection alone."""
        if self._shared_response_callbacks:
            self.response_callbacks = copy.copy(self.response_callbacks)
            self._shared_response_callbacks = False
        super().set_response_callback(command, callback)

    def pipeline(  # type: ignore[override]
        self, name: str, transaction: bool = True, shard_hint: Any = None
    ) -> MonitoredRedisPipeline:
        """Create a pipeline.

        This returns an object on which you can call the standard redis
        commands. Execution will be deferred until ``execute`` is called. This
        is useful for saving round trips.

        Executing the pipeline is one span, ``<attribute>.pipeline_<name>``,
        whatever it holds. Commands the pipeline sends at once, outside
        ``execute`` (``WATCH``, and the reads after it until ``multi()``),
        are spans of their own named for the command, as on the connection.

        :param name: The name to attach to diagnostics for this pipeline.
        :param transaction: Whether or not the commands in the pipeline
            are wrapped with a transaction and executed atomically.
        :param shard_hint: Passed on to the pool.
        """
        return MonitoredRedisPipeline(
            f"{self.context_name}.pipeline_{name}",
            self.server_span,
            self.connection_pool,
            self.response_callbacks,
            transaction=transaction,
            shard_hint=shard_hint,
            context_name=self.context_name,
        )

    def transaction(
        self,
        func: Callable[[MonitoredRedisPipeline], Any],
        *watches: Any,
        name: str = "transaction",
        shard_hint: Any = None,
        value_from_callable: bool = False,
        watch_delay: float | None = None,
    ) -> Any:
        """Run ``func`` in a transaction while watching the keys ``watches``.

        As :meth:`redis.Redis.transaction`: ``func`` gets a pipeline that
        watches ``watches``, reads what it needs, calls ``multi()`` and
        queues its writes; the pipeline is then executed, and everything is
        done again from the start if a watched key changed meanwhile
        (:exc:`redis.WatchError`), after ``watch_delay`` seconds if given.
        Returns what ``execute`` returned, or what ``func`` returned if
        ``value_from_callable`` is true.

        Each attempt traces its ``WATCH`` and reads as command spans and its
        execution as the pipeline span ``<attribute>.pipeline_<name>``; an
        attempt that lost to a concurrent write finishes that span with the
        :exc:`~redis.WatchError`.

        .. versionadded:: 0.31
           The original raised :exc:`NotImplementedError`. ``name`` is new.

        :param name: The name of the pipeline, for its span.
        """
        pipe = self.pipeline(name, True, shard_hint)
        with pipe:
            while True:
                try:
                    if watches:
                        pipe.watch(*watches)  # type: ignore[no-untyped-call]
                    func_value = func(pipe)
                    exec_value = pipe.execute()
                    return func_value if value_from_callable else exec_value
                except redis.WatchError:
                    if watch_delay is not None and watch_delay > 0:
                        time.sleep(watch_delay)

    def pubsub(self, **kwargs: Any) -> MonitoredRedisPubSub:
        """Return a publish/subscribe object using this connection's pool.

        Its commands (``SUBSCRIBE``, ``UNSUBSCRIBE``, ``PSUBSCRIBE``,
        ``PING``...) are spans named for the command, as on the connection;
        the span of a subscription covers sending it, since Redis confirms
        it with a message. Waiting for and reading messages
        (``get_message``, ``listen``) is not traced: it can last as long as
        the subscription does. ``PUBLISH`` is a command of the connection.

        .. versionadded:: 0.31
           The original raised :exc:`NotImplementedError`.

        :param kwargs: Passed to :class:`redis.client.PubSub`
            (``ignore_subscribe_messages``, ``shard_hint``...).
        """
        return MonitoredRedisPubSub(
            self.context_name, self.server_span, self.connection_pool, **kwargs
        )

    def client(self) -> MonitoredRedisConnection:
        """Return a connection like this one that keeps one connection of the pool.

        .. versionadded:: 0.31
        """
        return MonitoredRedisConnection(
            self.context_name, self.server_span, self.connection_pool, single_connection_client=True
        )


class MonitoredRedisPipeline(Pipeline):
    """A pipeline whose execution is one span.

    Made by :meth:`MonitoredRedisConnection.pipeline`. :meth:`execute` is a
    child span of ``server_span`` named ``trace_name``; commands sent at
    once (``WATCH`` and what follows it until ``multi()``) are spans named
    ``<context_name>.<COMMAND>``.

    :param trace_name: The name of the span of :meth:`execute`.
    :param server_span: The span the pipeline's spans are children of.
    :param connection_pool: Where the connection comes from.
    :param response_callbacks: How to parse responses, by command.
    :param transaction: Wrap the commands in ``MULTI``/``EXEC``.
    :param shard_hint: Passed on to the pool.
    :param context_name: The name of the commands' spans, before the dot;
        the part of ``trace_name`` before its first dot if not given.
    """

    def __init__(
        self,
        trace_name: str,
        server_span: Span,
        connection_pool: redis.ConnectionPool,
        response_callbacks: Any,
        transaction: bool = True,
        shard_hint: Any = None,
        *,
        context_name: str | None = None,
    ) -> None:
        self.trace_name = trace_name
        self.server_span = server_span
        self.context_name = (
            context_name if context_name is not None else trace_name.partition(".")[0]
        )
        self._executing = False
        super().__init__(connection_pool, response_callbacks, transaction, shard_hint)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one command now (``WATCH`` and the reads after it), in a span of its own.

        The scripts a pipeline loads while it executes are part of its span.
        """
        if self._executing:
            return super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]
        with (
            self.server_span.make_child(_span_name(self.context_name, args[0])),
            _charged_to(self.connection_pool, self.server_span),
        ):
            return super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Execute all the commands in the current pipeline, as one span."""
        with (
            self.server_span.make_child(self.trace_name),
            _charged_to(self.connection_pool, self.server_span),
        ):
            self._executing = True
            try:
                result: list[Any] = super().execute(raise_on_error)
            finally:
                self._executing = False
            return result


class MonitoredRedisPubSub(PubSub):
    """A :class:`redis.client.PubSub` whose commands are spans.

    Made by :meth:`MonitoredRedisConnection.pubsub`. Each command
    (``SUBSCRIBE``, ``UNSUBSCRIBE``, ``PING``...) is a child span of
    ``server_span`` named ``<context_name>.<COMMAND>``; reading messages is
    not traced.

    .. versionadded:: 0.31
    """

    def __init__(
        self,
        context_name: str,
        server_span: Span,
        connection_pool: redis.ConnectionPool,
        **kwargs: Any,
    ) -> None:
        self.context_name = context_name
        self.server_span = server_span
        super().__init__(connection_pool, **kwargs)

    def execute_command(self, *args: Any) -> None:
        """Send a publish/subscribe command, in a span of its own."""
        with (
            self.server_span.make_child(_span_name(self.context_name, args[0])),
            _charged_to(self.connection_pool, self.server_span),
        ):
            super().execute_command(*args)  # type: ignore[no-untyped-call]


def _charged_to(connection_pool: object, span: Span) -> AbstractContextManager[None]:
    """Charge the connections lent inside the block to ``span``'s request, if watched."""
    watch = _watch_of(connection_pool)
    return nullcontext() if watch is None else watch.calls_of(span)


def _library_socket_timeout() -> float | None:
    """The socket timeout redis-py gives connections made without one.

    5 seconds since redis-py 8; none (wait for ever) before. Read from the
    connection's signature; if that ever fails, 5 seconds is the safe guess:
    it only makes blocking reads of a :class:`MessageQueue` shorter.
    """
    try:
        parameter = inspect.signature(redis.connection.AbstractConnection.__init__).parameters[
            "socket_timeout"
        ]
    except (AttributeError, KeyError, TypeError, ValueError):  # pragma: no cover - future redis
        return _ASSUMED_SOCKET_TIMEOUT
    default: object = parameter.default
    if default is None or isinstance(default, int | float):
        return default
    return _ASSUMED_SOCKET_TIMEOUT  # pragma: no cover - future redis


_ASSUMED_SOCKET_TIMEOUT = 5.0
_LIBRARY_SOCKET_TIMEOUT = _library_socket_timeout()
#: The longest wait of one BLPOP, in seconds (a day): Redis refuses timeouts
#: whose deadline overflows, so waiting for ever is one BLPOP after another.
_LONGEST_ROUND = 86400
#: How often a queue whose connections time out within 2 seconds asks for a
#: message while it waits, in seconds.
_POLL_INTERVAL = 0.1


def _storable(message: Any) -> Any:
    """``message`` as redis-py stores it; other values become their ``str()``, as in redis<3."""
    if isinstance(message, bytes | str | memoryview) or (
        isinstance(message, int | float) and not isinstance(message, bool)
    ):
        return message
    if isinstance(message, bytearray):
        return bytes(message)
    return str(message)


class MessageQueue:
    """A Redis-backed variant of :class:`~baseplate.message_queue.MessageQueue`.

    The queue is a Redis list under the key ``name``: :meth:`put` appends
    with ``RPUSH`` and :meth:`get` takes from the head with ``LPOP`` or, to
    wait, ``BLPOP``. Unlike a POSIX queue it is unbounded and shared by
    every client of the same Redis, on any machine.

    :param name: can be any string.
    :param client: should be a :class:`redis.ConnectionPool` or
        :class:`redis.BlockingConnectionPool` from which a client connection
        can be created from (preferably generated from the
        :func:`pool_from_config` helper). A Redis client, such as the
        request's :class:`MonitoredRedisConnection`, is used as it is.
    """

    def __init__(self, name: str, client: redis.ConnectionPool | redis.Redis) -> None:
        #: The key of the list in Redis.
        self.queue = name
        self.client: redis.Redis
        if isinstance(client, redis.BlockingConnectionPool | redis.ConnectionPool):
            self.client = redis.Redis(connection_pool=client)
        else:
            self.client = client

    def get(self, timeout: float | None = None) -> Any:
        """Read a message from the queue.

        :param timeout: If the queue is empty, the call will block up to
            ``timeout`` seconds or forever if ``None`` (or ``inf``); ``0``
            or less never blocks. A fraction is rounded up to whole
            seconds, as Redis before 6.0 waits in whole seconds.
        :returns: The message, as :class:`bytes` unless the pool decodes
            responses.
        :raises ~baseplate.message_queue.TimedOutError: The queue was empty
            for the allowed duration of the call.
        :raises ~baseplate.message_queue.InvalidParametersError: ``timeout``
            is NaN or longer than :data:`bridge.posix_queues.MAX_TIMEOUT`.
        """
        try:
            wait = checked_timeout(timeout)
        except ValueError as exc:
            raise InvalidParametersError(str(exc)) from None
        if wait is not None and wait <= 0:
            message = self.client.lpop(self.queue)
        else:
            message = self._blocking_pop(None if wait is None else math.ceil(wait))
        if message is None:
            raise TimedOutError(f"queue {self.queue!r} stayed empty for {timeout} seconds")
        return message

    def _longest_round(self) -> int | None:
        """How many seconds one BLPOP may wait, or None if it cannot wait at all.

        A read that outlasts the connections' socket timeout fails with
        :exc:`redis.TimeoutError`, and redis-py 8+ gives connections 5
        seconds by default, so a longer wait is made of several BLPOPs, each
        a second shorter than the socket timeout: Redis may answer a timed
        out BLPOP up to 100 ms late (``1/hz``). A socket timeout under 2
        seconds leaves no whole second to wait in.
        """
        pool = getattr(self.client, "connection_pool", None)
        connection_kwargs = getattr(pool, "connection_kwargs", {})
        socket_timeout = connection_kwargs.get("socket_timeout", _LIBRARY_SOCKET_TIMEOUT)
        if socket_timeout is None:
            return _LONGEST_ROUND
        if socket_timeout < 2:
            return None
        return min(int(socket_timeout) - 1, _LONGEST_ROUND)

    def _blocking_pop(self, seconds: int | None) -> Any:
        """Wait up to ``seconds`` (None: for ever) for a message; None if none came."""
        longest = self._longest_round()
        if longest is None:
            return self._poll(seconds)
        remaining = seconds
        while remaining is None or remaining > longest:
            message = self._pop_within(longest)
            if message is not None:
                return message
            if remaining is not None:
                remaining -= longest
        return self._pop_within(remaining)

    def _pop_within(self, seconds: int) -> Any:
        """One BLPOP: the message, or None if none came within ``seconds``."""
        popped = self.client.blpop([self.queue], timeout=seconds)
        return None if popped is None else popped[1]

    def _poll(self, seconds: int | None) -> Any:
        """LPOP every :data:`_POLL_INTERVAL` seconds for up to ``seconds`` (None: for ever)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            message = self.client.lpop(self.queue)
            if message is not None:
                return message
            pause = _POLL_INTERVAL
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                pause = min(pause, left)
            time.sleep(pause)

    def put(self, message: Any, timeout: float | None = None) -> Any:
        """Add a message to the queue.

        :param message: will be typecast to a string upon storage and will come
            out of the queue as a string regardless of what type they are
            when passed into this method. :class:`bytes` and :class:`str`
            are stored as they are, numbers as their text, anything else as
            its ``str()``.
        :param timeout: Ignored: the list has no bound, so there is never
            anything to wait for.
        :returns: The length of the queue after the message was added.
        """
        del timeout
        return self.client.rpush(self.queue, _storable(message))

    def unlink(self) -> None:
        """Not implemented for Redis variant."""

    def close(self) -> None:
        """Close queue when finished.

        Will delete the queue from the Redis server (Note, can still enqueue
        and dequeue as the actions will recreate the queue)
        """
        self.client.delete(self.queue)

    def __repr__(self) -> str:
        return f"<MessageQueue {self.queue!r} on {self.client!r}>"
