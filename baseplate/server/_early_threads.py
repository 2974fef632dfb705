"""Threads that were already running when gevent patched the process.

``opentelemetry-instrument`` sets the OpenTelemetry SDK up in
``sitecustomize``, before ``baseplate-serve`` patches the process with gevent,
so the SDK's export workers (the batch span and log record processors, the
periodic metric reader) are native threads by then. They keep working: they
export off the event loop, each through a gevent hub of its own, and the SDK
flushes them when the process exits. But a thread that ends removes itself
from ``threading``'s registry by ``threading.get_ident()``, which gevent has
replaced; for these threads the lookup fails, and each one printed
"Exception ignored in thread started by ... KeyError" as the server exited.
"""

from __future__ import annotations

import functools
import logging
import threading

logger = logging.getLogger(__name__)


def let_early_threads_end_cleanly() -> list[str]:
    """Have the threads started before gevent's patches unregister by their native ident.

    Call it after ``gevent.monkey.patch_all()``. Returns the names of the
    threads it changed (none when gevent has not patched ``threading``).
    """
    from gevent import monkey

    registry = getattr(threading, "_active", None)
    if not monkey.is_module_patched("threading") or not isinstance(registry, dict):
        return []
    main = threading.main_thread()
    changed = []
    for ident, thread in list(registry.items()):
        if thread is main or ident != thread.ident or not hasattr(thread, "_delete"):
            continue
        # CPython's Thread._bootstrap_inner ends with self._delete().
        thread._delete = functools.partial(registry.pop, ident, None)
        changed.append(thread.name)
    if changed:
        logger.debug("threads already running at start-up: %s", ", ".join(changed))
    return changed
