"""A gevent-friendly POSIX message queue.

A :class:`MessageQueue` is a named, bounded queue of byte strings in the
kernel, shared by every process that opens the same name. The trace and event
recorders put records on one; the sidecar publishers get them off::

    queue = MessageQueue("/events", max_messages=10, max_message_size=8192)
    queue.put(b"hello")
    queue.get()  # b"hello"

Waiting for a message (or for room) never blocks a gevent hub: inside a
process that uses gevent, the queue waits for its descriptor to become ready
through the hub, so other greenlets keep running. Elsewhere it blocks the
calling thread in the kernel. A ``timeout`` of zero never waits at all.

The module also runs as a command-line tool::

    python -m baseplate.message_queue --read /queue
    echo hello! | python -m baseplate.message_queue --write /queue
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import posix_ipc

from bridge.posix_queues import (
    MSG_MAX_PATH,
    MSGSIZE_MAX_PATH,
    checked_timeout,
    explain_os_error,
    name_problem,
    read_limit,
)

__all__ = [
    "InvalidParametersError",
    "MessageQueue",
    "MessageQueueError",
    "MessageQueueOSError",
    "MessageTooLargeError",
    "TimedOutError",
    "main",
]

# The longest one wait for the descriptor lasts; select and gevent's timers
# overflow on the longest timeouts a queue accepts (MAX_TIMEOUT), so such a
# wait is made of several.
_LONGEST_SINGLE_WAIT = 86400.0

# One try at a transfer on the non-blocking descriptor: raises
# posix_ipc.BusyError at once if the queue is empty (or full).
_Attempt: TypeAlias = Callable[[], Any]


class MessageQueueError(Exception):
    """Base exception for message queue related errors."""


class TimedOutError(MessageQueueError):
    """Raised when a message queue operation times out."""

    def __init__(self, message: str = "timed out waiting for the message queue") -> None:
        super().__init__(message)


class InvalidParametersError(MessageQueueError, ValueError):
    """The queue cannot be opened as asked: a malformed name, or sizes over a limit.

    The message says which value is wrong and, for a system limit, which
    setting caps it and how to raise it. It is also a :exc:`ValueError`, which
    is what the original raised.

    .. versionadded:: 0.31
    """

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        #: The sysctl that caps the rejected value (``fs.mqueue.msg_max`` or
        #: ``fs.mqueue.msgsize_max``), or None when no system limit is involved.
        self.setting = setting


class MessageTooLargeError(MessageQueueError, ValueError):
    """A message is longer than the queue's ``max_message_size``.

    It is also a :exc:`ValueError`, which is what the original raised.

    .. versionadded:: 0.31
    """

    def __init__(self, size: int, max_message_size: int) -> None:
        super().__init__(
            f"a message of {size} bytes does not fit a queue whose"
            f" max_message_size is {max_message_size}"
        )
        #: The length of the rejected message, in bytes.
        self.size = size
        #: The largest message the queue takes, in bytes.
        self.max_message_size = max_message_size


class MessageQueueOSError(MessageQueueError, OSError):
    """The system would not create the queue (its message-queue space or open
    files are used up).

    It is an :exc:`OSError` too, as in the original, so code that catches
    that still does.
    """


class _WaitTimedOutError(Exception):
    """Raised by gevent when a wait for the queue's descriptor times out."""


def _explain_invalid_parameters(
    name: str, max_messages: int, max_message_size: int
) -> InvalidParametersError:
    """Work out why the kernel refused to create a queue (it only says EINVAL)."""
    if max_messages < 1:
        return InvalidParametersError(f"max_messages must be at least 1, not {max_messages}")
    if max_message_size < 1:
        return InvalidParametersError(
            f"max_message_size must be at least 1, not {max_message_size}"
        )
    for value, parameter, path in (
        (max_messages, "max_messages", MSG_MAX_PATH),
        (max_message_size, "max_message_size", MSGSIZE_MAX_PATH),
    ):
        limit = read_limit(path)
        if limit is not None and value > limit:
            setting = "fs.mqueue." + path.name
            return InvalidParametersError(
                f"{parameter}={value} is over the system limit of {limit} ({path});"
                f" a privileged user can raise it with `sysctl -w {setting}={value}`"
                f" (or `echo {value} > {path}`)",
                setting=setting,
            )
    return InvalidParametersError(
        f"the system refused to create queue {name!r} with max_messages={max_messages}"
        f" and max_message_size={max_message_size}; see the limits under {MSG_MAX_PATH.parent}"
    )


