"""``baseplate.context.redis.MessageQueue`` on the Redis at 127.0.0.1:6379.

Each test's queue is a key of its own (``redis_key``), deleted after it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import redis

from baseplate.context import redis as redis_context
from baseplate.context.redis import MessageQueue, RedisContextFactory, pool_from_config
from baseplate.message_queue import InvalidParametersError, MessageQueueError, TimedOutError
from baseplate.testing import RecordingObserver
from tests.context.serving import make_baseplate

REDIS_URL = "redis://127.0.0.1:6379/0"

MakeQueue = Callable[..., MessageQueue]


@pytest.fixture
def pools() -> Iterator[Callable[..., redis.ConnectionPool]]:
    """Pools to the test Redis (options as keyword arguments), disconnected after the test."""
    made: list[redis.ConnectionPool] = []

    def make(**options) -> redis.ConnectionPool:
        made.append(redis.ConnectionPool(host="127.0.0.1", port=6379, **options))
        return made[-1]

    yield make
    for pool in made:
        pool.disconnect()


@pytest.fixture
def make_queue(redis_key, pools) -> MakeQueue:
    """The test's queue, on a pool made with the given options."""

    def make(**options) -> MessageQueue:
        return MessageQueue(redis_key, pools(**options))

    return make


@pytest.fixture
def queue(make_queue) -> MessageQueue:
    return make_queue()


def later(delay: float, action: Callable[[], object]) -> threading.Thread:
    """Run ``action`` in a thread after ``delay`` seconds."""

    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# -- transfers ---------------------------------------------------------------------------


def test_put_get(queue):
    with contextlib.closing(queue) as mq:
        mq.put(b"x")
        assert mq.get() == b"x"


def test_messages_come_out_in_order(queue):
    for number in range(5):
        queue.put(f"message {number}".encode())
    assert [queue.get(timeout=0) for _ in range(5)] == [f"message {n}".encode() for n in range(5)]


def test_the_queue_is_a_redis_list_shared_by_every_client(queue, redis_key, pools):
    queue.put(b"first")
    other = MessageQueue(redis_key, pools())
    assert other.get(timeout=0) == b"first"
    redis.Redis(connection_pool=pools()).rpush(redis_key, b"pushed")
    assert queue.get(timeout=0) == b"pushed"


def test_put_returns_the_length_of_the_queue(queue):
    assert queue.put(b"a") == 1
    assert queue.put(b"b", timeout=0) == 2  # put never waits


@pytest.mark.parametrize(
    ("message", "stored"),
    [
        (b"bytes", b"bytes"),
        ("text \N{SNOWMAN}", "text \N{SNOWMAN}".encode()),
        (b"", b""),
        (42, b"42"),
        (1.5, b"1.5"),
        (True, b"True"),
        (bytearray(b"array"), b"array"),
        (None, b"None"),
        ({"a": 1}, b"{'a': 1}"),
    ],
)
def test_messages_are_stored_as_strings(queue, message, stored):
    queue.put(message)
    assert queue.get(timeout=0) == stored


def test_a_pool_that_decodes_gives_text(make_queue):
    queue = make_queue(decode_responses=True)
    queue.put(b"decoded")
    assert queue.get(timeout=0) == "decoded"


# -- timeouts ----------------------------------------------------------------------------


def test_get_zero_timeout(queue):
    queue.put(b"y")
    assert queue.get(timeout=0) == b"y"
    with pytest.raises(TimedOutError) as info:
        queue.get(timeout=0)
    assert isinstance(info.value, MessageQueueError)
    assert repr(queue.queue) in str(info.value)


def test_a_negative_timeout_means_do_not_wait(queue):
    with pytest.raises(TimedOutError):
        queue.get(timeout=-1)


def test_get_times_out_on_an_empty_queue_after_whole_seconds(queue):
    started = time.monotonic()
    with pytest.raises(TimedOutError):
        queue.get(timeout=0.2)
    # Rounded up to a second, as in the original (Redis before 6.0 waits in seconds).
    assert time.monotonic() - started >= 0.9


@pytest.mark.parametrize("timeout", [None, float("inf"), 1e17, 10])
def test_a_blocked_get_wakes_up_on_put(queue, timeout):
    putter = later(0.2, lambda: queue.put(b"wake up"))
    try:
        assert queue.get(timeout=timeout) == b"wake up"
    finally:
        putter.join(10)


@pytest.mark.parametrize("timeout", [float("nan"), 1e19])
def test_nan_and_overlong_timeouts_are_refused(queue, timeout):
    with pytest.raises(InvalidParametersError, match="timeout") as info:
        queue.get(timeout=timeout)
    assert isinstance(info.value, ValueError)


# -- waiting longer than the socket timeout ------------------------------------------------


def test_the_library_default_socket_timeout_is_known():
    # redis-py gives connections made without a socket timeout this one (5
    # seconds since redis-py 8); if this fails, the way MessageQueue reads it
    # (the signature of redis.connection.AbstractConnection) has changed.
    connection = redis.connection.Connection()
    assert connection.socket_timeout == redis_context._LIBRARY_SOCKET_TIMEOUT


