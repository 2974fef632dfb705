"""The live-data writer: put a file's contents into an existing ZooKeeper node.

For simple cases, such as a CI task that publishes a reviewed file::

    python -m baseplate.live_data.writer [--debug] config.ini input.json /some/node

It reads ZooKeeper's address and credentials from the ``[live-data]`` section
of ``config.ini`` (the watcher's section), shows on standard output how the
node's data would change, as a unified diff (unless the data is not UTF-8
text), and writes it. Nothing is written when the data is already the same.

The node must exist: the writer never creates one, so that whoever creates it
also decides its ACL. The write is conditional on the version read, so a
change made by someone else in between is never overwritten.

The exit status is 0 when the node holds the file's data at the end
(written or already there), 1 with a one-line message on standard error
otherwise: the configuration cannot be used, the file cannot be read,
ZooKeeper cannot be reached, the node does not exist, the credentials do not
allow it, or the node changed during the write.

.. versionadded:: 0.31
   The diff goes to standard output (the original logged it), its headers
   name the node and the file, and an unreadable file or an unreachable
   ZooKeeper is a one-line message rather than a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Final, TextIO

from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import (  # type: ignore[import-untyped]
    BadVersionError,
    NoAuthError,
    NoNodeError,
)
from kazoo.handlers.threading import KazooTimeoutError  # type: ignore[import-untyped]

from baseplate.live_data._command import (
    STARTUP_ERRORS,
    client_from_section,
    node_path,
    read_section,
    start_logging,
)

__all__ = [
    "NodeDoesNotExistError",
    "UnexpectedChangeError",
    "WriterError",
    "main",
    "write_to_zookeeper",
]


CONNECT_TIMEOUT: Final = 15.0
"""Seconds the writer waits for a connection to ZooKeeper before giving up."""


class WriterError(Exception):
    """The data could not be written; the message says why in one line."""


class NodeDoesNotExistError(WriterError):
    """The node to write does not exist, and the writer never creates one.

    :param path: The node.
    """

    def __init__(self, path: str) -> None:
        super().__init__(
            f"the node {path} does not exist: create it, with the ACL it needs, before writing"
        )
        self.path = path


class UnexpectedChangeError(WriterError):
    """Someone else changed the node between the writer's read and its write.

    :param path: The node.
    """

    def __init__(self, path: str) -> None:
        super().__init__(f"the node {path} changed while it was being written: nothing was written")
        self.path = path


def write_to_zookeeper(
    zookeeper: KazooClient, data: bytes, path: str, source_name: str, output: TextIO
) -> bool:
    """Make the node at ``path`` hold ``data``, showing the change on ``output``.

    :param zookeeper: A started client.
    :param source_name: Where ``data`` comes from, for the diff's header.
    :returns: Whether the node was written (False: it already held ``data``).
    :raises WriterError: The node does not exist, may not be read or written
        with these credentials, or changed in the meantime.
    """
    try:
        current, stat = zookeeper.get(path)
    except NoNodeError:
        raise NodeDoesNotExistError(path) from None
    except NoAuthError:
        raise WriterError(f"not allowed to read {path}: check zookeeper.credentials") from None

    if current == data:
        print("No changes detected. Not writing.", file=output)
        return False

    try:
        current_text, new_text = current.decode("utf-8"), data.decode("utf-8")
    except UnicodeDecodeError:
        print("Skipping diff, data appears to be binary.", file=output)
    else:
        diff = difflib.unified_diff(
            current_text.splitlines(),
            new_text.splitlines(),
            fromfile=f"{path} (ZooKeeper)",
            tofile=source_name,
            lineterm="",
        )
        for line in diff:
            print(line, file=output)

    try:
        zookeeper.set(path, data, version=stat.version)
    except BadVersionError:
        raise UnexpectedChangeError(path) from None
    except NoNodeError:  # deleted since it was read
        raise UnexpectedChangeError(path) from None
    except NoAuthError:
        raise WriterError(f"not allowed to write {path}: check zookeeper.credentials") from None
    print("Wrote data to ZooKeeper.", file=output)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the writer from the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m baseplate.live_data.writer",
        description="Write a file's contents to an existing node in ZooKeeper.",
    )
    parser.add_argument("config_file", help="an INI file with a [live-data] section")
    parser.add_argument("source", help="the file whose contents to write")
    parser.add_argument("dest", help="the node to write, such as /some/node")
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    start_logging(args.debug)

    try:
        node_path(args.dest)
    except ValueError as exc:
        return _fail(f"{args.dest}: {exc}")
    try:
        raw_config = read_section(args.config_file)
        zookeeper = client_from_section(raw_config, read_only=False, secrets_timeout=None)
    except STARTUP_ERRORS as exc:
        return _fail(str(exc))
    try:
        with open(args.source, "rb") as source:
            data = source.read()
    except OSError as exc:
        return _fail(f"cannot read {args.source}: {exc.strerror}")

    try:
        zookeeper.start(timeout=CONNECT_TIMEOUT)
    except KazooTimeoutError:
        return _fail(
            f"cannot connect to ZooKeeper at {raw_config['zookeeper.hosts']}"
            f" within {CONNECT_TIMEOUT:g} seconds"
        )
    try:
        print(f"Writing {args.source} to ZooKeeper {args.dest}...", flush=True)
        write_to_zookeeper(zookeeper, data, args.dest, args.source, sys.stdout)
    except WriterError as exc:
        return _fail(str(exc))
    finally:
        zookeeper.stop()
        zookeeper.close()
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
