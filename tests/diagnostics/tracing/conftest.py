import uuid

import posix_ipc
import pytest

from bridge import provider
from tests.diagnostics.tracing.standins import CollectorStandIn


@pytest.fixture
def fresh_provider():
    """A provider made after the test's tracing client named the service."""
    provider._reset_for_tests()
    yield
    provider._reset_for_tests()


@pytest.fixture
def collector():
    """A trace collector (Zipkin, OTLP/HTTP) stand-in on 127.0.0.1."""
    stand_in = CollectorStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture
def queue_name():
    """A fresh ``/traces-<name>`` queue, small enough for the default system limits."""
    name = f"bp-test-{uuid.uuid4().hex[:12]}"
    queue = posix_ipc.MessageQueue(
        f"/traces-{name}", flags=posix_ipc.O_CREX, max_messages=10, max_message_size=8192
    )
    yield name
    queue.close()
    queue.unlink()
