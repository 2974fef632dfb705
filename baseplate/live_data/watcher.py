"""The live-data watcher: a sidecar that keeps local files copies of ZooKeeper nodes.

Run one per server (or pod), next to the application::

    python -m baseplate.live_data.watcher [--debug] config.ini

It reads the ``[live-data]`` section of ``config.ini``, connects to
ZooKeeper and watches each configured node. Whenever a node's data changes,
the watcher replaces the node's file with the new data, atomically (a
temporary file in the same directory, renamed over the old one), with the
owner, group and mode configured; when the node is deleted, the file is
removed, and it comes back when the node is created again. While the
connection is lost the files stay as they are, and once the watcher is
connected again every node is read afresh.

Every :data:`HEARTBEAT_INTERVAL` seconds, while connected, the watcher sets
each file's modification time to now: a file much older than that means its
watcher is stuck or gone, which monitoring can check on the file that
matters rather than on some proxy for it.

.. versionadded:: 0.31
   Owner and group may be given separately (the original applied them only
   together), a write that failed is tried again at the next heartbeat, a
   file removed behind the watcher's back is written again, and the secrets
   file is needed only when ``zookeeper.credentials`` is set.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import NoAuthError  # type: ignore[import-untyped]
from kazoo.protocol.states import KazooState  # type: ignore[import-untyped]

from baseplate import config
from baseplate._files import write_atomically
from baseplate._sidecar.command import stop_on_signals
from baseplate.live_data._command import (
    STARTUP_ERRORS,
    client_from_section,
    node_path,
    read_section,
    start_logging,
)

__all__ = ["HEARTBEAT_INTERVAL", "NodeWatcher", "WatchedNode", "main", "watch_zookeeper_nodes"]

# Named, not __name__: run with python -m, the module is __main__.
logger = logging.getLogger("baseplate.live_data.watcher")

HEARTBEAT_INTERVAL: Final = 300.0
"""Seconds between two touches of the files' modification times."""

SECRETS_TIMEOUT: Final = 30.0
"""Seconds the watcher waits at startup for the secrets file, when it needs one."""

DEFAULT_MODE: Final = 0o400
"""The files' permissions unless ``nodes.<name>.mode`` says otherwise."""

# How often the watcher looks whether it should stop while it waits for its
# first connection (kazoo's thread does the connecting, with its own backoff).
_STOP_CHECK_INTERVAL: Final = 0.2


@dataclass(frozen=True)
class WatchedNode:
    """One ``nodes.<name>`` group of the section: which node goes to which file, and how."""

    name: str
    source: str
    """The node's path in ZooKeeper."""
    dest: str
    """The file the node's data is written to."""
    owner: int | None = None
    """The user id to own the file; the watcher's own if not given."""
    group: int | None = None
    """The group id to own the file; the watcher's own if not given."""
    mode: int = DEFAULT_MODE
    """The file's permission bits."""


def _file_mode(text: str) -> int:
    mode = config.Integer(text, base=8)
    if not 0 <= mode <= 0o7777:
        raise ValueError("expected permission bits in octal, such as 0400")
    return mode


_NODES_SPEC: Final[config.ConfigSpec] = {
    "nodes": config.DictOf(
        {
            "source": node_path,
            "dest": config.String,
            "owner": config.Optional(config.UnixUser),
            "group": config.Optional(config.UnixGroup),
            "mode": config.Optional(_file_mode, default=DEFAULT_MODE),
        }
    )
}


def parse_nodes(raw_config: Mapping[str, str]) -> list[WatchedNode]:
    """The nodes the section asks to watch, checked.

    :raises ~baseplate.config.ConfigurationError: No node is configured, a key has
        a bad value, two nodes share a file, or a file's directory does not exist.
    """
    parsed = config.parse_config(raw_config, _NODES_SPEC).nodes
    if not parsed:
        raise config.ConfigurationError(
            "nodes", "no node to watch: add nodes.<name>.source and nodes.<name>.dest"
        )
    nodes = [WatchedNode(name=name, **options) for name, options in parsed.items()]
    files: dict[str, str] = {}
    for node in nodes:
        dest = os.path.abspath(node.dest)
        if dest in files:
            raise config.ConfigurationError(
                f"nodes.{node.name}.dest", f"{node.dest} is also nodes.{files[dest]}.dest"
            )
        files[dest] = node.name
        if not os.path.isdir(os.path.dirname(dest)):
            raise config.ConfigurationError(
                f"nodes.{node.name}.dest", f"the directory of {node.dest} does not exist"
            )
    return nodes


