"""Memcached client: a pymemcache pool on the context object, every command traced.

:func:`pool_from_config` makes a pymemcache
:class:`~pymemcache.client.base.PooledClient` from the application's
configuration, and :class:`MemcacheContextFactory` puts a
:class:`MonitoredMemcacheConnection` over it on each request's context
object. Each command is a child span of the request named
``<attribute>.<command>``::

    baseplate.add_to_context("cache", MemcacheContextFactory(pool_from_config(app_config)))

    def handler(context):
        return context.cache.get("key")  # span "cache.get"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from baseplate import config
from baseplate._extras import missing_extra
from baseplate.context import ContextFactory
from baseplate.context.pool_watch import PoolWatch

try:
    from baseplate.context.memcache._pool import BaseplatePooledClient
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.context.memcache", "pymemcache", "memcache") from exc

if TYPE_CHECKING:
    from baseplate.core import Span

__all__ = [
    "MemcacheContextFactory",
    "MonitoredMemcacheConnection",
    "make_keys_str",
    "pool_from_config",
]

#: How long the ``keys`` tag of a multi-key command may be before it is cut.
MAX_KEYS_TAG_LENGTH = 100


def pool_from_config(
    app_config: Mapping[str, str],
    prefix: str = "memcache.",
    serializer: Callable[[Any, Any], tuple[bytes, int]] | None = None,
    deserializer: Callable[[Any, Any, int], Any] | None = None,
) -> Any:
    """Make a PooledClient from a configuration dictionary.

    The keys useful to :func:`pool_from_config` should be prefixed, e.g.
    ``memcache.endpoint``, ``memcache.max_pool_size``, etc. The ``prefix``
    argument specifies the prefix used to filter keys. Each key is mapped to a
    corresponding keyword argument on the
    :class:`~pymemcache.client.base.PooledClient` constructor.

    Supported keys:

    ``endpoint`` (required)
        A host and port to connect to memcached service, e.g.
        ``localhost:11211`` or ``127.0.0.1:11211``, or the path of a Unix
        socket.
    ``max_pool_size``
        The most connections open at once, by default (and when 0)
        ``2147483648``; a command that would need one more raises
        :exc:`RuntimeError`, as pymemcache does.
    ``connect_timeout``
        Seconds (a float) to wait for a connection to memcached server.
        Defaults to the underlying socket default timeout.
    ``timeout``
        Seconds (a float) to wait for calls on the socket connected to
        memcache. Defaults to the underlying socket default timeout.
    ``no_delay``
        Whether to set ``TCP_NODELAY`` on the connections; ``true`` by
        default.

    :param app_config: The raw application configuration.
    :param prefix: The prefix for configuration keys; it must end with a dot.
    :param serializer: A function to serialize values to bytes suitable for
        being stored in memcached. An example is
        :func:`~baseplate.context.memcache.lib.make_dump_and_compress_fn`.
    :param deserializer: A function to convert bytes returned from memcached
        to arbitrary objects, must be compatible with ``serializer``. An
        example is :func:`~baseplate.context.memcache.lib.decompress_and_load`.
    :returns: A :class:`pymemcache.client.base.PooledClient`.
    :raises ~baseplate.config.ConfigurationError: ``endpoint`` is missing, or
        a value is invalid; the error names the key.
    """
    options = config.parse_under_prefix(
        app_config,
        prefix,
        {
            "endpoint": config.Endpoint,
            "max_pool_size": config.Optional(config.at_least(0)),
            "connect_timeout": config.Optional(config.Float),
            "timeout": config.Optional(config.Float),
            "no_delay": config.Optional(config.Boolean, default=True),
        },
    )
    return BaseplatePooledClient(
        _server(options.endpoint),
        connect_timeout=options.connect_timeout,
        timeout=options.timeout,
        serializer=serializer,
        deserializer=deserializer,
        no_delay=options.no_delay,
        max_pool_size=options.max_pool_size,
    )


def _server(endpoint: config.EndpointConfiguration) -> tuple[str, int] | str:
    """The endpoint as pymemcache takes it: ``(host, port)``, or ``unix:`` and a path."""
    if isinstance(endpoint.address, str):
        return f"unix:{endpoint.address}"
    host, port = endpoint.address
    return (host, port)


class MemcacheContextFactory(ContextFactory):
    """Memcache client context factory.

    This factory will attach a :class:`MonitoredMemcacheConnection` to an
    attribute on the context object. When memcache commands are executed via
    this connection object, they will use connections from the provided
    :class:`~pymemcache.client.base.PooledClient` and automatically record
    diagnostic information.

    :param pooled_client: A pooled client, such as :func:`pool_from_config`
        makes.
    """

    def __init__(self, pooled_client: Any) -> None:
        self.pooled_client = pooled_client

    def make_object_for_context(self, name: str, span: Span) -> MonitoredMemcacheConnection:
        """Return a connection whose commands are child spans of ``span``.

        With a pool from :func:`pool_from_config`, the request's pool
        gauges and leaked connections are reported (see
        :mod:`baseplate.context.pool_watch`).
        """
        watch = _watch_of(self.pooled_client)
        if watch is not None:
            watch.watch_request(name, span)
        return MonitoredMemcacheConnection(name, span, self.pooled_client)


def _watch_of(pooled_client: Any) -> PoolWatch | None:
    """The watch of a pool :func:`pool_from_config` made; None for pymemcache's own."""
    watch = getattr(getattr(pooled_client, "client_pool", None), "watch", None)
    return watch if isinstance(watch, PoolWatch) else None


