"""The end of the process: telemetry gets a bounded time to leave, then is dropped.

Spans and error reports wait in memory until a background thread sends
them. When the process ends, whatever is waiting is sent once more, but a
collector that accepts connections and never answers would hold the exit
for as long as its client's timeouts and retries add up to (OpenTelemetry's
OTLP exporter: 10 seconds per batch, more with retries), long after an
orchestrator has lost patience. So the end of the process has a deadline:
what cannot be sent by then is dropped, counted and logged, and the
process exits.

Telemetry libraries register a *hook* (:func:`add_hook`) that sends what is
waiting and stops; each reads :func:`time_left` to bound itself.
:func:`shutdown_telemetry` runs the hooks, each in a thread of its own so
that one that overstays cannot hold the others or the exit: it is what
``baseplate-serve`` calls once the server stopped, with what is left of
``stop_timeout``, and what runs at interpreter exit, with
:data:`EXIT_TIMEOUT`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from bridge._state import state

logger = logging.getLogger(__name__)

#: Seconds telemetry may take when the process exits with no deadline set
#: (scripts, tests, an exit that skipped ``baseplate-serve``'s stop), and
#: what a shutdown called outside :func:`shutdown_telemetry` allows itself.
#: sentry-sdk's own default ``shutdown_timeout`` is the same.
EXIT_TIMEOUT = 2.0
#: The least time telemetry gets, however little of a stop timeout is left:
#: enough for a working collector to take the last batch.
MIN_TIMEOUT = 1.0
#: How long past the deadline the hooks are waited for, to drop, count and
#: log what they could not send.
WRAP_UP = 0.25

Hook = Callable[[], None]

# Guards state.shutdown_hooks.
_lock = threading.Lock()


def add_hook(hook: Hook) -> None:
    """Have ``hook`` run (once) when the process's telemetry is shut down.

    Adding a hook that is already waiting does nothing. The first hook also
    registers the shutdown at interpreter exit.
    """
    with _lock:
        if hook not in state.shutdown_hooks:
            state.shutdown_hooks.append(hook)
        if not state.exit_hook_registered:
            atexit.register(_shutdown_at_exit)
            state.exit_hook_registered = True


def remove_hook(hook: Hook) -> None:
    """Forget ``hook`` if it has not run yet."""
    with _lock:
        if hook in state.shutdown_hooks:
            state.shutdown_hooks.remove(hook)


def time_left(default: float = EXIT_TIMEOUT) -> float:
    """Seconds a shutdown may still take: to the deadline if one is set, else ``default``."""
    deadline = state.shutdown_deadline
    if deadline is None:
        return default
    return max(0.0, deadline - time.monotonic())


@contextlib.contextmanager
def deadline_in(seconds: float) -> Iterator[None]:
    """Within the block, :func:`time_left` counts down from ``seconds``."""
    previous = state.shutdown_deadline
    state.shutdown_deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        state.shutdown_deadline = previous


def shutdown_telemetry(timeout: float) -> bool:
    """Run the waiting hooks, giving them ``timeout`` seconds (at least :data:`MIN_TIMEOUT`).

    The hooks run side by side, each in a thread, and are waited for until
    the deadline, and :data:`WRAP_UP` more for them to report what they
    dropped; one still running then is left to the process's end. Each hook
    runs once: a later call runs only hooks added since. Returns True if
    every hook finished in time.
    """
    with _lock:
        hooks = list(state.shutdown_hooks)
        state.shutdown_hooks.clear()
    if not hooks:
        return True
    timeout = max(timeout, MIN_TIMEOUT)
    end = time.monotonic() + timeout + WRAP_UP
    with deadline_in(timeout):
        runners = {hook: _start(hook) for hook in hooks}
        late = [hook for hook, runner in runners.items() if not _finished(runner, end)]
    for hook in late:
        logger.warning("telemetry shutdown: %s did not finish in time; exiting anyway", _name(hook))
    return not late


def _finished(runner: threading.Thread | None, end: float) -> bool:
    """Whether ``runner`` (None: it ran inline) is done, waiting for it until ``end``."""
    if runner is None:
        return True
    runner.join(max(0.0, end - time.monotonic()))
    return not runner.is_alive()


def _start(hook: Hook) -> threading.Thread | None:
    """Run ``hook`` in a daemon thread; inline (returning None) where threads can't start.

    At interpreter exit, Python 3.12 and later refuse new threads; the
    hooks bound themselves by :func:`time_left`, so running them one after
    the other still ends in time, short of a hook that ignores it.
    """
    runner = threading.Thread(target=_run, args=(hook,), name="telemetry-shutdown", daemon=True)
    try:
        runner.start()
    except RuntimeError:
        _run(hook)
        return None
    return runner


def _run(hook: Hook) -> None:
    try:
        hook()
    except Exception:
        logger.exception("telemetry shutdown: %s failed", _name(hook))


def _name(hook: Hook) -> str:
    return getattr(hook, "__qualname__", repr(hook))


def _shutdown_at_exit() -> None:
    shutdown_telemetry(EXIT_TIMEOUT)
