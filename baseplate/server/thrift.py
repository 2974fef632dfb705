"""The gevent Thrift server for ``baseplate-serve``.

Configure it in the server section of the INI file::

    [server:main]
    factory = baseplate.server.thrift
    max_concurrency = 100
    stop_timeout = 30

The application factory returns a Thrift processor (a ``TProcessor``, such as
``MyService.ContextProcessor(handler)``). Connections speak THeader, and, as
THeader allows, clients using the framed or unframed binary or compact
protocols are understood and answered in their own dialect.

``max_concurrency`` bounds the number of connections served at once (a
connection counts for as long as the client keeps it open; further clients
wait to be accepted); by default there is no bound. ``stop_timeout`` is how
long a stopping server lets calls in progress finish (default 0: stop at
once); idle connections are closed straight away.

A connection that sends a malformed or oversized frame (more than
``max_frame_size`` bytes, by default Thrift's 16 MB), or that disconnects in
the middle of a call, is closed; other connections are not affected. A
malformed call is the client's fault and is logged at INFO, in one line; an
error after the call was read (answering it) is a bug of the server's and is
logged at ERROR with its traceback.

A client must send the rest of a call within ``read_timeout`` seconds of its
first byte (default 10), and may keep a connection idle between calls, or
leave an answer untaken, for ``idle_timeout`` seconds (default 600); 0 turns
either off. The
documentation of ``baseplate-serve`` says why the defaults are what they are.

.. versionadded:: 0.31
   The ``max_frame_size``, ``read_timeout`` and ``idle_timeout`` options.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
import zlib
from collections.abc import Mapping
from typing import Any

from gevent.server import StreamServer
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TException
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TTransport import (
    DEFAULT_MAX_FRAME_SIZE,
    HARD_MAX_FRAME_SIZE,
    TTransportBase,
    TTransportException,
)

from baseplate import config
from baseplate.server._graceful import (
    ConnectionTracker,
    GracefulStop,
    ServerStoppingError,
    make_pool,
)
from baseplate.server._options import parse_server_config
from baseplate.server._theader_guard import GuardedHeaderTransport, missing_hooks
from baseplate.server._turns import TurnTaker

__all__ = ["ALLOWED_CLIENT_TYPES", "make_server"]

logger = logging.getLogger(__name__)

ALLOWED_CLIENT_TYPES = (
    THeaderClientType.HEADERS,
    THeaderClientType.FRAMED_BINARY,
    THeaderClientType.UNFRAMED_BINARY,
    THeaderClientType.FRAMED_COMPACT,
    THeaderClientType.UNFRAMED_COMPACT,
)
"""The client dialects the server accepts: THeader and what it can detect."""

DEFAULT_READ_TIMEOUT = 10.0
"""Seconds a client may take to send the rest of a call once it sent its first byte."""

DEFAULT_IDLE_TIMEOUT = 600.0
"""Seconds a connection may wait between calls; longer than Baseplate's pools keep one."""

#: How much one read from a client's socket takes at most: a whole call, usually.
_READ_SIZE = 65536


class _ClientSocketError(TTransportException):  # type: ignore[misc]  # thrift is untyped
    """The client's socket closed, failed or timed out: the client's doing, not a bug of ours."""


