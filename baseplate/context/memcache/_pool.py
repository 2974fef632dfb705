"""The connection pool behind :func:`~baseplate.context.memcache.pool_from_config`.

It is pymemcache's own :class:`~pymemcache.client.base.PooledClient` with a
pool that differs from pymemcache's in two ways:

* A connection is destroyed when its command is interrupted by an exception
  that is not an :class:`Exception` (``gevent.Timeout``,
  :exc:`KeyboardInterrupt`). pymemcache's pool neither returns nor destroys
  it then, so each such interruption would hold one of ``max_pool_size``
  slots for good.
* An idle connection that the server closed (memcached restarted) is
  dropped when it is next checked out, so the first command after a restart
  opens a new connection rather than failing on the dead one.

Every command lends and takes back its connection in
:meth:`ConnectionPool.get_and_release`: the one place to watch checkouts.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

# pymemcache ships no type information.
from pymemcache.client.base import PooledClient  # type: ignore[import-untyped]
from pymemcache.pool import ObjectPool  # type: ignore[import-untyped]

from baseplate.context.pool_watch import PoolWatch

#: What pymemcache's pool takes for "no bound" when given no size.
_UNBOUNDED = 2**31


class ConnectionPool(ObjectPool):  # type: ignore[misc]
    """pymemcache's object pool of clients, each client one connection.

    Its :attr:`watch` is told of every checkout and return (see
    :mod:`baseplate.context.pool_watch`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Leaks and gauges of this pool, per request.
        self.watch = PoolWatch(size=self._bound, in_use=lambda: len(self.used))

    def _bound(self) -> int | None:
        """The most clients the pool lends at once; None when it has no bound."""
        return None if self.max_size >= _UNBOUNDED else int(self.max_size)

    @contextlib.contextmanager
    def get_and_release(self, destroy_on_fail: bool = False) -> Iterator[Any]:
        """Lend a client for one command and take it back after.

        Every command of :class:`PooledClient` runs in this block. A client
        whose command raised is destroyed (pymemcache's commands ask for
        that with ``destroy_on_fail``), and so is one whose command was
        interrupted by any other exception: a reply may still be on its way.
        """
        client = self.check_out()
        try:
            yield client
        except BaseException as exc:
            self.check_in(client, reusable=isinstance(exc, Exception) and not destroy_on_fail)
            raise
        self.check_in(client, reusable=True)

    def check_out(self) -> Any:
        """Take an idle client, or make one; idle clients whose server hung up are dropped."""
        client = self.get()
        # Each pass destroys an idle client; a new one has no socket yet.
        while _hung_up(client):
            self.destroy(client)
            client = self.get()
        self.watch.checked_out(client)
        return client

    def check_in(self, client: Any, reusable: bool) -> None:
        """Take a lent client back: idle again if ``reusable``, else closed.

        A client the command already destroyed (``quit``) is left alone.
        """
        self.watch.checked_in(client)
        if reusable:
            self.release(client)
        else:
            self.destroy(client)


def _hung_up(client: Any) -> bool:
    """Whether an idle client's connection was closed, or has bytes nobody asked for.

    Peeks at the socket without waiting, also under gevent (a socket with
    timeout 0 never waits).
    """
    sock: socket.socket | None = client.sock
    if sock is None:
        return False
    timeout = sock.gettimeout()
    try:
        sock.settimeout(0)
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False  # nothing to read: the connection is idle, as it should be
    except OSError:
        return True  # reset by the server
    finally:
        sock.settimeout(timeout)
    return True  # end of file, or a stray byte before any command


class BaseplatePooledClient(PooledClient):  # type: ignore[misc]
    """A :class:`~pymemcache.client.base.PooledClient` whose pool is a :class:`ConnectionPool`.

    It takes the same arguments.
    """

    def __init__(
        self,
        server: Any,
        *,
        max_pool_size: int | None = None,
        pool_idle_timeout: float = 0,
        lock_generator: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            server,
            max_pool_size=max_pool_size,
            pool_idle_timeout=pool_idle_timeout,
            lock_generator=lock_generator,
            **kwargs,
        )
        self.client_pool = ConnectionPool(
            self._create_client,
            after_remove=_close,
            max_size=max_pool_size,
            idle_timeout=pool_idle_timeout,
            lock_generator=lock_generator,
        )


def _close(client: Any) -> None:
    client.close()