def test_waits_longer_than_the_socket_timeout_time_out_cleanly(make_queue):
    queue = make_queue(socket_timeout=2)
    with pytest.raises(TimedOutError):
        queue.get(timeout=1.5)  # 2 seconds, in BLPOPs of 1


def test_a_socket_timeout_too_short_to_block_in_polls(make_queue):
    # BLPOP cannot wait a whole second within 0.2 seconds: get asks with LPOP.
    queue = make_queue(socket_timeout=0.2)
    with pytest.raises(TimedOutError):
        queue.get(timeout=0.5)
    putter = later(0.5, lambda: queue.put(b"late"))
    try:
        assert queue.get() == b"late"
    finally:
        putter.join(10)


def test_a_configured_pool_waits_past_its_socket_timeout(redis_key):
    pool = pool_from_config({"redis.url": REDIS_URL, "redis.socket_timeout": "1 second"})
    queue = MessageQueue(redis_key, pool)
    putter = later(1.5, lambda: queue.put(b"after the socket timeout"))
    try:
        assert queue.get(timeout=5) == b"after the socket timeout"
    finally:
        putter.join(10)
        pool.disconnect()


# -- unlink and close ---------------------------------------------------------------------


def test_close_deletes_the_queue_which_can_still_be_used(queue, pools, redis_key):
    queue.put(b"dropped")
    queue.close()
    assert redis.Redis(connection_pool=pools()).exists(redis_key) == 0
    queue.put(b"again")
    assert queue.get(timeout=0) == b"again"


def test_unlink_does_nothing(queue):
    queue.put(b"kept")
    queue.unlink()
    queue.unlink()
    assert queue.get(timeout=0) == b"kept"


# -- clients ----------------------------------------------------------------------------


def test_a_blocking_pool_from_config(redis_key):
    pool = pool_from_config({"redis.url": REDIS_URL, "redis.max_connections": "1"})
    queue = MessageQueue(redis_key, pool)
    assert isinstance(queue.client, redis.Redis)
    assert queue.client.connection_pool is pool
    queue.put(b"blocking")
    assert queue.get(timeout=1) == b"blocking"
    pool.disconnect()


def test_a_client_is_used_as_it_is(redis_key, pools):
    client = redis.Redis(connection_pool=pools())
    queue = MessageQueue(redis_key, client)
    assert queue.client is client
    assert "MessageQueue" in repr(queue)
    assert repr(redis_key) in repr(queue)


def test_on_the_request_connection_each_command_is_a_span(redis_key, pools, statsd):
    recorder = RecordingObserver()
    baseplate = make_baseplate(statsd, recorder, redis=RedisContextFactory(pools(socket_timeout=2)))
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        queue = MessageQueue(redis_key, context.redis)
        queue.put(b"traced")
        assert queue.get() == b"traced"
        with pytest.raises(TimedOutError):
            queue.get(timeout=0)
        with pytest.raises(TimedOutError):
            queue.get(timeout=2)  # two BLPOPs of 1 second: the socket timeout is 2
        queue.close()
    created = [event[2] for event in recorder.events_named("on_child_span_created")]
    assert created == [
        "redis.RPUSH",
        "redis.BLPOP",
        "redis.LPOP",
        "redis.BLPOP",
        "redis.BLPOP",
        "redis.DEL",
    ]
    assert all(event[2] is None for event in recorder.events_named("on_finish"))
    lines = b"\n".join(statsd.received()).decode().split("\n")
    timers = [re.sub(r":[0-9.]+\|ms$", ":TIMER|ms", line) for line in lines]
    assert timers == [
        "svc.clients.redis.RPUSH:TIMER|ms",
        "svc.clients.redis.BLPOP:TIMER|ms",
        "svc.clients.redis.LPOP:TIMER|ms",
        "svc.clients.redis.BLPOP:TIMER|ms",
        "svc.clients.redis.BLPOP:TIMER|ms",
        "svc.clients.redis.DEL:TIMER|ms",
        "svc.server.handler:TIMER|ms",
        "svc.clients.redis.RPUSH.success:1|c",
        "svc.clients.redis.BLPOP.success:3|c",
        "svc.clients.redis.LPOP.success:1|c",
        "svc.clients.redis.DEL.success:1|c",
        "svc.server.handler.success:1|c",
    ]


def test_polling_on_the_request_connection_is_a_span_per_poll(redis_key, pools):
    recorder = RecordingObserver()
    baseplate = make_baseplate(
        recorder=recorder, redis=RedisContextFactory(pools(socket_timeout=0.5))
    )
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"), pytest.raises(TimedOutError):
        MessageQueue(redis_key, context.redis).get(timeout=0.3)  # 1 second, in polls
    created = [event[2] for event in recorder.events_named("on_child_span_created")]
    assert len(created) >= 5
    assert set(created) == {"redis.LPOP"}
