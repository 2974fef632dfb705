"""``--reload``: re-execute the server when a source file or the INI file changes.

For development only. A greenlet polls the modification times of the files of
every imported module and of the INI file; on a change the process replaces
itself (``exec``) with a fresh copy of the same command line, handing over the
listening socket so the address stays the same and connections queue up
instead of being refused during the restart.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, NoReturn

from baseplate.server._listener import INHERITED_FD_ENV

logger = logging.getLogger("baseplate.server.reload")

POLL_INTERVAL = 0.5


def _module_files() -> Iterator[str]:
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            yield path


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


class SourceWatcher:
    """Notices changes to imported modules' files and to some extra files.

    Create it when the process starts. Files of modules imported later are
    watched from when they are first seen; one first seen already modified
    after the watcher was created counts as changed, so an edit made while
    the application was loading is not missed.
    """

    def __init__(self, extra_paths: Iterable[str]) -> None:
        self.since_ns = time.time_ns()
        self.extra_paths: list[str] = []
        self.stamps: dict[str, tuple[int, int] | None] = {}
        self.add(extra_paths)

    def add(self, paths: Iterable[str]) -> None:
        """Watch ``paths`` as well."""
        self.extra_paths += [os.path.abspath(path) for path in paths]

    def changed(self) -> str | None:
        """The first watched file that changed since the last call, if any."""
        found = None
        for path in [*self.extra_paths, *_module_files()]:
            stamp = _stamp(path)
            known, previous = path in self.stamps, self.stamps.get(path)
            self.stamps[path] = stamp
            if (stamp != previous) if known else _newer(stamp, self.since_ns):
                found = found or path
        return found


def _newer(stamp: tuple[int, int] | None, since_ns: int) -> bool:
    return stamp is not None and stamp[0] > since_ns


def reexec(listener: socket.socket | None) -> NoReturn:
    """Replace this process with a new run of the same command line."""
    environ = dict(os.environ)
    if listener is not None:
        listener.set_inheritable(True)
        environ[INHERITED_FD_ENV] = str(listener.fileno())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, environ)


def watch_forever(watcher: SourceWatcher, listener: socket.socket | None) -> NoReturn:
    """Poll until a file changes, then :func:`reexec`. Runs in its own greenlet."""
    import gevent

    while True:
        gevent.sleep(POLL_INTERVAL)
        path = watcher.changed()
        if path is not None:
            logger.info("%s changed; restarting", path)
            reexec(listener)


def files_in_traceback(exc: BaseException) -> list[str]:
    """The source files an exception's traceback passed through, for a failed start."""
    paths = []
    filename = getattr(exc, "filename", None)
    if isinstance(exc, SyntaxError) and isinstance(filename, str):
        paths.append(filename)
    traceback: TracebackType | None = exc.__traceback__
    while traceback is not None:
        paths.append(traceback.tb_frame.f_code.co_filename)
        traceback = traceback.tb_next
    return [path for path in paths if os.path.exists(path)]


def start(watcher: SourceWatcher, listener: socket.socket | None) -> Any:
    """Start watching in a greenlet; returns the greenlet."""
    import gevent

    return gevent.spawn(watch_forever, watcher, listener)
