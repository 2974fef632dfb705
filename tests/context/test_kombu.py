"""``baseplate.context.kombu``: real publishes to RabbitMQ, each a child span of the request."""

from __future__ import annotations

import re
import threading
from types import SimpleNamespace

import amqp.exceptions
import kombu.pools
import pytest
from kombu.exceptions import OperationalError
from opentelemetry.trace import SpanKind, StatusCode

from baseplate.context.kombu import (
    KombuProducer,
    KombuProducerContextFactory,
    connection_from_config,
    exchange_from_config,
)
from tests.context.amqp_broker import BROKER_URL, NO_RETRIES, ROUTING_KEY, producer_factory
from tests.context.serving import make_baseplate


@pytest.fixture
def kombu_pools():
    """Closes the connections the test left in kombu's process-wide pools."""
    yield
    kombu.pools.reset()


@pytest.fixture
def factory(destination, kombu_pools):
    return producer_factory(destination.exchange.name)


@pytest.fixture
def baseplate(factory, recorder):
    return make_baseplate(recorder=recorder, amqp=factory)


def statsd_lines(statsd):
    """The lines received, sorted, with each timer's value replaced by ``<ms>``."""
    lines = b"\n".join(statsd.received()).decode().split("\n")
    timers = [re.sub(r":\d+(\.\d+)?\|ms$", ":<ms>|ms", line) for line in lines]
    return sorted(timers)


def publish_events(recorder):
    return [event for event in recorder.events if event[0] == "amqp.publish"]


# -- publishing -----------------------------------------------------------------------


def test_a_publish_reaches_the_bound_queue(baseplate, destination):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        assert isinstance(context.amqp, KombuProducer)
        context.amqp.publish({"id": 42, "name": "thing"}, routing_key=ROUTING_KEY)

    message = destination.read()
    assert message.payload == {"id": 42, "name": "thing"}
    assert message.delivery_info["exchange"] == destination.exchange.name
    assert message.delivery_info["routing_key"] == ROUTING_KEY
    assert message.content_type == "application/json"
    assert destination.queue.get(no_ack=True) is None


def test_serialization_options_pass_through(baseplate, destination):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.amqp.publish(
            {"a", "set"},  # JSON cannot encode a set
            routing_key=ROUTING_KEY,
            serializer="pickle",
            compression="zlib",
            headers={"x-origin": "test"},
            priority=3,
        )

    message = destination.read(accept=["pickle"])
    assert message.content_type == "application/x-python-serialize"
    assert message.headers["compression"] == "application/x-gzip"
    assert message.headers["x-origin"] == "test"
    assert message.properties["priority"] == 3
    assert message.payload == {"a", "set"}


def test_the_default_exchange_routes_by_queue_name(destination, kombu_pools):
    app_config = {"amqp.hostname": BROKER_URL, "amqp.exchange_type": "direct"}
    factory = KombuProducerContextFactory(
        connection_from_config(app_config), exchange_from_config(app_config)
    )
    baseplate = make_baseplate(amqp=factory)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.amqp.publish("direct to the queue", routing_key=destination.queue.name)

    message = destination.read()
    assert message.payload == "direct to the queue"
    assert message.delivery_info["exchange"] == ""


def test_publishes_from_many_requests_share_the_pool(baseplate, destination):
    for number in range(3):
        context = SimpleNamespace()
        with baseplate.make_server_span(context, "handler"):
            context.amqp.publish(number, routing_key=ROUTING_KEY)
    assert destination.read_payloads(3) == [0, 1, 2]


# -- spans and metrics ----------------------------------------------------------------


