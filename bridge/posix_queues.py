"""The rules and limits of POSIX message queues, and errors that name them.

Linux refuses a queue for a handful of reasons and says little about which:
a bad name, a size over the system's ``fs.mqueue`` limits, or a user whose
``RLIMIT_MSGQUEUE`` (the bytes all of its queues may hold, ``ulimit -q``) is
used up, which the kernel reports as "too many open files". The span queue
exporter and :mod:`baseplate.message_queue` both check names and explain
failures through this module, so an operator reads which limit to raise.
"""

from __future__ import annotations

import errno
import math
from pathlib import Path

#: Where Linux shows the largest ``max_messages`` an unprivileged process may ask for.
MSG_MAX_PATH = Path("/proc/sys/fs/mqueue/msg_max")

#: Where Linux shows the largest ``max_message_size`` an unprivileged process may ask for.
MSGSIZE_MAX_PATH = Path("/proc/sys/fs/mqueue/msgsize_max")

#: The longest a queue name may be after its leading slash (Linux's NAME_MAX).
MAX_NAME_LENGTH = 255

#: The longest wait, in seconds, a queue operation accepts; longer waits
#: overflow the kernel's clock arithmetic. ``inf`` (or None) waits for ever.
MAX_TIMEOUT = 1e18


def read_limit(path: Path) -> int | None:
    """The number in a ``/proc/sys/fs/mqueue`` file, or None where it can't be read."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def name_problem(name: str) -> str | None:
    """Why ``name`` can't name a queue, or None if it can.

    A name is a slash followed by 1 to 255 characters, none of them a slash
    or NUL.
    """
    if len(name) < 2 or not name.startswith("/") or "/" in name[1:] or "\0" in name:
        return "must be a slash followed by one or more characters, none of which is a slash"
    if len(name) - 1 > MAX_NAME_LENGTH:
        return f"is too long: {len(name) - 1} characters after the slash, over {MAX_NAME_LENGTH}"
    return None


def checked_timeout(timeout: float | None) -> float | None:
    """``timeout`` as a queue operation waits for it: None (for ever) or seconds.

    :raises ValueError: for NaN and for waits longer than :data:`MAX_TIMEOUT`.
    """
    if timeout is None or timeout == math.inf:
        return None
    if math.isnan(timeout):
        raise ValueError("timeout must be a number of seconds, not NaN")
    if timeout > MAX_TIMEOUT:
        raise ValueError(
            f"timeout of {timeout} seconds is over the limit of {MAX_TIMEOUT:g};"
            " use None or inf to wait for ever"
        )
    return timeout


def explain_os_error(name: str, error: OSError) -> str:
    """A one-line reason why the system would not create or open queue ``name``."""
    if error.errno == errno.EMFILE or "maximum number of files" in str(error):
        return (
            f"cannot create queue {name!r}: this user's space for message queues"
            " (RLIMIT_MSGQUEUE, `ulimit -q`) is used up by its other queues, or the"
            " process has too many open files (RLIMIT_NOFILE, `ulimit -n`)"
        )
    if error.errno == errno.ENOSPC:
        return (
            f"cannot create queue {name!r}: the system's limit on the number of queues"
            " (fs.mqueue.queues_max) is reached"
        )
    return f"cannot create queue {name!r}: {error}"