def _check_name(name: str) -> None:
    problem = name_problem(name)
    if problem is not None:
        raise InvalidParametersError(f"queue name {name!r} {problem}")


def _gevent_hub_in_use() -> bool:
    """Whether waiting here must go through a gevent hub instead of blocking.

    That is the case when gevent has monkey-patched the process or already
    runs a hub in this thread. A thread that never touched gevent (a worker
    thread of an unpatched program) blocks in the kernel, without a hub.
    """
    if "gevent" not in sys.modules:
        return False
    import gevent.monkey

    if gevent.monkey.is_anything_patched():
        return True
    try:
        from gevent._hub_local import get_hub_if_exists
    except ImportError:  # a gevent that moved its internals: assume the worst
        return True
    return get_hub_if_exists() is not None


def _wait_until_ready(fd: int, for_writing: bool, timeout: float | None) -> None:
    """Wait until ``fd`` is ready or ``timeout`` passes (through gevent's hub if in use)."""
    if timeout is not None:
        timeout = min(timeout, _LONGEST_SINGLE_WAIT)
    if _gevent_hub_in_use():
        from gevent.socket import wait_read, wait_write

        wait = wait_write if for_writing else wait_read
        with contextlib.suppress(_WaitTimedOutError):
            wait(fd, timeout=timeout, timeout_exc=_WaitTimedOutError())
        return
    watched = [fd]
    select.select([] if for_writing else watched, watched if for_writing else [], [], timeout)