def test_a_publish_is_a_child_span_tagged_with_the_destination(baseplate, recorder, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.amqp.publish("hello", routing_key=ROUTING_KEY)

    assert ("handler", "on_child_span_created", "amqp.publish") in recorder.events
    assert publish_events(recorder) == [
        ("amqp.publish", "on_start"),
        ("amqp.publish", "on_set_tag", "kind", "producer"),
        ("amqp.publish", "on_set_tag", "message_bus.destination", ROUTING_KEY),
        ("amqp.publish", "on_finish", None),
    ]
    finished = spans.get_finished_spans()
    assert [span.name for span in finished] == ["amqp.publish", "handler"]
    child, server = finished
    assert child.kind is SpanKind.CLIENT
    assert child.parent.span_id == server.context.span_id
    assert child.context.trace_id == server.context.trace_id
    assert dict(child.attributes) == {"kind": "producer", "message_bus.destination": ROUTING_KEY}
    assert child.status.status_code is not StatusCode.ERROR


def test_without_a_routing_key_there_is_no_destination_tag(baseplate, recorder, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.amqp.publish("unroutable, dropped by the broker")
    assert publish_events(recorder) == [
        ("amqp.publish", "on_start"),
        ("amqp.publish", "on_set_tag", "kind", "producer"),
        ("amqp.publish", "on_finish", None),
    ]
    (child,) = [span for span in spans.get_finished_spans() if span.name == "amqp.publish"]
    assert dict(child.attributes) == {"kind": "producer"}


def test_a_publish_is_timed_and_counted(factory, statsd):
    baseplate = make_baseplate(statsd, amqp=factory)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.amqp.publish("one", routing_key=ROUTING_KEY)
        context.amqp.publish("two", routing_key=ROUTING_KEY)

    assert statsd_lines(statsd) == [
        "svc.clients.amqp.publish.success:2|c",
        "svc.clients.amqp.publish:<ms>|ms",
        "svc.clients.amqp.publish:<ms>|ms",
        "svc.server.handler.success:1|c",
        "svc.server.handler:<ms>|ms",
    ]


def test_names_follow_the_context_attribute(factory, destination, statsd, spans):
    baseplate = make_baseplate(statsd, events=factory)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.events.publish("hello", routing_key=ROUTING_KEY)

    assert [span.name for span in spans.get_finished_spans()] == ["events.publish", "handler"]
    assert "svc.clients.events.publish.success:1|c" in statsd_lines(statsd)
    assert destination.read().payload == "hello"


def test_a_publish_in_a_local_span_is_its_child(baseplate, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler") as server_span:  # noqa: SIM117
        with server_span.make_child("work", local=True, component_name="jobs") as local:
            local.context.amqp.publish("from the job", routing_key=ROUTING_KEY)
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert finished["amqp.publish"].parent.span_id == finished["work"].context.span_id


# -- failures -------------------------------------------------------------------------


@pytest.fixture
def unreachable_factory(destination, closed_port, kombu_pools):
    return producer_factory(destination.exchange.name, port=closed_port, **NO_RETRIES)


def test_an_unreachable_broker_raises_kombus_error_and_fails_the_span(
    unreachable_factory, recorder, statsd, spans
):
    baseplate = make_baseplate(statsd, recorder, amqp=unreachable_factory)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with pytest.raises(OperationalError, match="Connection refused"):
            context.amqp.publish("lost", routing_key=ROUTING_KEY)

    (finish,) = [event for event in publish_events(recorder) if event[1] == "on_finish"]
    assert finish[2][0] is OperationalError
    (child,) = [span for span in spans.get_finished_spans() if span.name == "amqp.publish"]
    assert child.status.status_code is StatusCode.ERROR
    assert [event.name for event in child.events] == ["exception"]
    assert statsd_lines(statsd) == [
        "svc.clients.amqp.publish.failure:1|c",
        "svc.clients.amqp.publish:<ms>|ms",
        "svc.server.handler.success:1|c",
        "svc.server.handler:<ms>|ms",
    ]


def test_a_failed_publish_leaves_the_pool_usable(unreachable_factory, destination, recorder):
    baseplate = make_baseplate(
        recorder=recorder,
        broken=unreachable_factory,
        amqp=producer_factory(destination.exchange.name, max_connections=1),
    )
    for attempt in range(2):
        context = SimpleNamespace()
        with baseplate.make_server_span(context, "handler"):
            with pytest.raises(OperationalError):
                context.broken.publish("lost", routing_key=ROUTING_KEY)
            context.amqp.publish(attempt, routing_key=ROUTING_KEY)
    assert destination.read_payloads(2) == [0, 1]


def test_a_missing_exchange_is_the_failing_publishs_error_with_confirms(
    destination, recorder, kombu_pools
):
    factory = producer_factory(
        f"{destination.exchange.name}-missing",
        max_connections=1,
        transport_options={"confirm_publish": True},
    )
    baseplate = make_baseplate(recorder=recorder, amqp=factory)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with pytest.raises(amqp.exceptions.NotFound, match="no exchange"):
            context.amqp.publish("lost", routing_key=ROUTING_KEY)
    (finish,) = [event for event in publish_events(recorder) if event[1] == "on_finish"]
    assert finish[2][0] is amqp.exceptions.NotFound

    # The broker closed the pooled producer's channel; once the exchange
    # exists, the next request's publish works on a new one.
    declared = factory.exchange(destination.exchange.channel)
    declared.declare()
    destination.queue.bind_to(declared, routing_key=ROUTING_KEY)
    try:
        with baseplate.make_server_span(SimpleNamespace(), "handler") as server_span:
            server_span.context.amqp.publish("delivered", routing_key=ROUTING_KEY)
        assert destination.read_payloads(1) == ["delivered"]
    finally:
        declared.delete()


def test_max_connections_makes_publishes_wait_for_a_free_producer(destination, kombu_pools, spans):
    factory = producer_factory(destination.exchange.name, max_connections=1)
    baseplate = make_baseplate(amqp=factory)
    outcome = []

    def publish_in_a_request():
        context = SimpleNamespace()
        with baseplate.make_server_span(context, "handler"):
            context.amqp.publish("waited", routing_key=ROUTING_KEY)
        outcome.append("published")

    held = factory.producers[factory.connection].acquire(block=True)
    publisher = threading.Thread(target=publish_in_a_request)
    try:
        publisher.start()
        publisher.join(0.3)
        assert publisher.is_alive(), "the publish did not wait for the only producer"
    finally:
        held.release()
        publisher.join(5)
    assert outcome == ["published"]
    assert destination.read_payloads(1) == ["waited"]
    (child,) = [span for span in spans.get_finished_spans() if span.name == "amqp.publish"]
    assert child.end_time - child.start_time >= 0.3e9  # the wait is part of the publish