class _SocketTransport(TTransportBase):  # type: ignore[misc]  # thrift is untyped
    """A Thrift transport over a connected (gevent) socket, reading ahead.

    A call usually arrives in one piece, so one ``recv`` of up to
    :data:`_READ_SIZE` bytes takes all of it, and the THeader transport's
    reads (the frame's length, then the frame) are served from what was read,
    as 0.30.9's buffered transport did; bytes of a next call read with it
    wait for that call. Reads must finish by ``deadline`` (a
    :func:`time.monotonic` time), when set, so that a client cannot hold its
    connection, and its slot of ``max_concurrency``, by sending part of a
    call and then nothing.
    """

    def __init__(self, sock: socket.socket, idle_timeout: float | None = None) -> None:
        self.sock = sock
        self.idle_timeout = idle_timeout
        self.read_timeout: float | None = None
        self.deadline: float | None = None
        self._buffer = b""
        self._offset = 0
        # The socket's timeout, as last set here: setting it costs a call
        # into gevent, which most calls can skip.
        self._timeout: float | None = -1.0

    def _set_timeout(self, timeout: float | None) -> None:
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def wait_for_call(self) -> bool:
        """Wait for the first bytes of the next call; False if the client left.

        :raises TimeoutError: nothing came within ``idle_timeout``.
        """
        if self._offset < len(self._buffer):
            return True  # sent with the previous call
        self._set_timeout(self.idle_timeout)
        self._buffer = self.sock.recv(_READ_SIZE)
        self._offset = 0
        return bool(self._buffer)

    def start_call(self, read_timeout: float | None) -> None:
        """The first byte of a call has come: the rest must come within ``read_timeout``."""
        self.read_timeout = read_timeout
        self.deadline = None if read_timeout is None else time.monotonic() + read_timeout

    def isOpen(self) -> bool:  # noqa: N802 - the Thrift transport interface
        return self.sock.fileno() >= 0

    def _time_left(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:  # a timeout of 0 would make recv non-blocking, not time out
            raise TimeoutError
        return left

    def read(self, sz: int) -> bytes:
        if sz <= 0:
            return b""
        offset = self._offset
        buffered = len(self._buffer) - offset
        if buffered:
            end = offset + min(sz, buffered)
            self._offset = end
            return self._buffer[offset:end]
        try:
            self._set_timeout(self._time_left())
            data = self.sock.recv(max(sz, _READ_SIZE))
        except TimeoutError:
            raise _ClientSocketError(
                TTransportException.TIMED_OUT,
                f"the call was not complete within read_timeout ({self.read_timeout:g}s)",
            ) from None
        except OSError as exc:
            raise _ClientSocketError(TTransportException.UNKNOWN, str(exc)) from exc
        if not data:
            raise _ClientSocketError(TTransportException.END_OF_FILE, "client disconnected")
        if len(data) > sz:
            self._buffer = data
            self._offset = sz
            return data[:sz]
        return data

    def readAll(self, sz: int) -> bytes:  # noqa: N802 - the Thrift transport interface
        """Read exactly ``sz`` bytes, in linear time (Thrift's own concatenates, quadratically).

        Nothing for a size of zero or less (a garbage frame length): the
        decoding fails on what it lacks, as a client's error.
        """
        if sz <= 0:
            return b""
        first = self.read(sz)
        if len(first) == sz:
            return first
        chunks = [first]
        left = sz - len(first)
        while left > 0:
            chunk = self.read(left)
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def write(self, buf: bytes) -> None:
        # An answer the client does not take for as long as a connection may
        # idle is as good as a client gone. The same timeout as the wait for
        # the next call: most calls then set none.
        try:
            self._set_timeout(self.idle_timeout)
            self.sock.sendall(buf)
        except OSError as exc:
            raise _ClientSocketError(TTransportException.UNKNOWN, str(exc)) from exc

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.sock.close()


class _ServerProtocol(THeaderProtocol):  # type: ignore[misc]  # thrift is untyped
    """The server's protocol: guarded THeader parsing, and it knows when a call is read.

    Whether the call was read tells a client's garbage (an error while
    reading: the client's fault, logged at INFO) from a bug of the server's
    (an error later, while handling or answering: logged at ERROR).
    """

    def __init__(self, transport: _SocketTransport, max_frame_size: int) -> None:
        header_transport = GuardedHeaderTransport(transport, ALLOWED_CLIENT_TYPES)
        header_transport.set_max_frame_size(max_frame_size)
        super().__init__(header_transport, ALLOWED_CLIENT_TYPES)
        self.call_read = False

    def readMessageEnd(self) -> Any:  # noqa: N802 - the Thrift protocol interface
        result = super().readMessageEnd()
        self.call_read = True
        return result


class ThriftServer(GracefulStop, StreamServer):  # type: ignore[misc]  # gevent is untyped
    """A gevent stream server that runs a Thrift processor on each connection.

    :meth:`stop` with no timeout waits for the configured ``stop_timeout``.
    """

    def __init__(
        self,
        listener: socket.socket,
        processor: Any,
        *,
        max_concurrency: int | None = None,
        stop_timeout: float = 0.0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.processor = processor
        self.tracker = ConnectionTracker()
        self.handler_pool = make_pool(max_concurrency)
        self.graceful_stop_timeout = stop_timeout
        self.max_frame_size = max_frame_size
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        for hook in missing_hooks():
            logger.warning(
                "the installed thrift has no %s: THeader frames are parsed without"
                " bounds on their header counts",
                hook,
            )
        super().__init__(listener, self.handle_connection, spawn=self.handler_pool)

    def handle_connection(self, sock: socket.socket, address: Any) -> None:
        """Serve calls on one connection until the client leaves, errs or idles too long."""
        transport = _SocketTransport(sock, self.idle_timeout)
        protocol = _ServerProtocol(transport, self.max_frame_size)
        turns = TurnTaker()
        try:
            while self._wait_for_call(transport, address):
                transport.start_call(self.read_timeout)
                protocol.call_read = False
                self.processor.process(protocol, protocol)
                if self.tracker.stopping:
                    break
                turns.request_done()
        except Exception as exc:
            _log_closing(address, exc, reading=not protocol.call_read)
        finally:
            sock.close()

    def _wait_for_call(self, transport: _SocketTransport, address: Any) -> bool:
        """Wait, idle, for the first bytes of the next call; False if the client left or idled."""
        try:
            with self.tracker.idle():
                return transport.wait_for_call()
        except TimeoutError:
            logger.debug("closing the connection from %s: idle for %ss", address, self.idle_timeout)
            return False
        except (ServerStoppingError, OSError):
            return False


_PROTOCOL_ERRORS = (
    TException,
    EOFError,  # a frame that ends before what it announces
    ValueError,  # negative lengths, UnicodeDecodeError
    OverflowError,  # lengths beyond what Python can index
    TypeError,  # Thrift's C decoder on an unknown field type
    struct.error,  # frames too short for their fixed fields
    zlib.error,  # a zlib transform over bytes that are not zlib
)
"""What Thrift's decoding raises on bytes that are not a valid call.

Raised while a call is read, these are the client's garbage; raised later
(answering), they are bugs of the server's.
"""


def _log_closing(address: Any, exc: Exception, *, reading: bool) -> None:
    """Log why a connection is closed: a client's doing at INFO or below, a bug at ERROR."""
    if isinstance(exc, _ClientSocketError):
        if exc.type == TTransportException.END_OF_FILE:
            logger.debug("client %s disconnected in the middle of a call", address)
        else:
            logger.info("closing the connection from %s: %s", address, exc)
    elif reading and isinstance(exc, _PROTOCOL_ERRORS):
        logger.info(
            "closing the connection from %s: malformed request: %s", address, _describe(exc)
        )
    else:
        logger.error(
            "closing the connection from %s after an unexpected error", address, exc_info=exc
        )


def _describe(exc: Exception) -> str:
    """``module.Class: message`` in one line, so that ``struct.error`` is not just ``error``."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__.rpartition('.')[2]}.{name}"
    return f"{name}: {exc}"


def _frame_size(text: str) -> int:
    value = config.at_least(1)(text)
    if value >= HARD_MAX_FRAME_SIZE:
        raise ValueError(f"must be less than {HARD_MAX_FRAME_SIZE}")
    return value


def _timeout(text: str) -> float | None:
    """A timeout in seconds or as a timespan, where 0 means none."""
    return config.Seconds(text) or None


def make_server(
    server_config: Mapping[str, str], listener: socket.socket, app: Any
) -> ThriftServer:
    """Make a gevent Thrift server running the processor ``app`` on ``listener``.

    :param server_config: The options of the server section.
    :raises baseplate.config.ConfigurationError: An option is invalid.
    :raises TypeError: ``app`` is not a Thrift processor.
    """
    if not callable(getattr(app, "process", None)):
        raise TypeError(f"the application must be a Thrift processor, not {type(app).__name__}")
    cfg = parse_server_config(
        server_config,
        {
            "max_frame_size": config.Optional(_frame_size, default=DEFAULT_MAX_FRAME_SIZE),
            "read_timeout": config.Optional(_timeout, default=DEFAULT_READ_TIMEOUT),
            "idle_timeout": config.Optional(_timeout, default=DEFAULT_IDLE_TIMEOUT),
        },
    )
    return ThriftServer(
        listener,
        app,
        max_concurrency=cfg.max_concurrency,
        stop_timeout=cfg.stop_timeout,
        max_frame_size=cfg.max_frame_size,
        read_timeout=cfg.read_timeout,
        idle_timeout=cfg.idle_timeout,
    )
