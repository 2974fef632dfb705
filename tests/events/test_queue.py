"""EventQueue on real POSIX queues.

The queues are made beforehand with small sizes, which EventQueue opens as
they are: creating ``/events-NAME`` with the original's sizes needs the
system's ``fs.mqueue`` limits raised, and every queue counts against the
user's RLIMIT_MSGQUEUE, which other test runs share.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import posix_ipc
import pytest

from baseplate.core import Baseplate
from baseplate.events import (
    Event,
    EventQueue,
    EventQueueFullError,
    EventTooLargeError,
    serialize_v2_event,
)
from baseplate.events.queue import MAX_EVENT_SIZE, MAX_QUEUE_SIZE
from baseplate.message_queue import InvalidParametersError
from tests._helpers import fresh_queue_name
from tests.events.v2_struct import VectorEvent

SMALL_MAX_MESSAGES = 2
SMALL_MAX_MESSAGE_SIZE = 2048


@pytest.fixture
def queue_name() -> Iterator[str]:
    with fresh_queue_name("/events-") as name:
        yield name


@pytest.fixture
def reader(queue_name: str) -> Iterator[posix_ipc.MessageQueue]:
    """The queue, created small, as the publisher would read it."""
    queue = posix_ipc.MessageQueue(
        f"/events-{queue_name}",
        flags=posix_ipc.O_CREX,
        max_messages=SMALL_MAX_MESSAGES,
        max_message_size=SMALL_MAX_MESSAGE_SIZE,
    )
    yield queue
    queue.close()


@pytest.fixture
def events(queue_name: str, reader: posix_ipc.MessageQueue) -> Iterator[EventQueue]:
    queue = EventQueue(queue_name)
    yield queue
    queue.queue.close()


def make_event(**fields: object) -> Event:
    event = Event("topic", "type", id="fixed-id")
    for key, value in fields.items():
        event.set_field(key, value)
    return event


def test_put_sends_one_serialized_event_per_message(events, reader):
    first, second = make_event(n=1), make_event(n=2)
    events.put(first)
    events.put(second)
    assert reader.receive(0)[0] == first.serialize().encode()
    assert reader.receive(0)[0] == second.serialize().encode()


def test_a_full_queue_raises_at_once(events, reader):
    for n in range(SMALL_MAX_MESSAGES):
        events.put(make_event(n=n))
    outcome: list[BaseException] = []

    def put() -> None:
        try:
            events.put(make_event(n="one too many"))
        except BaseException as exc:
            outcome.append(exc)

    # Nothing drains the queue: a put that waited for room would never return.
    thread = threading.Thread(target=put, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "put waited for room on a full queue"
    assert len(outcome) == 1
    assert isinstance(outcome[0], EventQueueFullError)
    assert reader.current_messages == SMALL_MAX_MESSAGES


def test_room_made_by_the_reader_is_used_again(events, reader):
    for n in range(SMALL_MAX_MESSAGES):
        events.put(make_event(n=n))
    with pytest.raises(EventQueueFullError):
        events.put(make_event(n="late"))
    reader.receive(0)
    events.put(make_event(n="late"))
    assert reader.current_messages == SMALL_MAX_MESSAGES


@pytest.mark.parametrize(
    "limit",
    [
        pytest.param(MAX_EVENT_SIZE, id="over-the-maximum-size"),
        pytest.param(SMALL_MAX_MESSAGE_SIZE, id="over-the-size-of-a-smaller-queue"),
    ],
)
def test_an_event_too_large_is_refused_and_not_sent(events, reader, limit):
    event = make_event(pad="x" * limit)
    with pytest.raises(EventTooLargeError) as info:
        events.put(event)
    assert info.value.size == len(event.serialize())
    assert reader.current_messages == 0


def test_v2_events_are_sent_as_thrift_json(queue_name, reader):
    queue = EventQueue(queue_name, event_serializer=serialize_v2_event)
    try:
        queue.put(VectorEvent(action="vote", client_timestamp=1500000000123))
    finally:
        queue.queue.close()
    assert reader.receive(0)[0] == b'{"1":{"str":"vote"},"2":{"i64":1500000000123}}'


def test_a_context_factory_giving_every_request_the_queue(events, reader):
    baseplate = Baseplate()
    baseplate.add_to_context("events", events)
    context = type("Context", (), {})()
    with baseplate.make_server_span(context, "handler"):
        assert context.events is events
        context.events.put(make_event(request=1))
    assert reader.current_messages == 1


MSG_MAX = int(Path("/proc/sys/fs/mqueue/msg_max").read_text())


@pytest.mark.skipif(MSG_MAX >= MAX_QUEUE_SIZE, reason="fs.mqueue.msg_max is raised on this machine")
def test_creating_the_queue_names_the_limit_to_raise(queue_name):
    with pytest.raises(InvalidParametersError) as info:
        EventQueue(queue_name)
    assert info.value.setting == "fs.mqueue.msg_max"
    assert f"max_messages={MAX_QUEUE_SIZE}" in str(info.value)