class NodeWatcher:
    """Keeps one file a copy of one node's data.

    :meth:`on_change` is called by kazoo's thread, :meth:`heartbeat` by the
    watcher's main loop; a lock keeps them from writing at the same time.
    """

    def __init__(self, node: WatchedNode) -> None:
        self.node = node
        self._lock = threading.Lock()
        # The node's data as last seen, None while the node does not exist (or
        # has not been read yet), and whether the file holds it.
        self._data: bytes | None = None
        self._written = False

    def on_change(self, data: bytes | None, stat: Any, event: Any = None) -> None:
        """Bring the file up to date with the node.

        This is the callback of a :class:`~kazoo.recipe.watchers.DataWatch`:
        ``data`` is None when the node does not exist, and the file is then
        removed.
        """
        with self._lock:
            self._data = data
            self._written = False
            if data is None:
                self._remove()
            else:
                self._write()

    def heartbeat(self) -> None:
        """Touch the file to show the watcher is alive, or write it if it must be written.

        A write that failed (a full disk, a directory made read-only) is tried
        again, and a file removed behind the watcher's back is written again.
        """
        with self._lock:
            if self._data is None:
                return
            if not self._written:
                self._write()
                return
            try:
                os.utime(self.node.dest)
            except FileNotFoundError:
                logger.warning("%s disappeared: writing it again", self.node.dest)
                self._write()
            except OSError as exc:
                logger.warning("cannot touch %s: %s", self.node.dest, exc)

    def _write(self) -> None:
        assert self._data is not None
        node = self.node
        try:
            write_atomically(node.dest, self._data, node.mode, node.owner, node.group)
        except OSError as exc:
            logger.error(
                "cannot write %s (node %s): %s; the previous file stays until the next try",
                node.dest,
                node.source,
                exc,
            )
            return
        self._written = True
        logger.info("wrote %s from %s (%d bytes)", node.dest, node.source, len(self._data))

    def _remove(self) -> None:
        try:
            os.unlink(self.node.dest)
        except FileNotFoundError:
            logger.info("node %s does not exist (yet): no %s", self.node.source, self.node.dest)
        except OSError as exc:
            logger.error("cannot remove %s: %s", self.node.dest, exc)
        else:
            logger.info("node %s does not exist: removed %s", self.node.source, self.node.dest)


def _log_state(state: str) -> None:
    # Called by kazoo's thread on every change of the connection's state.
    if state == KazooState.SUSPENDED:
        logger.warning("connection to ZooKeeper lost: the files stay as they are until it is back")
    elif state == KazooState.LOST:
        logger.warning("ZooKeeper session lost: every node is read again once reconnected")
    else:
        logger.info("connected to ZooKeeper")


def watch_zookeeper_nodes(
    zookeeper: KazooClient,
    nodes: Iterable[WatchedNode],
    stop: threading.Event,
    heartbeat_interval: float = HEARTBEAT_INTERVAL,
) -> None:
    """Keep the nodes' files up to date until ``stop`` is set.

    ``zookeeper`` must be started. The nodes are watched from kazoo's
    thread, which also reconnects when the connection is lost and then reads
    every node again; this thread only heartbeats, while connected.

    :raises kazoo.exceptions.NoAuthError: The client may not read a node.
    """
    watchers = [NodeWatcher(node) for node in nodes]
    for watcher in watchers:
        zookeeper.DataWatch(watcher.node.source, watcher.on_change)
    while not stop.wait(heartbeat_interval):
        if not zookeeper.connected:
            # An old file then shows that nobody can vouch for it.
            logger.warning("not connected to ZooKeeper: not touching the files")
            continue
        for watcher in watchers:
            logger.debug("heartbeat: %s", watcher.node.dest)
            watcher.heartbeat()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the watcher from the command line; returns the exit status.

    0 after a stop by SIGTERM or SIGINT, 1 when the configuration cannot be
    used or a node may not be read.
    """
    parser = argparse.ArgumentParser(
        prog="python -m baseplate.live_data.watcher",
        description="Watch nodes in ZooKeeper and copy their data to local files on change.",
    )
    parser.add_argument("config_file", help="an INI file with a [live-data] section")
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    start_logging(args.debug)

    try:
        raw_config = read_section(args.config_file)
        nodes = parse_nodes(raw_config)
        zookeeper = client_from_section(raw_config, read_only=True, secrets_timeout=SECRETS_TIMEOUT)
    except STARTUP_ERRORS as exc:
        logger.error("%s", exc)
        return 1

    stop = threading.Event()
    received = stop_on_signals(stop.set)
    zookeeper.add_listener(_log_state)
    connected = zookeeper.start_async()
    try:
        logger.info("connecting to ZooKeeper at %s", raw_config["zookeeper.hosts"])
        while not connected.wait(_STOP_CHECK_INTERVAL):
            if stop.is_set():
                break
        else:
            watch_zookeeper_nodes(zookeeper, nodes, stop)
    except NoAuthError:
        logger.error(
            "not allowed to read every node: check zookeeper.credentials and the nodes' ACLs"
        )
        return 1
    finally:
        zookeeper.remove_listener(_log_state)  # closing the session is no loss
        zookeeper.stop()
        zookeeper.close()
    logger.info("stopped by %s", received[0] if received else "request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
