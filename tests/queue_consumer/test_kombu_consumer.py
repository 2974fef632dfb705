"""``KombuConsumer``: each get is a child span of the caller's server span, timed and
counted by the metrics observer."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from kombu import Connection
from opentelemetry.trace import SpanKind, StatusCode

from baseplate.queue_consumer import ConsumerStoppedError, KombuConsumer
from tests._helpers import wait_until
from tests.context.amqp_broker import BROKER_URL
from tests.context.serving import make_baseplate, statsd_lines


@pytest.fixture
def consumer(make_consumer, test_queue):
    return make_consumer(KombuConsumer, Connection(BROKER_URL), test_queue.queues())


def metric_lines(statsd):
    """The statsd lines, sorted, each timer's value replaced by ``<ms>``."""
    lines = [re.sub(r":\d+(\.\d+)?\|ms$", ":<ms>|ms", line) for line in statsd_lines(statsd)]
    return sorted(lines)


def test_get_message_is_a_child_span_tagged_with_the_delivery(
    consumer, test_queue, recorder, spans
):
    baseplate = make_baseplate(recorder=recorder)
    test_queue.publish("hello", routing_key="things.deleted")

    with baseplate.make_server_span(SimpleNamespace(), "batch_job") as server_span:
        message = consumer.get_message(server_span)
        message.ack()

    assert message.body == "hello"
    delivery_tag = message.delivery_info["delivery_tag"]
    consumer_tag = message.delivery_info["consumer_tag"]
    assert [event for event in recorder.events if event[0] == "kombu.get_message"] == [
        ("kombu.get_message", "on_start"),
        ("kombu.get_message", "on_set_tag", "kind", "consumer"),
        ("kombu.get_message", "on_set_tag", "routing_key", "things.deleted"),
        ("kombu.get_message", "on_set_tag", "consumer_tag", consumer_tag),
        ("kombu.get_message", "on_set_tag", "delivery_tag", delivery_tag),
        ("kombu.get_message", "on_set_tag", "exchange", test_queue.name),
        ("kombu.get_message", "on_finish", None),
    ]
    child, server = spans.get_finished_spans()
    assert (child.name, server.name) == ("kombu.get_message", "batch_job")
    assert child.parent.span_id == server.context.span_id
    assert child.kind is SpanKind.CLIENT
    assert dict(child.attributes) == {
        "kind": "consumer",
        "routing_key": "things.deleted",
        "consumer_tag": consumer_tag,
        "delivery_tag": delivery_tag,
        "exchange": test_queue.name,
    }


def batch_events(count):
    return [
        ("kombu.get_batch", "on_start"),
        ("kombu.get_batch", "on_set_tag", "kind", "consumer"),
        ("kombu.get_batch", "on_set_tag", "message_count", count),
        ("kombu.get_batch", "on_finish", None),
    ]


def test_get_batch_is_a_child_span_tagged_with_the_message_count(
    consumer, test_queue, recorder, spans
):
    baseplate = make_baseplate(recorder=recorder)
    test_queue.publish("a", "b", "c")
    wait_until(lambda: consumer.worker.work_queue.qsize() == 3, "three messages received")

    with baseplate.make_server_span(SimpleNamespace(), "batch_job") as server_span:
        batch = consumer.get_batch(server_span, max_items=10, timeout=0)
        for message in batch:
            message.ack()
        empty = consumer.get_batch(server_span, max_items=10, timeout=0)

    assert [message.body for message in batch] == ["a", "b", "c"]
    assert empty == []
    assert [event for event in recorder.events if event[0] == "kombu.get_batch"] == [
        *batch_events(3),
        *batch_events(0),
    ]
    finished = spans.get_finished_spans()
    assert [span.name for span in finished] == ["kombu.get_batch", "kombu.get_batch", "batch_job"]
    assert dict(finished[0].attributes) == {"kind": "consumer", "message_count": 3}


def test_gets_are_timed_and_counted_as_client_calls(consumer, test_queue, statsd):
    baseplate = make_baseplate(statsd)
    test_queue.publish("one", "two", "three")

    with baseplate.make_server_span(SimpleNamespace(), "batch_job") as server_span:
        consumer.get_message(server_span).ack()
        for message in consumer.get_batch(server_span, max_items=2, timeout=None):
            message.ack()

    assert metric_lines(statsd) == [
        "svc.clients.kombu.get_batch.success:1|c",
        "svc.clients.kombu.get_batch:<ms>|ms",
        "svc.clients.kombu.get_message.success:1|c",
        "svc.clients.kombu.get_message:<ms>|ms",
        "svc.server.batch_job.success:1|c",
        "svc.server.batch_job:<ms>|ms",
    ]


def test_a_stopped_consumer_fails_the_span(consumer, statsd, spans):
    baseplate = make_baseplate(statsd)
    consumer.stop()

    with (
        pytest.raises(ConsumerStoppedError),
        baseplate.make_server_span(SimpleNamespace(), "batch_job") as server_span,
    ):
        consumer.get_message(server_span)

    child = spans.get_finished_spans()[0]
    assert child.name == "kombu.get_message"
    assert child.status.status_code is StatusCode.ERROR
    assert "svc.clients.kombu.get_message.failure:1|c" in metric_lines(statsd)
