"""Native locks for OpenTelemetry's spans in a gevent-patched process.

The SDK gives every span, its attributes and its event and link lists a
``threading.Lock`` of their own. Once gevent has patched ``threading``, those
are gevent locks, several times slower to make and to take than the native
ones; in a ``baseplate-serve`` process that made one traced span cost about
half again what it costs unpatched.

The SDK holds these locks only around in-memory updates of one span: nothing
inside them waits for I/O, so no greenlet switch can happen while one is held
and a native lock never blocks the event loop. :func:`use_native_span_locks`
gives the SDK's span modules native locks back; everything else in them still
sees the patched ``threading`` module.
"""

from __future__ import annotations

import threading
import types
from typing import Any

from bridge import _otel_internals

#: The modules whose per-span locks are made from the module-level name ``threading``
#: (a private detail of OpenTelemetry, fenced in ``bridge._otel_internals``).
SPAN_LOCK_MODULES = _otel_internals.SPAN_LOCK_MODULES


class _ThreadingWithNativeLock(types.ModuleType):
    """The (patched) ``threading`` module, except that ``Lock`` is the native lock."""

    def __init__(self, patched: types.ModuleType, native_lock: Any) -> None:
        super().__init__(patched.__name__, patched.__doc__)
        self.Lock = native_lock
        self._patched = patched

    def __getattr__(self, name: str) -> Any:
        return getattr(self._patched, name)


def use_native_span_locks() -> bool:
    """Give OpenTelemetry's spans native locks if gevent has patched ``threading``.

    Call it once, after ``gevent.monkey.patch_all()`` (``baseplate-serve``
    does). Spans created afterwards use native locks. Returns whether
    anything changed: without gevent's patches there is nothing to undo.
    """
    import importlib

    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a core dependency
        return False
    if not monkey.is_module_patched("threading"):
        return False
    native = _ThreadingWithNativeLock(threading, monkey.get_original("_thread", "allocate_lock"))
    changed = False
    for module_name in SPAN_LOCK_MODULES:
        module = importlib.import_module(module_name)
        if getattr(module, "threading", None) is threading:
            module.threading = native  # type: ignore[attr-defined]
            changed = True
    return changed
