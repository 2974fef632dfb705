import uuid

import posix_ipc
import pytest


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
