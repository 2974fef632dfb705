"""``SIGUSR1``: log the stack of every thread and greenlet, to debug hangs."""

from __future__ import annotations

import logging
import signal
from typing import Any

logger = logging.getLogger("baseplate.server")


def log_all_stacks() -> None:
    """Log, as one WARNING record, the stacks of all threads and greenlets."""
    import gevent.util

    report = "\n".join(gevent.util.format_run_info(thread_stacks=True, greenlet_stacks=True))
    logger.warning("stacks of every thread and greenlet (SIGUSR1):\n%s", report)


def install_stack_dump_handler() -> Any:
    """Run :func:`log_all_stacks` on ``SIGUSR1``, in the event loop; returns the handle."""
    import gevent

    return gevent.signal_handler(signal.SIGUSR1, log_all_stacks)
