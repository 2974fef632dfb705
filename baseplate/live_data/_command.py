"""What the watcher and the writer share: the ``[live-data]`` section and its client.

Both tools read the same section of the same kind of INI file, so that one
file can serve both: ``zookeeper.*`` for the connection, ``secrets.path`` for
the secrets store that holds the credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from kazoo.client import KazooClient  # type: ignore[import-untyped]

from baseplate import config
from baseplate._ini import ConfigFileError, read_config, section_options
from baseplate._sidecar.command import configure_logging
from baseplate.file_watcher import WatchedFileNotAvailableError
from baseplate.live_data.zookeeper import zookeeper_client_from_config
from baseplate.secrets import SecretsError, secrets_store_from_config

SECTION: Final = "live-data"

STARTUP_ERRORS: Final = (
    ConfigFileError,
    config.ConfigurationError,
    SecretsError,
    WatchedFileNotAvailableError,
)
"""What can stop a tool before it has connected; each says in one line what is wrong."""


def start_logging(debug: bool) -> None:
    """Log as the other sidecars do; kazoo's chatter only with ``--debug``."""
    configure_logging(debug)
    if not debug:
        logging.getLogger("kazoo").setLevel(logging.WARNING)


def read_section(path: str) -> dict[str, str]:
    """The ``[live-data]`` section of the INI file at ``path``.

    :raises ConfigFileError: The file cannot be read or parsed, or has no such section.
    """
    return section_options(read_config(path), path, SECTION)


def node_path(text: str) -> str:
    """A node's path as the tools take it: absolute, with no trailing slash."""
    if not text.startswith("/") or (len(text) > 1 and text.endswith("/")):
        raise ValueError("expected an absolute node path such as /a/node, with no trailing slash")
    return text


def client_from_section(
    raw_config: Mapping[str, str], read_only: bool, secrets_timeout: float | None
) -> KazooClient:
    """An unstarted client for the section's ``zookeeper.*`` keys.

    The secrets store is opened only when ``zookeeper.credentials`` names
    secrets, and then waits up to ``secrets_timeout`` seconds for its file:
    a sidecar started at the same time as the secrets fetcher gives it time
    to write the file.

    :raises ConfigurationError: A key is missing or has a bad value.
    :raises SecretsError: A credentials secret cannot be read.
    :raises WatchedFileNotAvailableError: The secrets file did not appear in time.
    """
    timeout = secrets_timeout if raw_config.get("zookeeper.credentials") else None
    secrets = secrets_store_from_config(raw_config, timeout=timeout)
    return zookeeper_client_from_config(secrets, raw_config, read_only=read_only)
