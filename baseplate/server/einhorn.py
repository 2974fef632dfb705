"""Running as a worker of Einhorn, Stripe's socket manager.

Einhorn binds the listening sockets itself and starts each worker with them
open and named in the environment: ``EINHORN_FD_COUNT`` and ``EINHORN_FD_0``,
``EINHORN_FD_1``… (older releases: ``EINHORN_FDS``, space-separated). In
``-m manual`` mode it counts a worker as up only once the worker sends
``{"command": "worker:ack", "pid": PID}`` on its command socket, found at
``EINHORN_SOCK_PATH`` (or already open as ``EINHORN_SOCK_FD``). A process is
a worker only if ``EINHORN_MASTER_PID`` is its parent's pid, so a
subprocess of a worker does not take the sockets for its own.

``baseplate-serve`` does all of this itself. :func:`get_socket_count`,
:func:`get_socket` and :func:`ack_startup` are the original's helpers for
applications that run their own server under Einhorn.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping

ACK_TIMEOUT = 5.0


class EinhornError(Exception):
    """The Einhorn environment is inconsistent or the master cannot be told."""


class NotEinhornWorker(EinhornError):  # noqa: N818 - the original's name
    """This process was not started by an Einhorn master."""


def is_worker(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by an Einhorn master."""
    environ = os.environ if environ is None else environ
    master = environ.get("EINHORN_MASTER_PID", "")
    return master.isdigit() and int(master) == os.getppid()


def listener_fds(environ: Mapping[str, str] | None = None) -> list[int]:
    """The descriptors of the sockets Einhorn bound, in ``--bind`` order."""
    environ = os.environ if environ is None else environ
    try:
        if "EINHORN_FD_COUNT" in environ:
            count = int(environ["EINHORN_FD_COUNT"])
            return [int(environ[f"EINHORN_FD_{index}"]) for index in range(count)]
        return [int(fd) for fd in environ.get("EINHORN_FDS", "").split()]
    except (KeyError, ValueError) as exc:
        raise EinhornError(f"bad Einhorn socket environment: {exc}") from None


def encode_message(message: Mapping[str, object]) -> bytes:
    """One command-socket line: the message (JSON is YAML too) with ``%`` and newlines escaped."""
    text = json.dumps(message, separators=(",", ":"))
    return (text.replace("%", "%25").replace("\n", "%0A") + "\n").encode()


def send_ack(environ: Mapping[str, str] | None = None) -> None:
    """Tell the master this worker is ready (Einhorn's manual ACK)."""
    environ = os.environ if environ is None else environ
    line = encode_message({"command": "worker:ack", "pid": os.getpid()})
    path, fd = environ.get("EINHORN_SOCK_PATH"), environ.get("EINHORN_SOCK_FD")
    try:
        if path:
            command_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        elif fd:
            command_socket = socket.socket(fileno=int(fd))
        else:
            raise EinhornError("neither EINHORN_SOCK_PATH nor EINHORN_SOCK_FD is set")
        try:
            command_socket.settimeout(ACK_TIMEOUT)
            if path:
                command_socket.connect(path)
            command_socket.sendall(line)
        finally:
            command_socket.close()
    except (OSError, ValueError) as exc:
        raise EinhornError(f"cannot send the ACK to the Einhorn master: {exc}") from exc


def _require_worker() -> None:
    if not is_worker():
        raise NotEinhornWorker("not started by an Einhorn master (EINHORN_MASTER_PID)")


def get_socket_count() -> int:
    """How many sockets Einhorn bound for this worker.

    :raises NotEinhornWorker: if this process is not an Einhorn worker.
    """
    _require_worker()
    return len(listener_fds())


def get_socket(index: int = 0) -> socket.socket:
    """The ``index``-th socket Einhorn bound (``--bind`` order), as a new socket object.

    Its family is ``EINHORN_FD_FAMILY_<index>`` (``AF_INET`` when absent, as
    older Einhorn releases do not set it).

    :raises NotEinhornWorker: if this process is not an Einhorn worker.
    :raises IndexError: if there is no such socket.
    :raises EinhornError: if the environment names an unknown socket family.
    """
    _require_worker()
    fds = listener_fds()
    if not 0 <= index < len(fds):
        raise IndexError(f"Einhorn bound {len(fds)} socket(s); there is no socket {index}")
    family_name = os.environ.get(f"EINHORN_FD_FAMILY_{index}", "AF_INET")
    family = getattr(socket, family_name, None) if family_name.startswith("AF_") else None
    if not isinstance(family, int):
        raise EinhornError(f"EINHORN_FD_FAMILY_{index}: unknown socket family {family_name!r}")
    return socket.fromfd(fds[index], family, socket.SOCK_STREAM)


def ack_startup() -> None:
    """Tell the Einhorn master this worker has started (manual ACK mode).

    :raises NotEinhornWorker: if this process is not an Einhorn worker.
    :raises EinhornError: if the master cannot be told.
    """
    _require_worker()
    send_ack()
