"""Small helpers shared by tests in several folders."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import posix_ipc

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    what: str = "the condition",
    timeout: float = 30.0,
    interval: float = 0.005,
) -> T:
    """Poll ``condition`` until it returns something true, and return that.

    For what happens in another thread or process: the deadline is generous,
    so a loaded machine only makes the wait longer; it fails only when the
    thing never happens.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g} seconds")
        time.sleep(interval)


def run_python(
    *args: str, timeout: float = 60.0, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run a fresh interpreter (this one) with ``args`` to its end; it must exit with 0.

    For what cannot be undone in the test process (monkey-patching, a new
    process's first import). ``options`` go to :func:`subprocess.run`
    (``cwd``, ``env``); stdout and stderr are captured as text, and a failure
    shows both.
    """
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **options,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _close(made: Any) -> None:
    made.close()


@contextlib.contextmanager
def closed_afterwards(
    make: Callable[..., T], close: Callable[[T], object] = _close
) -> Iterator[Callable[..., T]]:
    """``make``, remembering what it made; on the way out, each of those is closed.

    For fixtures that hand a test a factory (of pools, servers, clients):
    ``with closed_afterwards(Pool) as make_pool: yield make_pool``.
    """
    made: list[T] = []

    def remembering(*args: Any, **kwargs: Any) -> T:
        thing = make(*args, **kwargs)
        made.append(thing)
        return thing

    try:
        yield remembering
    finally:
        for thing in made:
            close(thing)


@contextlib.contextmanager
def fresh_queue_name(prefix: str) -> Iterator[str]:
    """A POSIX queue name no other test uses; ``<prefix><name>`` is unlinked on the way out.

    For fixtures of code that opens ``/events-NAME`` or ``/traces-NAME`` by
    name: queues outlive the processes that made them and count against the
    user's RLIMIT_MSGQUEUE, which other test runs share, so whoever created
    the queue (the test, or the code under test), it goes afterwards.
    """
    name = f"bp-test-{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        with contextlib.suppress(posix_ipc.ExistentialError):
            posix_ipc.unlink_message_queue(prefix + name)
