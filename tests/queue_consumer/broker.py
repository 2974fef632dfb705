"""The test's own exchange and queue on RabbitMQ at 127.0.0.1:5672 (guest/guest), declared
as :func:`baseplate.queue_consumer.consume` declares them, and deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from kombu import Connection, Exchange, Producer, Queue

from tests._helpers import wait_until
from tests.context.amqp_broker import BROKER_URL

#: The routing keys the test queue is bound with.
ROUTING_KEYS = ("things.created", "things.deleted")


@dataclass
class TestQueue:
    """A direct exchange and a queue bound to it with each of :data:`ROUTING_KEYS`."""

    __test__ = False  # not a test class, despite the name

    connection: Connection
    exchange: Exchange
    name: str

    def queues(self, routing_keys: Sequence[str] = ROUTING_KEYS) -> list[Queue]:
        """The queue, once per routing key, as ``consume`` makes it."""
        return [Queue(self.name, exchange=self.exchange, routing_key=key) for key in routing_keys]

    def publish(self, *bodies: str, routing_key: str = ROUTING_KEYS[0]) -> None:
        """Publish each text body, as is (no serializer), in order."""
        producer = Producer(self.connection.default_channel, exchange=self.exchange)
        for body in bodies:
            producer.publish(
                body,
                routing_key=routing_key,
                content_type="text/plain",
                content_encoding="utf-8",
            )

    def ready_count(self) -> int:
        """How many messages wait in the queue, not delivered to any consumer."""
        declared = self.connection.default_channel.queue_declare(self.name, passive=True)
        return int(declared.message_count)

    def consumer_count(self) -> int:
        declared = self.connection.default_channel.queue_declare(self.name, passive=True)
        return int(declared.consumer_count)

    def wait_for_ready_count(self, count: int) -> None:
        """Wait until exactly ``count`` messages wait in the queue (redeliveries take a moment)."""
        wait_until(lambda: self.ready_count() == count, f"{count} messages ready in {self.name}")

    def drain(self) -> list[str]:
        """Take (and acknowledge) every message waiting in the queue; their bodies, in order."""
        queue = Queue(self.name, exchange=self.exchange)(self.connection.default_channel)
        bodies = []
        while (message := queue.get(no_ack=True)) is not None:
            bodies.append(message.body)
        return bodies


@contextmanager
def declared_test_queue() -> Iterator[TestQueue]:
    """A fresh exchange and queue, both deleted on the way out."""
    name = f"baseplate-test-consumer-{uuid.uuid4().hex[:12]}"
    with Connection(BROKER_URL) as connection:
        exchange = Exchange(name, type="direct")
        test_queue = TestQueue(connection, exchange, name)
        for queue in test_queue.queues():
            queue(connection.default_channel).declare()
        try:
            yield test_queue
        finally:
            channel = connection.default_channel
            channel.queue_delete(name)
            channel.exchange_delete(name)