def make_keys_str(keys: Iterable[str | bytes]) -> str:
    """The keys of a multi-key command as one tag: comma-separated, cut at 100 characters."""
    keys_str = ",".join(_key_text(key) for key in keys)
    if len(keys_str) > MAX_KEYS_TAG_LENGTH:
        return keys_str[:MAX_KEYS_TAG_LENGTH] + "..."
    return keys_str


def _key_text(key: str | bytes) -> str:
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key


class MonitoredMemcacheConnection:
    """Memcache connection that collects diagnostic information.

    This connection acts like a :class:`~pymemcache.client.base.PooledClient`
    except that operations are wrapped with diagnostic collection: each
    command is a child span named ``<context name>.<command>`` (``cache.get``,
    ``cache.set_many``), which the metrics observer times as
    ``clients.<context name>.<command>``. The span is tagged with the
    ``method`` and the command's arguments: ``key`` (bytes keys decoded as
    UTF-8), or ``keys`` (see :func:`make_keys_str`) and ``key_count``, and
    ``expire``, ``noreply``, ``cas``, ``delay`` where the command has them.
    Values are never recorded.

    ``get_multi``, ``set_multi`` and ``delete_multi`` are pymemcache's other
    names for ``get_many``, ``set_many`` and ``delete_many``, and are traced
    under those names. An exception (pymemcache's own, or the socket's)
    finishes the span as a failure and reaches the caller unchanged.

    :param context_name: The name of the context attribute; it prefixes the
        span names.
    :param server_span: The span that the commands are children of.
    :param pooled_client: The pooled client that runs the commands.
    """

    def __init__(self, context_name: str, server_span: Span, pooled_client: Any) -> None:
        self.context_name = context_name
        self.server_span = server_span
        self.pooled_client = pooled_client

    def _traced(self, command: str, tags: Mapping[str, Any], call: Callable[[], Any]) -> Any:
        """Run ``call`` in a child span named for the command, tagged with its arguments."""
        with self.server_span.make_child(f"{self.context_name}.{command}") as span:
            span.set_tag("method", command)
            for key, value in tags.items():
                span.set_tag(key, value)
            watch = _watch_of(self.pooled_client)
            if watch is None:
                return call()
            with watch.calls_of(self.server_span):
                return call()

    def _store(
        self,
        command: str,
        key: str | bytes,
        value: Any,
        expire: int,
        noreply: bool | None,
        flags: int | None,
    ) -> Any:
        """Run one of the storage commands that take a key, a value, an expiry and flags."""
        tags = {"key": _key_text(key), "expire": expire, "noreply": noreply}
        store = getattr(self.pooled_client, command)
        return self._traced(
            command,
            tags,
            lambda: store(key, value, expire=expire, noreply=noreply, flags=flags),
        )

    def close(self) -> None:
        """Close the pool's connections; the next command opens a new one."""
        self._traced("close", {}, self.pooled_client.close)

    def set(
        self,
        key: str | bytes,
        value: Any,
        expire: int = 0,
        noreply: bool | None = None,
        flags: int | None = None,
    ) -> Any:
        """Store ``value`` under ``key``."""
        return self._store("set", key, value, expire, noreply, flags)

    def set_many(
        self,
        values: Mapping[str | bytes, Any],
        expire: int = 0,
        noreply: bool | None = None,
        flags: int | None = None,
    ) -> Any:
        """Store several values; returns the keys that failed to be stored."""
        tags = {
            "key_count": len(values),
            "keys": make_keys_str(values.keys()),
            "expire": expire,
            "noreply": noreply,
        }
        return self._traced(
            "set_many",
            tags,
            lambda: self.pooled_client.set_many(
                values, expire=expire, noreply=noreply, flags=flags
            ),
        )

    set_multi = set_many

    def replace(
        self,
        key: str | bytes,
        value: Any,
        expire: int = 0,
        noreply: bool | None = None,
        flags: int | None = None,
    ) -> Any:
        """Store ``value`` under ``key`` only if the key is already set."""
        return self._store("replace", key, value, expire, noreply, flags)

    def append(
        self,
        key: str | bytes,
        value: Any,
        expire: int = 0,
        noreply: bool | None = None,
        flags: int | None = None,
    ) -> Any:
        """Add ``value`` at the end of the value of ``key``."""
        return self._store("append", key, value, expire, noreply, flags)

    def prepend(
        self,
        key: str | bytes,
        value: Any,
        expire: int = 0,
        noreply: bool | None = None,
        flags: int | None = None,
    ) -> Any:
        """Add ``value`` at the start of the value of ``key``."""
        return self._store("prepend", key, value, expire, noreply, flags)

    def cas(
        self,
        key: str | bytes,
        value: Any,
        cas: int | str | bytes,
        expire: int = 0,
        noreply: bool | None = None,
        flags: int | None = None,
    ) -> Any:
        """Store ``value`` under ``key`` if nobody changed it since :meth:`gets` gave ``cas``."""
        tags = {"key": _key_text(key), "cas": cas, "expire": expire, "noreply": noreply}
        return self._traced(
            "cas",
            tags,
            lambda: self.pooled_client.cas(
                key, value, cas, expire=expire, noreply=noreply, flags=flags
            ),
        )

    def get(self, key: str | bytes, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it is not set."""
        return self._traced(
            "get", {"key": _key_text(key)}, lambda: self.pooled_client.get(key, default)
        )

    def get_many(self, keys: Iterable[str | bytes]) -> Any:
        """A dict of the values of those ``keys`` that are set."""
        keys = list(keys)
        tags = {"key_count": len(keys), "keys": make_keys_str(keys)}
        return self._traced("get_many", tags, lambda: self.pooled_client.get_many(keys))

    get_multi = get_many

    def gets(self, key: str | bytes) -> Any:
        """The value of ``key`` and its cas token (for :meth:`cas`)."""
        return self._traced("gets", {"key": _key_text(key)}, lambda: self.pooled_client.gets(key))

    def gets_many(self, keys: Iterable[str | bytes]) -> Any:
        """A dict of ``(value, cas token)`` for those ``keys`` that are set."""
        keys = list(keys)
        tags = {"key_count": len(keys), "keys": make_keys_str(keys)}
        return self._traced("gets_many", tags, lambda: self.pooled_client.gets_many(keys))

    def delete(self, key: str | bytes, noreply: bool | None = None) -> Any:
        """Delete ``key``."""
        tags = {"key": _key_text(key), "noreply": noreply}
        return self._traced("delete", tags, lambda: self.pooled_client.delete(key, noreply=noreply))

    def delete_many(self, keys: Iterable[str | bytes], noreply: bool | None = None) -> Any:
        """Delete several keys."""
        keys = list(keys)
        tags = {"key_count": len(keys), "noreply": noreply, "keys": make_keys_str(keys)}
        return self._traced(
            "delete_many", tags, lambda: self.pooled_client.delete_many(keys, noreply=noreply)
        )

    delete_multi = delete_many

    def add(
        self,
        key: str | bytes,
        value: Any,
        expire: int = 0,
        noreply: bool | None = None,
        flags: int | None = None,
    ) -> Any:
        """Store ``value`` under ``key`` only if the key is not set."""
        return self._store("add", key, value, expire, noreply, flags)

    def incr(self, key: str | bytes, value: int, noreply: bool | None = False) -> Any:
        """Add ``value`` to the decimal number stored under ``key``; the new number."""
        tags = {"key": _key_text(key), "noreply": noreply}
        return self._traced(
            "incr", tags, lambda: self.pooled_client.incr(key, value, noreply=noreply)
        )

    def decr(self, key: str | bytes, value: int, noreply: bool | None = False) -> Any:
        """Subtract ``value`` from the decimal number stored under ``key``; the new number."""
        tags = {"key": _key_text(key), "noreply": noreply}
        return self._traced(
            "decr", tags, lambda: self.pooled_client.decr(key, value, noreply=noreply)
        )

    def touch(self, key: str | bytes, expire: int = 0, noreply: bool | None = None) -> Any:
        """Set a new expiry time on ``key``."""
        tags = {"key": _key_text(key), "expire": expire, "noreply": noreply}
        return self._traced(
            "touch", tags, lambda: self.pooled_client.touch(key, expire=expire, noreply=noreply)
        )

    def stats(self, *args: str) -> Any:
        """The server's statistics, as a dict."""
        return self._traced("stats", {}, lambda: self.pooled_client.stats(*args))

    def version(self) -> Any:
        """The server's version, as bytes.

        .. versionadded:: 0.31
        """
        return self._traced("version", {}, self.pooled_client.version)

    def flush_all(self, delay: int = 0, noreply: bool | None = None) -> Any:
        """Expire every key, after ``delay`` seconds."""
        tags = {"delay": delay, "noreply": noreply}
        return self._traced(
            "flush_all", tags, lambda: self.pooled_client.flush_all(delay=delay, noreply=noreply)
        )

    def quit(self) -> None:
        """Close the connection the command was sent on."""
        self._traced("quit", {}, self.pooled_client.quit)

    def shutdown(self, graceful: bool = False) -> None:
        """Ask the server to shut down (it must run with ``-A``).

        .. versionadded:: 0.31
        """
        self._traced(
            "shutdown", {"graceful": graceful}, lambda: self.pooled_client.shutdown(graceful)
        )

    def raw_command(self, command: str | bytes, end_tokens: str | bytes = b"\r\n") -> Any:
        """Send a command pymemcache has no method for; the reply, as bytes.

        .. versionadded:: 0.31
        """
        return self._traced(
            "raw_command", {}, lambda: self.pooled_client.raw_command(command, end_tokens)
        )
