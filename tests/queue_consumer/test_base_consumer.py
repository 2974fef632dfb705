"""``BaseKombuConsumer`` alone, on the real broker: the worker thread, the bounded local
queue, batches, and stopping."""

from __future__ import annotations

import logging
import time

import pytest
from kombu import Connection

from baseplate.queue_consumer import BaseKombuConsumer, ConsumerStoppedError
from tests._helpers import wait_until
from tests.context.amqp_broker import BROKER_URL, NO_RETRIES


@pytest.fixture
def consumer(make_consumer, test_queue):
    return make_consumer(BaseKombuConsumer, Connection(BROKER_URL), test_queue.queues())


def local_count(consumer):
    return consumer.worker.work_queue.qsize()


def test_messages_arrive_in_order_with_their_delivery_info(consumer, test_queue):
    test_queue.publish("one", "two")
    test_queue.publish("three", routing_key="things.deleted")

    first = consumer.get_message()
    batch = consumer.get_batch(max_items=2, timeout=None)

    assert [first.body, *(message.body for message in batch)] == ["one", "two", "three"]
    assert first.delivery_info["exchange"] == test_queue.name
    assert first.delivery_info["routing_key"] == "things.created"
    assert batch[1].delivery_info["routing_key"] == "things.deleted"
    assert first.delivery_info["redelivered"] is False


def test_acknowledged_messages_leave_the_queue_and_the_others_come_back(consumer, test_queue):
    test_queue.publish("acked", "rejected", "requeued", "unacknowledged")
    acked, rejected, requeued, unacknowledged = consumer.get_batch(4, timeout=None)
    acked.ack()
    rejected.reject()
    requeued.requeue()
    assert unacknowledged.body == "unacknowledged"

    again = consumer.get_message()
    assert again.body == "requeued"
    assert again.delivery_info["redelivered"] is True
    again.ack()

    consumer.stop()
    test_queue.wait_for_ready_count(1)
    assert test_queue.drain() == ["unacknowledged"]


def test_a_batch_ends_at_max_items(consumer, test_queue):
    test_queue.publish(*(f"m{number}" for number in range(5)))
    wait_until(lambda: local_count(consumer) == 5, "five messages in the local queue")

    assert [message.body for message in consumer.get_batch(3, timeout=30)] == ["m0", "m1", "m2"]
    assert [message.body for message in consumer.get_batch(3, timeout=0)] == ["m3", "m4"]


def test_a_batch_ends_when_its_timeout_has_passed(consumer, test_queue):
    test_queue.publish("only")
    started = time.monotonic()
    batch = consumer.get_batch(10, timeout=0.3)
    assert [message.body for message in batch] == ["only"]
    assert time.monotonic() - started >= 0.3

    assert consumer.get_batch(10, timeout=0.1) == []


def test_a_batch_without_waiting_takes_every_message_at_hand(consumer, test_queue):
    assert consumer.get_batch(10, timeout=0) == []
    test_queue.publish("a", "b", "c")
    wait_until(lambda: local_count(consumer) == 3, "three messages in the local queue")

    assert [message.body for message in consumer.get_batch(10, timeout=0)] == ["a", "b", "c"]
    assert consumer.get_batch(10, timeout=0) == []


@pytest.mark.parametrize(
    ("max_items", "timeout", "error"),
    [
        (0, None, "max_items must be at least 1, not 0"),
        (1, -1, "timeout must be None or at least 0 seconds, not -1"),
        (1, float("nan"), "timeout must be None or at least 0 seconds, not nan"),
    ],
)
def test_bad_batch_arguments_are_refused(consumer, max_items, timeout, error):
    with pytest.raises(ValueError, match=error):
        consumer.get_batch(max_items, timeout)


def test_the_local_queue_holds_at_most_queue_size_messages(make_consumer, test_queue):
    consumer = make_consumer(
        BaseKombuConsumer, Connection(BROKER_URL), test_queue.queues(), queue_size=3
    )
    assert consumer.worker.work_queue.maxsize == 3
    wait_until(lambda: test_queue.consumer_count() == 1, "the consumer to be registered")
    bodies = [f"m{number}" for number in range(10)]
    test_queue.publish(*bodies)
    # No prefetch limit (as in the original): the broker hands every message
    # over at once, and the worker waits with the local queue full.
    test_queue.wait_for_ready_count(0)
    wait_until(lambda: local_count(consumer) == 3, "a full local queue")
    time.sleep(0.2)  # room for a (wrong) fourth message to arrive
    assert local_count(consumer) == 3

    received = [consumer.get_message() for _ in bodies]
    assert [message.body for message in received] == bodies
    for message in received:
        message.ack()


def test_the_default_queue_size_is_bounded(consumer):
    assert consumer.worker.work_queue.maxsize == 100


# -- stopping -------------------------------------------------------------------------


def test_stopping_gives_back_every_unacknowledged_message(consumer, test_queue):
    test_queue.publish(*(f"m{number}" for number in range(6)))
    wait_until(lambda: local_count(consumer) == 6, "six messages in the local queue")
    taken = consumer.get_batch(2, timeout=None)
    taken[0].ack()

    consumer.stop()

    assert not consumer.worker_thread.is_alive()
    test_queue.wait_for_ready_count(5)
    assert test_queue.drain() == ["m1", "m2", "m3", "m4", "m5"]


def test_after_stopping_getting_a_message_raises(consumer, test_queue):
    test_queue.publish("left behind")
    wait_until(lambda: local_count(consumer) == 1, "a message in the local queue")
    consumer.stop()

    with pytest.raises(ConsumerStoppedError, match=r"worker has stopped$"):
        consumer.get_message()
    with pytest.raises(ConsumerStoppedError):
        consumer.get_batch(5, timeout=0)
    with pytest.raises(ConsumerStoppedError):
        consumer.get_batch(5, timeout=None)
    test_queue.wait_for_ready_count(1)


def test_a_consumer_waiting_when_the_worker_stops_is_woken(consumer):
    waiting_since = time.monotonic()
    consumer.worker.should_stop = True  # the worker sees it within a second

    with pytest.raises(ConsumerStoppedError):
        consumer.get_batch(1, timeout=30)
    assert time.monotonic() - waiting_since < 30


def test_a_worker_connecting_to_a_missing_broker_stops_when_asked(
    make_consumer, test_queue, closed_port, caplog
):
    connection = Connection(f"amqp://guest:guest@127.0.0.1:{closed_port}//", **NO_RETRIES)
    consumer = make_consumer(BaseKombuConsumer, connection, test_queue.queues())
    wait_until(lambda: "Broker connection error" in caplog.text, "a failed connection attempt")
    assert consumer.get_batch(1, timeout=0) == []

    consumer.stop(timeout=30)

    assert not consumer.worker_thread.is_alive()
    with pytest.raises(ConsumerStoppedError) as raised:
        consumer.get_message()
    assert raised.value.__cause__ is None


def test_a_worker_that_fails_is_logged_and_its_error_raised_to_the_consumer(make_consumer, caplog):
    not_a_queue = object()
    consumer = make_consumer(BaseKombuConsumer, Connection(BROKER_URL), [not_a_queue])

    with pytest.raises(ConsumerStoppedError, match="after an error: AttributeError") as raised:
        consumer.get_message()

    assert isinstance(raised.value.__cause__, AttributeError)
    failures = [
        record
        for record in caplog.records
        if record.name == "baseplate.queue_consumer" and record.levelno == logging.ERROR
    ]
    assert [record.getMessage() for record in failures] == [
        "the queue consumer's worker failed and stopped"
    ]
    assert failures[0].exc_info[1] is raised.value.__cause__
