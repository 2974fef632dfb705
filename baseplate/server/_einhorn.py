"""Running as a worker of Einhorn, Stripe's socket manager.

Einhorn binds the listening sockets itself and starts each worker with them
open and named in the environment: ``EINHORN_FD_COUNT`` and ``EINHORN_FD_0``,
``EINHORN_FD_1``… (older releases: ``EINHORN_FDS``, space-separated). In
``-m manual`` mode it counts a worker as up only once the worker sends
``{"command": "worker:ack", "pid": PID}`` on its command socket, found at
``EINHORN_SOCK_PATH`` (or already open as ``EINHORN_SOCK_FD``). A process is
a worker only if ``EINHORN_MASTER_PID`` is its parent's pid, so a
subprocess of a worker does not take the sockets for its own.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping

ACK_TIMEOUT = 5.0


class EinhornError(Exception):
    """The Einhorn environment is inconsistent or the master cannot be told."""


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
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as command_socket:
                command_socket.settimeout(ACK_TIMEOUT)
                command_socket.connect(path)
                command_socket.sendall(line)
        elif fd:
            with socket.socket(fileno=int(fd)) as command_socket:
                command_socket.settimeout(ACK_TIMEOUT)
                command_socket.sendall(line)
        else:
            raise EinhornError("neither EINHORN_SOCK_PATH nor EINHORN_SOCK_FD is set")
    except (OSError, ValueError) as exc:
        raise EinhornError(f"cannot send the ACK to the Einhorn master: {exc}") from exc
