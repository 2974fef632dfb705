"""``baseplate.context.kombu`` when the broker goes away and comes back.

The client connects through a :class:`~tests.context.broker_relay.BrokerRelay`,
which cuts the pooled connections (as a broker restart does) or refuses new
ones (a broker that is down), without touching the machine's RabbitMQ.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import kombu.pools
import pytest
from kombu.exceptions import OperationalError

from tests.context.amqp_broker import NO_RETRIES, ROUTING_KEY, producer_factory
from tests.context.broker_relay import BrokerRelay
from tests.context.serving import make_baseplate


@pytest.fixture
def relay():
    relay = BrokerRelay()
    yield relay
    kombu.pools.reset()
    relay.refuse()


@pytest.fixture
def baseplate(destination, relay, statsd):
    factory = producer_factory(
        destination.exchange.name, port=relay.port, max_connections=2, **NO_RETRIES
    )
    return make_baseplate(statsd, amqp=factory)


def publish(baseplate, body, **kwargs):
    """Publish in a request of its own."""
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.amqp.publish(body, routing_key=ROUTING_KEY, **kwargs)


def publish_counts(statsd):
    """``success`` and ``failure`` counts of ``clients.amqp.publish`` since the last call."""
    lines = b"\n".join(statsd.received()).decode().split("\n")
    counts = {"success": 0, "failure": 0}
    for line in lines:
        if match := re.fullmatch(r"svc\.clients\.amqp\.publish\.(success|failure):(\d+)\|c", line):
            counts[match[1]] += int(match[2])
    return counts


def test_a_cut_connection_fails_one_publish_then_the_next_reconnects(
    baseplate, relay, destination, statsd
):
    publish(baseplate, "before")
    assert destination.read_payloads(1) == ["before"]

    relay.drop_connections()
    with pytest.raises(OSError, match="closed connection"):
        publish(baseplate, "lost")
    publish(baseplate, "after")

    assert destination.read_payloads(1) == ["after"]
    assert publish_counts(statsd) == {"success": 2, "failure": 1}


def test_with_retry_kombu_reconnects_within_the_publish(baseplate, relay, destination, statsd):
    publish(baseplate, "before")
    assert destination.read_payloads(1) == ["before"]

    relay.drop_connections()
    publish(baseplate, "after", retry=True)

    assert destination.read_payloads(1) == ["after"]
    assert publish_counts(statsd) == {"success": 2, "failure": 0}


def test_publishes_fail_while_the_broker_is_down_and_work_when_it_is_back(
    baseplate, relay, destination, statsd
):
    publish(baseplate, "before")
    relay.refuse()
    with pytest.raises(OSError, match="closed connection"):  # the pooled connection was cut
        publish(baseplate, "lost")
    for _ in range(3):  # more than max_connections: no producer is lost to a failure
        with pytest.raises(OperationalError, match="Connection refused"):
            publish(baseplate, "lost")
    relay.resume()
    publish(baseplate, "after")

    assert destination.read_payloads(2) == ["before", "after"]
    assert publish_counts(statsd) == {"success": 2, "failure": 4}
