"""A ZooKeeper client configured from the application's settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from baseplate import config
from baseplate._extras import missing_extra
from baseplate._sidecar.command import positive_seconds
from baseplate.secrets import SecretsStore

try:
    from kazoo.client import KazooClient  # type: ignore[import-untyped]
    from kazoo.hosts import collect_hosts  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.live_data", "kazoo", "zookeeper") from exc

__all__ = ["zookeeper_client_from_config"]

DEFAULT_TIMEOUT: Final = 5.0
"""Seconds each connection attempt may take unless ``zookeeper.timeout`` says otherwise."""

# How kazoo's own thread reconnects, before the first connection and after a
# lost one: forever, from a tenth of a second up to a minute apart, jittered.
# Giving up would leave a long-running process with a client that never
# comes back; a caller that must not wait forever decides for itself, with
# start()'s timeout or by watching KazooClient.connected.
_CONNECTION_RETRY: Final = {
    "max_tries": -1,
    "delay": 0.1,
    "backoff": 2,
    "max_jitter": 1.0,
    "max_delay": 60.0,
}


def _hosts(text: str) -> str:
    # kazoo's own parser, so that a value it would refuse later is refused here,
    # with the key's name.
    hosts, _chroot = collect_hosts(text)
    if not hosts:
        raise ValueError("no host given")
    return text


_SPEC: Final[config.ConfigSpec] = {
    "zookeeper": {
        "hosts": _hosts,
        "credentials": config.Optional(config.TupleOf(config.String), default=[]),
        "timeout": config.Optional(positive_seconds, default=DEFAULT_TIMEOUT),
    }
}


def zookeeper_client_from_config(
    secrets: SecretsStore, app_config: Mapping[str, str], read_only: bool | None = None
) -> KazooClient:
    """Configure and return a ZooKeeper client.

    The client is not connected yet: call its
    :meth:`~kazoo.client.KazooClient.start` (which waits for the connection,
    15 seconds by default) before using it, and
    :meth:`~kazoo.client.KazooClient.stop` when done. Once connected, it
    reconnects on its own, forever, whenever the connection is lost; the
    application may poll :attr:`~kazoo.client.KazooClient.connected` if it
    must act on a long outage.

    The keys read from ``app_config``:

    ``zookeeper.hosts``
        A comma-delimited list of ``host:port`` pairs, with an optional
        ``chroot`` path at the end: ``zk01:2181,zk02:2181`` or
        ``zk01:2181,zk02:2181/some/root``.
    ``zookeeper.credentials``
        (Optional) A comma-delimited list of paths of secrets in ``secrets``
        holding credentials for ZooKeeper's ``digest`` authentication. Each is
        a simple secret whose value is ``username:password``.
    ``zookeeper.timeout``
        (Optional) How long each connection attempt may take, such as
        ``5 seconds`` (the default) or ``2.5``; it is also the session
        timeout asked of the server.

    :param secrets: The secrets store the credentials are read from; it is
        not used when there are none.
    :param app_config: The application configuration which should have
        settings for the ZooKeeper client.
    :param read_only: Whether the client may connect to a server that has
        lost its quorum, to read what it has.
    :raises ~baseplate.config.ConfigurationError: A key is missing or its value
        cannot be used; the error names the key.
    :raises ~baseplate.secrets.SecretsError: A credentials secret cannot be read.

    .. versionchanged:: 0.31
       ``zookeeper.timeout`` also takes a plain number of seconds, and the
       hosts are checked here rather than when the client is used.
    """
    cfg = config.parse_config(app_config, _SPEC).zookeeper
    auth_data = [("digest", _credentials(secrets, path)) for path in cfg.credentials]
    return KazooClient(
        cfg.hosts,
        timeout=cfg.timeout,
        auth_data=auth_data,
        read_only=bool(read_only),
        connection_retry=dict(_CONNECTION_RETRY),
    )


def _credentials(secrets: SecretsStore, path: str) -> str:
    try:
        credentials = secrets.get_simple(path).decode("utf-8")
    except UnicodeDecodeError:
        credentials = ""
    if ":" not in credentials:
        # Neither the secret nor its value belongs in a log line.
        raise config.ConfigurationError(
            "zookeeper.credentials", f"the secret {path} is not of the form username:password"
        )
    return credentials
