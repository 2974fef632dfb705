"""The test's own exchange and queue on RabbitMQ at 127.0.0.1:5672 (guest/guest)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Exchange, Queue
from kombu.message import Message

from baseplate.context.kombu import (
    KombuProducerContextFactory,
    connection_from_config,
    exchange_from_config,
)

BROKER_PORT = 5672
BROKER_URL = f"amqp://guest:guest@127.0.0.1:{BROKER_PORT}//"
#: Fail at once when the broker cannot be reached: no retries, a short connect.
NO_RETRIES = {"connect_timeout": 0.5, "transport_options": {"max_retries": 0}}
#: The routing key the test queue is bound with.
ROUTING_KEY = "things.created"
#: How long to wait for a published message to reach the queue.
READ_TIMEOUT = 2.0


@dataclass
class Destination:
    """An exchange and a queue bound to it with :data:`ROUTING_KEY`, both the test's own."""

    exchange: Exchange
    queue: Queue

    def read(self, accept: list[str] | None = None) -> Message:
        """The next message on the queue, waiting for it a little."""
        deadline = time.monotonic() + READ_TIMEOUT
        while (message := self.queue.get(no_ack=True, accept=accept)) is None:
            assert time.monotonic() < deadline, f"nothing reached {self.queue.name}"
            time.sleep(0.01)
        return message

    def read_payloads(self, count: int) -> list[Any]:
        """The payloads of the next ``count`` messages; then the queue must be empty."""
        payloads = [self.read().payload for _ in range(count)]
        assert self.queue.get(no_ack=True) is None
        return payloads


@contextmanager
def declared_destination() -> Iterator[Destination]:
    """A fresh direct exchange and queue, deleted on the way out."""
    name = f"baseplate-test-kombu-{uuid.uuid4().hex[:12]}"
    with Connection(BROKER_URL) as admin:
        channel = admin.default_channel
        exchange = Exchange(name, type="direct", durable=False)(channel)
        queue = Queue(name, exchange=exchange, routing_key=ROUTING_KEY, durable=False)(channel)
        queue.declare()
        try:
            yield Destination(exchange, queue)
        finally:
            queue.delete()
            exchange.delete()


def producer_factory(
    exchange_name: str,
    port: int = BROKER_PORT,
    max_connections: int | None = None,
    **connection_options: Any,
) -> KombuProducerContextFactory:
    """A producer factory, configured as an application would, for a direct exchange on
    127.0.0.1:``port`` (the broker, or a relay or a closed port in front of it)."""
    app_config = {
        "amqp.hostname": f"amqp://guest:guest@127.0.0.1:{port}//",
        "amqp.exchange_name": exchange_name,
        "amqp.exchange_type": "direct",
    }
    return KombuProducerContextFactory(
        connection_from_config(app_config, **connection_options),
        exchange_from_config(app_config),
        max_connections=max_connections,
    )
