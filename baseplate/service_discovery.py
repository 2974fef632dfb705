"""Integration with Synapse's ``file_output`` service discovery method.

Synapse watches a service's registrations and writes the live backends to a
JSON file; a :class:`ServiceInventory` reads that file (again whenever it
changes) and picks backends from it::

    inventory = ServiceInventory("/var/lib/synapse/example.json")
    backend = inventory.get_backend()
    print(backend.endpoint.address)

Production services reach each other through the HAProxy that Synapse also
configures; reading the inventory directly is for clients that must know the
addresses themselves, such as topology-aware database drivers.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import IO, Any, NamedTuple

from baseplate.config import EndpointConfiguration
from baseplate.file_watcher import FileWatcher, WatchedFileNotAvailableError
from baseplate.random import WeightedLottery

__all__ = ["Backend", "NoBackendsAvailableError", "ServiceInventory"]

logger = logging.getLogger(__name__)


class NoBackendsAvailableError(Exception):
    """Raised when no backends are available for this service.

    :param filename: The inventory file, if known.
    :param reason: Why no backend could be chosen, if known.

    .. versionadded:: 0.31
       The ``filename`` and ``reason`` parameters and attributes.
    """

    def __init__(self, filename: str | None = None, reason: str | None = None) -> None:
        super().__init__(*(arg for arg in (filename, reason) if arg is not None))
        #: The inventory file that had no backend to offer.
        self.filename = filename
        #: Why: the file was never loaded, lists no backends, or gives them all weight zero.
        self.reason = reason

    def __str__(self) -> str:
        reason = self.reason or "no backends available"
        return f"{self.filename}: {reason}" if self.filename else reason


class Backend(NamedTuple):
    """A description of a service backend."""

    id: int
    """A unique integer ID identifying the backend."""

    name: str
    """The name of the backend."""

    endpoint: EndpointConfiguration
    """An :class:`~baseplate.config.EndpointConfiguration` object describing
    the network address of the backend."""

    weight: int
    """An integer weight indicating how much to prefer this backend when
    choosing whom to connect to."""


class _Inventory(NamedTuple):
    backends: tuple[Backend, ...]
    # None when no backend has a positive weight: nothing can be picked.
    lottery: WeightedLottery[Backend] | None


def _integer(entry: dict[str, Any], key: str, default: int | None = None) -> int:
    value = entry.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"backend {entry!r}: {key!r} must be an integer, not {value!r}")
    return value


def _parse_backend(entry: Any) -> Backend:
    if not isinstance(entry, dict):
        raise ValueError(f"each backend must be a JSON object, not {entry!r}")
    host = entry.get("host")
    if not isinstance(host, str) or not host:
        raise ValueError(f"backend {entry!r}: 'host' must be a non-empty string")
    port = _integer(entry, "port")
    if not 0 <= port <= 65535:
        raise ValueError(f"backend {entry!r}: 'port' {port} is out of range")
    name = entry.get("name")
    if not isinstance(name, str):
        raise ValueError(f"backend {entry!r}: 'name' must be a string")
    # Synapse writes a null weight for backends registered without one.
    weight = _integer(entry, "weight", default=1)
    if weight < 0:
        raise ValueError(f"backend {entry!r}: 'weight' must not be negative")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return Backend(
        id=_integer(entry, "id"),
        name=name,
        endpoint=EndpointConfiguration(family, (host, port)),
        weight=weight,
    )


def _parse(watched_file: IO[str]) -> _Inventory:
    document = json.load(watched_file)
    if not isinstance(document, list):
        raise ValueError(f"the inventory must be a JSON list of backends, not {document!r}")
    backends = tuple(_parse_backend(entry) for entry in document)
    lottery = None
    if any(backend.weight for backend in backends):
        lottery = WeightedLottery(backends, weight_key=lambda backend: backend.weight)
    return _Inventory(backends, lottery)


class ServiceInventory:
    """The inventory enumerates available backends for a single service.

    The file is a JSON list with one object per backend, as Synapse's
    ``file_output`` writes it::

        [
            {"id": 1, "name": "i-0123", "host": "10.0.0.1", "port": 9090, "weight": 2},
            {"id": 2, "name": "i-4567", "host": "10.0.0.2", "port": 9090, "weight": null}
        ]

    ``host``, ``port``, ``id`` and ``name`` are required; a missing or null
    ``weight`` counts as 1. Other keys are ignored. A file that is not of
    this shape is treated like a missing one.

    :param filename: The absolute path to the Synapse-generated inventory
        file in JSON format.
    """

    def __init__(self, filename: str) -> None:
        #: The path of the inventory file.
        self.filename = filename
        self._watcher = FileWatcher(filename, _parse)
        self._unavailable: WatchedFileNotAvailableError | None = None

    def _get_inventory(self) -> _Inventory | None:
        # Once loaded, the watcher keeps (and logs about) the last good
        # inventory itself; it raises only while none has ever been loaded.
        try:
            return self._watcher.get_data()
        except WatchedFileNotAvailableError as exc:
            self._unavailable = exc
            return None

    def get_backends(self) -> list[Backend]:
        """Return a list of all available backends in the inventory.

        If the inventory file becomes unavailable, the previously seen
        inventory is returned. If it has never been available, the list is
        empty.
        """
        inventory = self._get_inventory()
        return [] if inventory is None else list(inventory.backends)

    def get_backend(self) -> Backend:
        """Return a randomly chosen backend from the available backends.

        If weights are specified in the inventory, they will be respected
        when making the random selection. Backends of weight zero are never
        chosen.

        :raises NoBackendsAvailableError: if the inventory has no available
            endpoints (it was never loaded, lists no backends, or gives them
            all weight zero).
        """
        inventory = self._get_inventory()
        if inventory is None:
            why = self._unavailable.inner if self._unavailable else "unknown"
            raise NoBackendsAvailableError(
                self.filename, f"the inventory has never been loaded: {why}"
            ) from self._unavailable
        if inventory.lottery is None:
            reason = "all backends have weight zero" if inventory.backends else "no backends"
            raise NoBackendsAvailableError(self.filename, reason)
        return inventory.lottery.pick()
