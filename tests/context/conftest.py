"""Fixtures shared by the client tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from baseplate.testing import RecordingObserver


@pytest.fixture
def recorder() -> RecordingObserver:
    """Records the events of every span of the requests it observes."""
    return RecordingObserver()


@pytest.fixture
def destination() -> Iterator[Any]:
    """A fresh exchange and queue on the local RabbitMQ (see :mod:`tests.context.amqp_broker`)."""
    from tests.context.amqp_broker import declared_destination

    with declared_destination() as destination:
        yield destination
