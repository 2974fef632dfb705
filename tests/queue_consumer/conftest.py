"""Fixtures of the queue consumer tests: a queue of the test's own, and consumers of it
that are stopped before it is deleted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from baseplate.queue_consumer import BaseKombuConsumer
from baseplate.testing import RecordingObserver
from tests._helpers import closed_afterwards
from tests.queue_consumer.broker import TestQueue, declared_test_queue


@pytest.fixture
def test_queue() -> Iterator[TestQueue]:
    with declared_test_queue() as declared:
        yield declared


def _stop(consumer: BaseKombuConsumer) -> None:
    consumer.stop()
    assert not consumer.worker_thread.is_alive()


@pytest.fixture
def make_consumer(test_queue):
    """``make_consumer(cls, connection, queues, ...)``: ``cls.new(...)``, stopped after the
    test (and before its queue is deleted, which a running consumer would declare again)."""
    with closed_afterwards(lambda cls, *args, **kwargs: cls.new(*args, **kwargs), _stop) as make:
        yield make


@pytest.fixture
def recorder() -> RecordingObserver:
    """Records the events of every span of the requests it observes."""
    return RecordingObserver()
