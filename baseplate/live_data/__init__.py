"""Data kept in ZooKeeper, copied to every server's disk within moments of a change.

ZooKeeper holds the data and pushes change notifications; the watcher
(:mod:`baseplate.live_data.watcher`), a sidecar, copies nodes to local files
as they change; the application reads those files with a
:class:`~baseplate.file_watcher.FileWatcher`; and something writes the nodes,
such as the writer tool (:mod:`baseplate.live_data.writer`).
:func:`zookeeper_client_from_config` connects an application, or a tool, to
ZooKeeper directly.
"""

from baseplate.live_data.zookeeper import zookeeper_client_from_config

__all__ = ["zookeeper_client_from_config"]
