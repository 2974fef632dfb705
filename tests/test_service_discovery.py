"""baseplate.service_discovery on real Synapse inventory files."""

from __future__ import annotations

import collections
import json
import logging
import os
import random
import socket
from pathlib import Path
from typing import Any

import pytest

from baseplate.config import EndpointConfiguration
from baseplate.service_discovery import Backend, NoBackendsAvailableError, ServiceInventory


def backend_entry(number: int, weight: int | None = 1, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": number,
        "name": f"i-{number:04d}",
        "host": f"10.0.0.{number}",
        "port": 9090,
        "weight": weight,
    }
    entry.update(overrides)
    return entry


def write_inventory(path: Path, content: Any) -> None:
    """Replace the file as Synapse does: write a new file, then rename it over."""
    text = content if isinstance(content, str) else json.dumps(content)
    staging = path.with_suffix(".tmp")
    staging.write_text(text)
    os.replace(staging, path)


@pytest.fixture
def inventory_path(tmp_path: Path) -> Path:
    return tmp_path / "example.json"


def test_backends_are_read_from_the_file(inventory_path):
    write_inventory(
        inventory_path,
        [backend_entry(1, weight=2), backend_entry(2, weight=None, labels={"az": "a"})],
    )
    inventory = ServiceInventory(str(inventory_path))
    assert inventory.get_backends() == [
        Backend(1, "i-0001", EndpointConfiguration(socket.AF_INET, ("10.0.0.1", 9090)), 2),
        Backend(2, "i-0002", EndpointConfiguration(socket.AF_INET, ("10.0.0.2", 9090)), 1),
    ]
    backend = inventory.get_backends()[0]
    assert (backend.id, backend.name, backend.weight) == (1, "i-0001", 2)
    assert str(backend.endpoint) == "10.0.0.1:9090"


def test_missing_weight_counts_as_one(inventory_path):
    entry = backend_entry(1)
    del entry["weight"]
    write_inventory(inventory_path, [entry])
    assert ServiceInventory(str(inventory_path)).get_backend().weight == 1


def test_ipv6_host(inventory_path):
    write_inventory(inventory_path, [backend_entry(1, host="fd00::1")])
    endpoint = ServiceInventory(str(inventory_path)).get_backend().endpoint
    assert endpoint.family == socket.AF_INET6
    assert str(endpoint) == "[fd00::1]:9090"


def test_get_backends_returns_a_copy(inventory_path):
    write_inventory(inventory_path, [backend_entry(1)])
    inventory = ServiceInventory(str(inventory_path))
    inventory.get_backends().clear()
    assert len(inventory.get_backends()) == 1


def test_single_backend_is_always_chosen(inventory_path):
    write_inventory(inventory_path, [backend_entry(7)])
    inventory = ServiceInventory(str(inventory_path))
    assert {inventory.get_backend().id for _ in range(20)} == {7}


def test_choice_follows_the_weights(inventory_path):
    write_inventory(
        inventory_path,
        [backend_entry(1, weight=1), backend_entry(2, weight=3), backend_entry(3, weight=0)],
    )
    inventory = ServiceInventory(str(inventory_path))
    random.seed(20240611)
    picks = 4000
    counts = collections.Counter(inventory.get_backend().id for _ in range(picks))
    assert counts[3] == 0
    # Backend 2 should win three picks in four; five standard deviations
    # (sqrt(4000 * 3/4 * 1/4) ≈ 27) leave room for chance and none for bias.
    assert abs(counts[2] - 3000) < 140
    assert counts[1] + counts[2] == picks


def test_all_weights_zero(inventory_path):
    write_inventory(inventory_path, [backend_entry(1, weight=0), backend_entry(2, weight=0)])
    inventory = ServiceInventory(str(inventory_path))
    assert len(inventory.get_backends()) == 2
    with pytest.raises(NoBackendsAvailableError, match="weight zero"):
        inventory.get_backend()


def test_empty_inventory(inventory_path):
    write_inventory(inventory_path, [])
    inventory = ServiceInventory(str(inventory_path))
    assert inventory.get_backends() == []
    with pytest.raises(NoBackendsAvailableError) as info:
        inventory.get_backend()
    assert info.value.filename == str(inventory_path)
    assert info.value.reason == "no backends"


def test_missing_file(inventory_path):
    inventory = ServiceInventory(str(inventory_path))
    assert inventory.get_backends() == []
    with pytest.raises(NoBackendsAvailableError, match="never been loaded") as info:
        inventory.get_backend()
    assert str(inventory_path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "[{",
        "not json",
        {"id": 1},
        [[1, 2]],
        [backend_entry(1, host=None)],
        [backend_entry(1, host="")],
        [backend_entry(1, port="9090")],
        [backend_entry(1, port=70000)],
        [backend_entry(1, id=None)],
        [backend_entry(1, name=5)],
        [backend_entry(1, weight=-1)],
        [backend_entry(1, weight=True)],
        [backend_entry(1, weight=1.5)],
    ],
    ids=repr,
)
def test_unusable_file_is_like_a_missing_one(inventory_path, content):
    write_inventory(inventory_path, content)
    inventory = ServiceInventory(str(inventory_path))
    assert inventory.get_backends() == []
    with pytest.raises(NoBackendsAvailableError, match="never been loaded"):
        inventory.get_backend()


def test_file_that_appears_later_is_used(inventory_path):
    inventory = ServiceInventory(str(inventory_path))
    assert inventory.get_backends() == []
    write_inventory(inventory_path, [backend_entry(1)])
    assert inventory.get_backend().id == 1


def test_changes_to_the_file_are_seen(inventory_path):
    write_inventory(inventory_path, [backend_entry(1)])
    inventory = ServiceInventory(str(inventory_path))
    assert [b.id for b in inventory.get_backends()] == [1]
    write_inventory(inventory_path, [backend_entry(2), backend_entry(3)])
    assert [b.id for b in inventory.get_backends()] == [2, 3]
    write_inventory(inventory_path, [])
    assert inventory.get_backends() == []


def test_deleted_file_keeps_the_last_inventory(inventory_path, caplog):
    write_inventory(inventory_path, [backend_entry(1), backend_entry(2)])
    inventory = ServiceInventory(str(inventory_path))
    seen = inventory.get_backends()

    inventory_path.unlink()
    with caplog.at_level(logging.INFO, logger="baseplate.file_watcher"):
        assert inventory.get_backends() == seen
        assert inventory.get_backend() in seen
        assert inventory.get_backends() == seen
        write_inventory(inventory_path, [backend_entry(3)])
        assert [b.id for b in inventory.get_backends()] == [3]

    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(messages) == 2  # one warning per outage, not per call
    assert messages[0][0] == logging.WARNING
    assert str(inventory_path) in messages[0][1]
    assert messages[1][0] == logging.INFO
    assert "loaded again" in messages[1][1]


def test_corrupt_rewrite_keeps_the_last_inventory(inventory_path):
    write_inventory(inventory_path, [backend_entry(1)])
    inventory = ServiceInventory(str(inventory_path))
    assert inventory.get_backend().id == 1
    write_inventory(inventory_path, "[{")
    assert [b.id for b in inventory.get_backends()] == [1]
    assert inventory.get_backend().id == 1


def test_error_without_arguments():
    # Applications' tests raise it bare, e.g. as a mock's side effect.
    error = NoBackendsAvailableError()
    assert str(error) == "no backends available"
    assert (error.filename, error.reason) == (None, None)
