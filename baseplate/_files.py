"""Replacing a file that other processes read, so that they never see half of it.

The sidecars write files that applications watch (the secrets fetcher's
secrets file, the live-data watcher's copies of ZooKeeper nodes), and the
readers (:class:`baseplate.file_watcher.FileWatcher`) may look at any moment.
:func:`write_atomically` is the one way Baseplate writes such a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomically(
    path: str, content: bytes, mode: int, owner: int | None = None, group: int | None = None
) -> None:
    """Replace the file at ``path`` by one holding ``content``, in one step.

    The content goes into a temporary file in the same directory (a rename
    is atomic only within one file system), which gets its mode and owners
    and is flushed to disk before it is renamed over ``path``: a reader sees
    the old file or the new one, and after a crash the file is one or the
    other too. The temporary file is removed if anything fails.

    :param mode: The permission bits, such as ``0o400``.
    :param owner: The user id to own the file; the writer's if not given.
    :param group: The group id to own the file; the writer's if not given.
    :raises OSError: The file cannot be written, owned or renamed; ``path``
        is then left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp_path = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as temp_file:
            os.fchmod(temp_file.fileno(), mode)
            if owner is not None or group is not None:
                os.fchown(
                    temp_file.fileno(),
                    -1 if owner is None else owner,
                    -1 if group is None else group,
                )
            temp_file.write(content)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_path)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; a file system that cannot is no reason to fail.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
