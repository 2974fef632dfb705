"""Watch a file and keep a parsed copy in memory that's updated on changes.

The contents of the file are re-loaded and parsed only when necessary. For
example, a JSON file like this::

    {"one": 1, "two": 2}

might be watched and parsed like this::

    >>> watcher = FileWatcher(path, parser=json.load)
    >>> watcher.get_data() == {"one": 1, "two": 2}
    True

The return value of :meth:`~FileWatcher.get_data` changes whenever the
underlying file changes. Each call costs one :func:`os.stat`; the file is read
and parsed again only when the result of that call differs from the version
last parsed. Once the file has been loaded, a later version that cannot be
parsed, or the file's removal, does not take the data away: the watcher keeps
returning what it last loaded successfully, and logs a warning.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Final, Generic, TypeVar

from baseplate.retry import RetryPolicy

__all__ = ["FileWatcher", "WatchedFileNotAvailableError"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

RETRY_FAILED_SECONDS: Final = 1.0
"""How long a version of the file that failed to load is left alone before
it is tried again even though it has not changed (a read can fail for passing
reasons such as running out of file descriptors)."""

# How often the constructor looks for the file while ``timeout`` lasts: at
# first soon, then less often, but never so rarely that a file written during
# a long wait is noticed late.
_POLL_FIRST_SECONDS: Final = 0.01
_POLL_MAX_SECONDS: Final = 0.25

# What identifies a version of the file: device, inode, size, modification and
# change times. Replacing the file by rename gives a new inode; rewriting it in
# place changes the size or the times.
_Signature = tuple[int, int, int, int, int]


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _NotLoaded:
    def __repr__(self) -> str:
        return "<not loaded>"


_NOT_LOADED: Final = _NotLoaded()


class WatchedFileNotAvailableError(Exception):
    """Raised when the watched file could not be loaded.

    :param path: The path of the watched file.
    :param inner: The error met while looking at, reading or parsing it; when
        the constructor's ``timeout`` ran out, a description of the wait and
        of the last error met (which is also the ``__cause__``).
    """

    def __init__(self, path: str, inner: BaseException | str) -> None:
        super().__init__(path, inner)
        self.path = path
        self.inner = inner

    def __str__(self) -> str:
        return f"{self.path}: {self.inner}"


class FileWatcher(Generic[_T]):
    """Watch a file and load its data when it changes.

    :param path: Full path to a file to watch.
    :param parser: A callable that takes an open file object, parses or
        otherwise interprets the file, and returns whatever data is
        meaningful.
    :param timeout: How many seconds the constructor waits for the file to
        be loaded successfully, looking for it every few milliseconds at
        first and every quarter second at most. With :py:data:`None` (the
        default) it does not wait nor look at the file at all; with ``0`` it
        tries once.
    :param binary: Open the file in binary mode (the parser then receives a
        file of :class:`bytes`).
    :param encoding: The text encoding of the file; UTF-8 if not given. Not
        allowed in binary mode.
    :param newline: How the file's line endings are translated, as for
        :func:`open`. Not allowed in binary mode.
    :raises WatchedFileNotAvailableError: if ``timeout`` is given and runs
        out before the file could be loaded.
    :raises TypeError: if ``encoding`` or ``newline`` is given with ``binary``.
    :raises ValueError: if ``timeout`` is negative.

    A watcher is safe to share between threads and greenlets: one caller
    parses a changed file while the others wait for the result.

    .. versionadded:: 0.31
       The ``path`` property, and :class:`os.PathLike` paths.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        parser: Callable[[IO[Any]], _T],
        timeout: float | None = None,
        binary: bool = False,
        encoding: str | None = None,
        newline: str | None = None,
    ) -> None:
        if binary and encoding is not None:
            raise TypeError("'encoding' is not supported in binary mode")
        if binary and newline is not None:
            raise TypeError("'newline' is not supported in binary mode")
        if timeout is not None and not (timeout >= 0):  # also rejects NaN
            raise ValueError(f"timeout must be a non-negative number of seconds, not {timeout!r}")

        self._path = os.fspath(path)
        self._parser = parser
        self._binary = binary
        self._encoding = None if binary else (encoding or "utf-8")
        self._newline = newline
        self._lock = threading.Lock()

        self._data: _T | _NotLoaded = _NOT_LOADED
        # The version of the file last tried, and why it failed if it did.
        self._seen: _Signature | None = None
        self._failure: BaseException | None = None
        self._failed_at = 0.0

        if timeout is not None:
            self._wait_for_file(timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._path!r})"

    @property
    def path(self) -> str:
        """The path of the watched file.

        .. versionadded:: 0.31
        """
        return self._path

    def get_data(self) -> _T:
        """Return the current contents of the file, parsed.

        The watcher ensures that the file is re-loaded and parsed whenever its
        contents change. Parsing only occurs when necessary, not on each call
        to this method. This method returns whatever the most recent
        successful call to the parser returned: once the file has been
        loaded, a version that cannot be read or parsed, or the removal of
        the file, leaves the data as it was (a warning is logged, once per
        bad version or removal), and the next good version replaces it.

        Make sure to call this method each time you need data from the file
        rather than saving its results elsewhere. This ensures you always have
        the freshest data.

        :raises WatchedFileNotAvailableError: if the file has never been
            loaded successfully: it does not exist, or cannot be read or
            parsed. The error names the path and carries the cause.
        """
        try:
            st = os.stat(self._path)
        except OSError as exc:
            return self._gone(exc)

        if not self._is_current(_signature(st)):
            with self._lock:
                # Another caller may have loaded this version while we waited.
                if not self._is_current(_signature(st)):
                    self._load()
        data = self._data
        if isinstance(data, _NotLoaded):
            raise WatchedFileNotAvailableError(self._path, self._failure or "not loaded")
        return data

    def _is_current(self, signature: _Signature) -> bool:
        if signature != self._seen:
            return False
        if self._failure is None:
            return True
        return time.monotonic() - self._failed_at < RETRY_FAILED_SECONDS

    def _gone(self, exc: OSError) -> _T:
        """Serve the data last loaded when the file cannot be looked at."""
        data = self._data
        if isinstance(data, _NotLoaded):
            raise WatchedFileNotAvailableError(self._path, exc) from exc
        with self._lock:
            # None: no version of the file is known since it went; warn once.
            if self._seen is not None:
                self._seen = None
                self._failure = exc
                logger.warning(
                    "%s: cannot be accessed, keeping the data last loaded: %s", self._path, exc
                )
        return data

    def _load(self) -> None:
        signature: _Signature | None = None
        try:
            if self._binary:
                f: IO[Any] = open(self._path, "rb")  # noqa: SIM115
            else:
                f = open(self._path, encoding=self._encoding, newline=self._newline)  # noqa: SIM115
            with f:
                # Identify the version by the open file, so that a file replaced
                # while being read is read again on the next call.
                signature = _signature(os.fstat(f.fileno()))
                logger.debug("%s: loading", self._path)
                data = self._parser(f)
        except Exception as exc:
            repeated = signature is not None and signature == self._seen
            self._seen = signature
            self._failure = exc
            self._failed_at = time.monotonic()
            if isinstance(self._data, _NotLoaded):
                # get_data raises it; the log only helps to follow a wait.
                logger.debug("%s: could not be loaded: %s", self._path, exc)
            else:
                log = logger.debug if repeated else logger.warning
                log(
                    "%s: the changed file could not be loaded, keeping the data last loaded: %s",
                    self._path,
                    exc,
                )
            return
        if self._failure is not None and not isinstance(self._data, _NotLoaded):
            logger.info("%s: loaded again", self._path)
        self._data = data
        self._seen = signature
        self._failure = None

    def _wait_for_file(self, timeout: float) -> None:
        # As in the original, a retry policy bounds the wait: a time budget, or
        # one attempt when there is no time at all. Its backoff spaces the looks.
        policy = (
            RetryPolicy.new(
                budget=timeout, backoff=_POLL_FIRST_SECONDS, max_delay=_POLL_MAX_SECONDS
            )
            if timeout > 0
            else RetryPolicy.new(attempts=1)
        )
        last_error: WatchedFileNotAvailableError | None = None
        for _ in policy:
            try:
                self.get_data()
            except WatchedFileNotAvailableError as exc:
                last_error = exc
                logger.debug("%s: not available yet: %s", self._path, exc.inner)
            else:
                return
        cause = "no attempt was made" if last_error is None else last_error.inner
        raise WatchedFileNotAvailableError(
            self._path, f"not available after {timeout:g} seconds: {cause}"
        ) from last_error