class MessageQueue:
    """A gevent-friendly (but not required) inter process message queue.

    ``name`` should be a string of up to 255 characters consisting of an
    initial slash, followed by one or more characters, none of which are
    slashes. The queue is created with room for ``max_messages`` messages of
    up to ``max_message_size`` bytes each if it does not exist yet; if it
    does, it is opened as it is and the sizes given here are ignored
    (:attr:`max_messages` and :attr:`max_message_size` tell the real ones).

    Note: This relies on POSIX message queues being available and
    select(2)-able like other file descriptors. Not all operating systems
    support this.

    :raises InvalidParametersError: if the name is malformed or a size is
        over the system's limits (the message says which, and how to raise
        it).
    :raises MessageQueueError: if the queue cannot be opened for another
        reason: no permission, or the user's space for queues is used up.
    """

    def __init__(self, name: str, max_messages: int, max_message_size: int) -> None:
        _check_name(name)
        try:
            self._queue = posix_ipc.MessageQueue(
                name,
                flags=posix_ipc.O_CREAT,
                mode=0o644,
                max_messages=max_messages,
                max_message_size=max_message_size,
            )
        except ValueError as exc:
            raise _explain_invalid_parameters(name, max_messages, max_message_size) from exc
        except posix_ipc.PermissionsError as exc:
            raise MessageQueueError(f"no permission to open queue {name!r}: {exc}") from exc
        except OSError as exc:
            raise MessageQueueOSError(explain_os_error(name, exc)) from exc
        # Every transfer is a non-blocking try, and waiting is done on the
        # descriptor (see _transfer).
        self._queue.block = False
        #: The name of the queue.
        self.name = name
        self._closed = False

    @property
    def max_messages(self) -> int:
        """How many messages the queue holds before :meth:`put` has to wait.

        .. versionadded:: 0.31
        """
        self._check_open()
        value: int = self._queue.max_messages
        return value

    @property
    def max_message_size(self) -> int:
        """The largest message the queue takes, in bytes.

        .. versionadded:: 0.31
        """
        self._check_open()
        value: int = self._queue.max_message_size
        return value

    def _check_open(self) -> None:
        if self._closed:
            raise MessageQueueError(f"queue {self.name!r} is closed")

    def get(self, timeout: float | None = None) -> bytes:
        """Read a message from the queue.

        :param timeout: If the queue is empty, the call will block up to
            ``timeout`` seconds or forever if ``None`` (or ``inf``); ``0``
            never blocks.
        :raises TimedOutError: The queue was empty for the allowed duration
            of the call.
        :raises InvalidParametersError: ``timeout`` is NaN or longer than
            :data:`bridge.posix_queues.MAX_TIMEOUT`.
        """
        message: bytes = self._transfer(lambda: self._queue.receive()[0], timeout, False)
        return message

    def put(self, message: bytes | str, timeout: float | None = None) -> None:
        """Add a message to the queue.

        A :class:`str` is sent encoded as UTF-8.

        :param timeout: If the queue is full, the call will block up to
            ``timeout`` seconds or forever if ``None`` (or ``inf``); ``0``
            never blocks.
        :raises TimedOutError: The queue was full for the allowed duration of
            the call.
        :raises InvalidParametersError: ``timeout`` is NaN or longer than
            :data:`bridge.posix_queues.MAX_TIMEOUT`.
        :raises MessageTooLargeError: The message is longer than
            :attr:`max_message_size`.
        """
        data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        if len(data) > self.max_message_size:
            raise MessageTooLargeError(len(data), self.max_message_size)
        self._transfer(lambda: self._queue.send(data), timeout, True)

    def _transfer(self, attempt: _Attempt, timeout: float | None, for_writing: bool) -> Any:
        """Run ``attempt`` until it succeeds or ``timeout`` runs out.

        The descriptor is non-blocking, so a full (or empty) queue is refused
        at once: a ``timeout`` of zero costs one system call, with no kernel
        timer. Otherwise the wait is for the descriptor to become ready (or
        the time to run out), after which another process may still get
        there first: either way the loop tries again.
        """
        self._check_open()
        try:
            timeout = checked_timeout(timeout)
        except ValueError as exc:
            raise InvalidParametersError(str(exc)) from None
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                return attempt()
            except posix_ipc.BusyError:
                pass
            except posix_ipc.SignalError:
                pass  # signal handlers have run by now; try again, as PEP 475 does
            except posix_ipc.ExistentialError as exc:
                raise MessageQueueError(f"queue {self.name!r} is no longer open") from exc
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                state = "full" if for_writing else "empty"
                raise TimedOutError(f"queue {self.name!r} stayed {state} for {timeout} seconds")
            _wait_until_ready(self._queue.mqd, for_writing, remaining)

    def unlink(self) -> None:
        """Remove the queue from the system.

        The queue will not leave until the last active user closes it.
        Unlinking a queue that is already gone does nothing.
        """
        with contextlib.suppress(posix_ipc.ExistentialError):
            posix_ipc.unlink_message_queue(self.name)

    def close(self) -> None:
        """Close the queue, freeing related resources.

        This must be called explicitly if queues are created/destroyed on the
        fly. It is not automatically called when the object is reclaimed by
        Python. Closing twice does nothing; any other use after closing raises
        :exc:`MessageQueueError`.
        """
        if not self._closed:
            self._closed = True
            self._queue.close()

    def __enter__(self) -> MessageQueue:
        """Use the queue in a ``with`` block, which closes it at the end.

        .. versionadded:: 0.31
        """
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MessageQueue {self.name!r}{' closed' if self._closed else ''}>"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m baseplate.message_queue",
        description="Read messages from, or write messages to, a POSIX message queue."
        " The queue is created if it does not exist.",
    )
    parser.add_argument("queue", help="the name of the queue, e.g. /events")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--read",
        action="store_const",
        dest="mode",
        const="read",
        help="read messages from the queue forever, printing each on its own line",
    )
    mode.add_argument(
        "--write",
        action="store_const",
        dest="mode",
        const="write",
        help="read lines from standard input and put each on the queue as a message",
    )
    parser.add_argument(
        "--max-messages",
        type=int,
        default=10,
        metavar="N",
        help="if the queue is created, the most messages it holds (default: %(default)s)",
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=8192,
        metavar="BYTES",
        help="if the queue is created, the largest message it takes (default: %(default)s)",
    )
    return parser


def _read(queue: MessageQueue) -> None:
    output = sys.stdout.buffer
    while True:
        output.write(queue.get() + b"\n")
        output.flush()


def _write(queue: MessageQueue) -> None:
    for line in sys.stdin.buffer:
        queue.put(line.rstrip(b"\n"))


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command-line tool (``python -m baseplate.message_queue``).

    ``--read`` prints every message as it arrives, one per line, until
    interrupted; ``--write`` puts every line of standard input (without its
    newline) on the queue, waiting when the queue is full.

    .. versionadded:: 0.31
       The reference documents the command, not this function.
    """
    args = _build_parser().parse_args(argv)
    try:
        with MessageQueue(args.queue, args.max_messages, args.max_message_size) as queue:
            if args.mode == "read":
                _read(queue)
            else:
                _write(queue)
    except MessageQueueError as exc:
        print(f"{args.queue}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader of our output went away (``... --read /q | head``).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
