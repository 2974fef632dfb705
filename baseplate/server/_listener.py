"""The listening socket: bound from ``--bind``, or inherited from a parent.

A parent passes a socket by leaving its descriptor open across ``exec`` and
naming it in the environment: Einhorn does so (see
:mod:`baseplate.server.einhorn`), and so does ``--reload`` when it re-executes
the server, so the address (even a port picked by the kernel) survives the
restart.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from baseplate import config

DEFAULT_BIND = "127.0.0.1:9090"
BACKLOG = 128
INHERITED_FD_ENV = "BASEPLATE_SERVE_LISTEN_FD"
"""Set by ``--reload`` to the descriptor of the listener it hands to its next self."""


def parse_bind(text: str) -> config.EndpointConfiguration:
    """``host:port``, ``[v6 host]:port`` or the path of a Unix domain socket.

    Text with no colon is taken as a socket path even without a slash.
    """
    if ":" not in text and text:
        return config.EndpointConfiguration(socket.AF_UNIX, text)
    return config.Endpoint(text)


def bind_listener(endpoint: config.EndpointConfiguration) -> socket.socket:
    """A new socket bound to ``endpoint`` and listening.

    A stale Unix socket file at the path (one nobody listens on) is removed
    first; a live one is an error, as is a path that is not a socket.
    """
    sock = socket.socket(endpoint.family, socket.SOCK_STREAM)
    try:
        if isinstance(endpoint.address, str):
            _remove_stale_socket_file(endpoint.address)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(endpoint.address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale_socket_file(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"another process is listening on {path}")


def listener_from_fd(fd: int) -> socket.socket:
    """The listening socket open as descriptor ``fd``; its family is detected."""
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    return sock


def describe(sock: socket.socket) -> str:
    """The address a listener is bound to, as ``host:port`` or a path."""
    address = sock.getsockname()
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)
