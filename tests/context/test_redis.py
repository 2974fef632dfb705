"""``baseplate.context.redis``: real commands to the Redis on 127.0.0.1:6379, each a child span.

Every test uses keys of its own (``redis_key`` and keys made from it) and
deletes them afterwards.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import redis
from opentelemetry.trace import SpanKind, StatusCode
from redis.lock import Lock

from baseplate.config import ConfigurationError
from baseplate.context.redis import (
    MonitoredRedisConnection,
    MonitoredRedisPipeline,
    MonitoredRedisPubSub,
    RedisContextFactory,
    pool_from_config,
)
from baseplate.core import Baseplate
from baseplate.testing import RecordingObserver
from tests.context.serving import make_baseplate, statsd_lines

REDIS_URL = "redis://127.0.0.1:6379/0"
TIMER = r"[0-9]+(?:\.[0-9]+)?"


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def pool() -> Iterator[redis.ConnectionPool]:
    pool = redis.ConnectionPool(host="127.0.0.1", port=6379)
    yield pool
    pool.disconnect()


@pytest.fixture
def plain(pool) -> redis.Redis:
    """An uninstrumented client, to look at and change what the tests did."""
    return redis.Redis(connection_pool=pool)


@pytest.fixture
def key_for(redis_key, plain) -> Iterator[Callable[[str], str]]:
    """More keys for the test, made from ``redis_key`` and deleted after it."""
    made: list[str] = []

    def key_for(suffix: str) -> str:
        made.append(f"{redis_key}:{suffix}")
        return made[-1]

    yield key_for
    if made:
        plain.delete(*made)


@pytest.fixture
def baseplate(pool, recorder, statsd) -> Baseplate:
    return make_baseplate(statsd, recorder, redis=RedisContextFactory(pool))


@pytest.fixture
def request_context(baseplate) -> Callable[..., object]:
    """``with request_context() as context:`` handles one request named ``handler``."""

    class Request:
        def __init__(self, name: str = "handler") -> None:
            self.context = SimpleNamespace()
            self.span = baseplate.make_server_span(self.context, name)

        def __enter__(self) -> SimpleNamespace:
            self.span.start()
            return self.context

        def __exit__(self, *exc_info: object) -> None:
            self.span.__exit__(*exc_info)

    return Request


def child_names(recorder: RecordingObserver, parent: str = "handler") -> list[str]:
    return [event[2] for event in recorder.events if event[:2] == (parent, "on_child_span_created")]


def finishes(recorder: RecordingObserver, name: str) -> list[object]:
    """The ``exc_info`` of each finish of the spans named ``name``, in order."""
    return [event[2] for event in recorder.events if event[:2] == (name, "on_finish")]


def assert_lines(lines: list[str], expected: list[str]) -> None:
    """``lines`` are ``expected``, in order; ``TIMER`` in an expected line matches any duration."""
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        regex = re.escape(pattern).replace(re.escape("TIMER"), TIMER)
        assert re.fullmatch(regex, line), (line, pattern, lines)


# -- pool_from_config -------------------------------------------------------------------


def test_url_is_required():
    with pytest.raises(ConfigurationError) as info:
        pool_from_config({})
    assert info.value.key == "redis.url"
    assert str(info.value) == "redis.url: required but missing"


def test_url_is_required_under_an_alternate_prefix():
    with pytest.raises(ConfigurationError) as info:
        pool_from_config({"redis.url": REDIS_URL}, prefix="noodle.")
    assert info.value.key == "noodle.url"


def test_basic_url():
    pool = pool_from_config({"redis.url": "redis://localhost:1234/3"})
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert pool.connection_kwargs["host"] == "localhost"
    assert pool.connection_kwargs["port"] == 1234
    assert pool.connection_kwargs["db"] == 3
    assert "socket_timeout" not in pool.connection_kwargs
    assert "socket_connect_timeout" not in pool.connection_kwargs


def test_alternate_prefix():
    pool = pool_from_config(
        {"redis.url": REDIS_URL, "noodle.url": "redis://localhost:1234/0"}, prefix="noodle."
    )
    assert pool.connection_kwargs["port"] == 1234


def test_timeouts_are_timespans():
    pool = pool_from_config(
        {
            "redis.url": REDIS_URL,
            "redis.socket_timeout": "30 seconds",
            "redis.socket_connect_timeout": "300 milliseconds",
        }
    )
    assert pool.connection_kwargs["socket_timeout"] == 30
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.3


def test_max_connections():
    pool = pool_from_config({"redis.url": REDIS_URL, "redis.max_connections": "300"})
    assert pool.max_connections == 300


def test_keyword_arguments_are_passed_through_and_win():
    pool = pool_from_config(
        {"redis.url": REDIS_URL, "redis.max_connections": "5", "redis.socket_timeout": "1 second"},
        example="present",
        max_connections=7,
        socket_timeout=2.5,
    )
    assert pool.connection_kwargs["example"] == "present"
    assert pool.max_connections == 7
    assert pool.connection_kwargs["socket_timeout"] == 2.5


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("redis.url", "localhost:6379", "invalid value 'localhost:6379'"),
        ("redis.max_connections", "0", "must be at least 1"),
        ("redis.max_connections", "lots", "invalid value 'lots'"),
        ("redis.socket_timeout", "soon", "invalid value 'soon'"),
        ("redis.socket_timeout", "0 seconds", "must be longer than zero"),
        ("redis.socket_connect_timeout", "0 milliseconds", "must be longer than zero"),
    ],
)
def test_invalid_values_name_their_key(key, value, error):
    with pytest.raises(ConfigurationError) as info:
        pool_from_config({"redis.url": REDIS_URL, key: value})
    assert info.value.key == key
    assert error in str(info.value)


def test_prefix_must_end_with_a_dot():
    with pytest.raises(ValueError, match="dot"):
        pool_from_config({"redis.url": REDIS_URL}, prefix="redis")


def test_a_configured_pool_talks_to_redis(recorder, redis_key):
    pool = pool_from_config(
        {"redis.url": REDIS_URL, "redis.max_connections": "2", "redis.socket_timeout": "5 seconds"}
    )
    baseplate = make_baseplate(recorder=recorder, redis=RedisContextFactory(pool))
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.redis.set(redis_key, "configured")
        assert context.redis.get(redis_key) == b"configured"
    pool.disconnect()


# -- the connection ---------------------------------------------------------------------


def test_the_context_gets_a_monitored_strict_redis(request_context, pool):
    with request_context() as context:
        assert isinstance(context.redis, MonitoredRedisConnection)
        assert isinstance(context.redis, redis.StrictRedis)
        assert context.redis.connection_pool is pool
        assert context.redis.context_name == "redis"


def test_each_request_gets_its_own_connection(request_context):
    with request_context() as first:
        pass
    with request_context() as second:
        pass
    assert first.redis is not second.redis
    assert first.redis.server_span is not second.redis.server_span
    assert first.redis.server_span.name == "handler"


def test_a_response_callback_is_set_for_one_connection_alone(request_context, plain, redis_key):
    plain.set(redis_key, "value")
    with request_context() as first:
        first.redis.set_response_callback("GET", lambda response, **options: b"changed")
        assert first.redis.get(redis_key) == b"changed"
    with request_context() as second:
        assert second.redis.get(redis_key) == b"value"


def test_a_connection_made_directly_works(pool, recorder, redis_key):
    baseplate = make_baseplate(recorder=recorder)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler") as server_span:
        connection = MonitoredRedisConnection("cache", server_span, pool)
        connection.set(redis_key, "direct")
    assert child_names(recorder) == ["cache.SET"]


# -- commands ---------------------------------------------------------------------------


def test_each_command_is_a_child_span(request_context, recorder, spans, redis_key):
    with request_context() as context:
        assert context.redis.set(redis_key, "value") is True
        assert context.redis.get(redis_key) == b"value"

    assert [event for event in recorder.events if event[0] != "handler"] == [
        ("redis.SET", "on_start"),
        ("redis.SET", "on_finish", None),
        ("redis.GET", "on_start"),
        ("redis.GET", "on_finish", None),
    ]
    assert child_names(recorder) == ["redis.SET", "redis.GET"]

    finished = spans.get_finished_spans()
    assert [span.name for span in finished] == ["redis.SET", "redis.GET", "handler"]
    server = finished[-1]
    for span in finished[:-1]:
        assert span.kind is SpanKind.CLIENT
        assert span.parent.span_id == server.context.span_id
        assert span.context.trace_id == server.context.trace_id
        assert span.status.status_code is StatusCode.UNSET
    assert finished[0].end_time <= finished[1].start_time


def test_each_command_is_timed_and_counted(request_context, statsd, redis_key):
    with request_context("store") as context:
        context.redis.set(redis_key, "value")
        context.redis.get(redis_key)
        context.redis.get(redis_key)

    assert_lines(
        statsd_lines(statsd),
        [
            "svc.clients.redis.SET:TIMER|ms",
            "svc.clients.redis.GET:TIMER|ms",
            "svc.clients.redis.GET:TIMER|ms",
            "svc.server.store:TIMER|ms",
            "svc.clients.redis.SET.success:1|c",
            "svc.clients.redis.GET.success:2|c",
            "svc.server.store.success:1|c",
        ],
    )


def test_span_names_follow_the_context_attribute(pool, recorder, redis_key):
    baseplate = make_baseplate(
        recorder=recorder, cache=RedisContextFactory(pool), sessions=RedisContextFactory(pool)
    )
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.cache.exists(redis_key)
        context.sessions.exists(redis_key)
    assert child_names(recorder) == ["cache.EXISTS", "sessions.EXISTS"]


def test_commands_of_several_words_are_joined_with_underscores(request_context, recorder, statsd):
    with request_context() as context:
        assert context.redis.config_get("maxmemory")
        assert isinstance(context.redis.client_list(), list)
        assert context.redis.execute_command(b"PING") == b"PONG"  # no callback for bytes
    assert child_names(recorder) == ["redis.CONFIG_GET", "redis.CLIENT_LIST", "redis.PING"]
    lines = statsd_lines(statsd)
    assert "svc.clients.redis.CONFIG_GET.success:1|c" in lines
    assert not any(" " in line for line in lines), lines


def test_a_failed_command_is_a_failure_and_its_error_reaches_the_caller(
    request_context, recorder, spans, statsd
):
    with request_context() as context:
        with pytest.raises(redis.ResponseError) as info:
            context.redis.execute_command("crazycommand")
        assert type(info.value) is redis.ResponseError
        assert "unknown command" in str(info.value)
        assert context.redis.ping() is True  # the connection is still good

    (exc_info,) = finishes(recorder, "redis.crazycommand")
    assert exc_info[0] is redis.ResponseError
    assert exc_info[1] is info.value

    exported = {span.name: span for span in spans.get_finished_spans()}
    failed = exported["redis.crazycommand"]
    assert failed.status.status_code is StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]
    assert exported["handler"].status.status_code is StatusCode.UNSET

    assert_lines(
        statsd_lines(statsd),
        [
            "svc.clients.redis.crazycommand:TIMER|ms",
            "svc.clients.redis.PING:TIMER|ms",
            "svc.server.handler:TIMER|ms",
            "svc.clients.redis.crazycommand.failure:1|c",
            "svc.clients.redis.PING.success:1|c",
            "svc.server.handler.success:1|c",
        ],
    )


def test_a_command_on_the_wrong_type_is_a_failure(request_context, recorder, plain, redis_key):
    plain.set(redis_key, "not a number")
    with request_context() as context, pytest.raises(redis.ResponseError, match="not an integer"):
        context.redis.incr(redis_key)
    (exc_info,) = finishes(recorder, "redis.INCRBY")
    assert exc_info[0] is redis.ResponseError


def test_commands_in_a_local_span_are_its_children(request_context, recorder, spans, redis_key):
    with request_context() as context:
        with context.trace.make_child("work", local=True, component_name="c") as local:
            local.context.redis.get(redis_key)
        context.redis.get(redis_key)
    assert child_names(recorder, "work") == ["redis.GET"]
    assert child_names(recorder) == ["work", "redis.GET"]
    finished = spans.get_finished_spans()
    work = next(span for span in finished if span.name == "work")
    inner, outer = (span for span in finished if span.name == "redis.GET")
    assert inner.parent.span_id == work.context.span_id
    assert outer.parent.span_id == work.parent.span_id


# -- pipelines and transactions -----------------------------------------------------------


def test_a_pipeline_is_one_span(request_context, recorder, spans, statsd, redis_key):
    with request_context() as context, context.redis.pipeline("foo") as pipe:
        assert isinstance(pipe, MonitoredRedisPipeline)
        pipe.set(redis_key, 1)
        pipe.incr(redis_key, 2)
        pipe.get(redis_key)
        assert pipe.execute() == [True, 3, b"3"]

    assert child_names(recorder) == ["redis.pipeline_foo"]
    assert finishes(recorder, "redis.pipeline_foo") == [None]
    (pipeline_span,) = [span for span in spans.get_finished_spans() if span.name != "handler"]
    assert pipeline_span.name == "redis.pipeline_foo"
    assert pipeline_span.kind is SpanKind.CLIENT
    assert pipeline_span.parent.span_id == spans.get_finished_spans()[-1].context.span_id
    assert_lines(
        statsd_lines(statsd),
        [
            "svc.clients.redis.pipeline_foo:TIMER|ms",
            "svc.server.handler:TIMER|ms",
            "svc.clients.redis.pipeline_foo.success:1|c",
            "svc.server.handler.success:1|c",
        ],
    )


def test_a_pipeline_without_a_transaction(request_context, recorder, plain, redis_key):
    with request_context() as context:
        pipe = context.redis.pipeline("bulk", transaction=False)
        pipe.rpush(redis_key, "a", "b")
        pipe.lrange(redis_key, 0, -1)
        assert pipe.execute() == [2, [b"a", b"b"]]
    assert child_names(recorder) == ["redis.pipeline_bulk"]
    assert plain.llen(redis_key) == 2


def test_a_pipeline_can_be_executed_again(request_context, recorder, redis_key):
    with request_context() as context:
        pipe = context.redis.pipeline("again")
        assert pipe.incr(redis_key).execute() == [1]
        assert pipe.incr(redis_key).execute() == [2]
    assert child_names(recorder) == ["redis.pipeline_again", "redis.pipeline_again"]


def test_a_failing_pipeline_is_a_failure(request_context, recorder, plain, redis_key):
    plain.set(redis_key, "not a number")
    with request_context() as context:
        pipe = context.redis.pipeline("bump")
        pipe.incr(redis_key)
        with pytest.raises(redis.ResponseError, match="not an integer"):
            pipe.execute()

        pipe.incr(redis_key)
        pipe.get(redis_key)
        error, value = pipe.execute(raise_on_error=False)
        assert isinstance(error, redis.ResponseError)
        assert value == b"not a number"

    first, second = finishes(recorder, "redis.pipeline_bump")
    assert first[0] is redis.ResponseError
    assert second is None


def test_watch_and_reads_before_multi_are_command_spans(request_context, recorder, redis_key):
    with request_context() as context:
        with context.redis.pipeline("counter") as pipe:
            pipe.watch(redis_key)
            current = int(pipe.get(redis_key) or 0)
            pipe.multi()
            pipe.set(redis_key, current + 1)
            assert pipe.execute() == [True]
        assert context.redis.get(redis_key) == b"1"
    assert child_names(recorder) == [
        "redis.WATCH",
        "redis.GET",
        "redis.pipeline_counter",
        "redis.GET",
    ]


def test_a_transaction_that_lost_to_a_write_is_a_failure(
    request_context, recorder, plain, redis_key
):
    with request_context() as context, context.redis.pipeline("counter") as pipe:
        pipe.watch(redis_key)
        plain.set(redis_key, "someone else")
        pipe.multi()
        pipe.set(redis_key, "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    (exc_info,) = finishes(recorder, "redis.pipeline_counter")
    assert exc_info[0] is redis.WatchError
    assert plain.get(redis_key) == b"someone else"


def test_the_transaction_helper(request_context, recorder, statsd, redis_key):
    def double(pipe):
        value = int(pipe.get(redis_key) or 1)
        pipe.multi()
        pipe.set(redis_key, value * 2)
        return value * 2

    with request_context() as context:
        assert context.redis.transaction(double, redis_key) == [True]
        assert context.redis.transaction(double, redis_key, value_from_callable=True) == 4
        assert context.redis.transaction(double, redis_key, name="double") == [True]
        assert context.redis.get(redis_key) == b"8"
    assert child_names(recorder) == [
        "redis.WATCH",
        "redis.GET",
        "redis.pipeline_transaction",
        "redis.WATCH",
        "redis.GET",
        "redis.pipeline_transaction",
        "redis.WATCH",
        "redis.GET",
        "redis.pipeline_double",
        "redis.GET",
    ]
    assert_lines(
        statsd_lines(statsd),
        [
            *["svc.clients.redis.WATCH:TIMER|ms", "svc.clients.redis.GET:TIMER|ms"],
            "svc.clients.redis.pipeline_transaction:TIMER|ms",
            *["svc.clients.redis.WATCH:TIMER|ms", "svc.clients.redis.GET:TIMER|ms"],
            "svc.clients.redis.pipeline_transaction:TIMER|ms",
            *["svc.clients.redis.WATCH:TIMER|ms", "svc.clients.redis.GET:TIMER|ms"],
            "svc.clients.redis.pipeline_double:TIMER|ms",
            "svc.clients.redis.GET:TIMER|ms",
            "svc.server.handler:TIMER|ms",
            "svc.clients.redis.WATCH.success:3|c",
            "svc.clients.redis.GET.success:4|c",
            "svc.clients.redis.pipeline_transaction.success:2|c",
            "svc.clients.redis.pipeline_double.success:1|c",
            "svc.server.handler.success:1|c",
        ],
    )


def test_the_transaction_helper_starts_again_after_a_concurrent_write(
    request_context, recorder, plain, redis_key
):
    attempts = []

    def append(pipe):
        attempts.append(pipe.get(redis_key))
        if len(attempts) == 1:
            plain.set(redis_key, "interloper")
        pipe.multi()
        pipe.append(redis_key, "+mine")

    with request_context() as context:
        assert context.redis.transaction(append, redis_key, watch_delay=0.01) == [15]
    assert attempts == [None, b"interloper"]
    assert plain.get(redis_key) == b"interloper+mine"
    assert child_names(recorder) == ["redis.WATCH", "redis.GET", "redis.pipeline_transaction"] * 2
    failed, succeeded = finishes(recorder, "redis.pipeline_transaction")
    assert failed[0] is redis.WatchError
    assert succeeded is None


def test_scripts_a_pipeline_loads_are_part_of_its_span(request_context, recorder, redis_key):
    # A script Redis has never seen, so that the pipeline has to load it.
    script_text = f"return redis.call('incrby', KEYS[1], ARGV[1]) -- {uuid.uuid4()}"
    with request_context() as context:
        script = context.redis.register_script(script_text)
        with context.redis.pipeline("scripted") as pipe:
            script(keys=[redis_key], args=[5], client=pipe)
            assert pipe.execute() == [5]
    assert child_names(recorder) == ["redis.pipeline_scripted"]


# -- locks ------------------------------------------------------------------------------


@pytest.fixture
def lock_scripts_loaded(plain) -> None:
    """Redis knows the lock's scripts already (another test may have flushed them)."""
    for script in (Lock.LUA_RELEASE_SCRIPT, Lock.LUA_EXTEND_SCRIPT, Lock.LUA_REACQUIRE_SCRIPT):
        plain.script_load(script)


def test_a_lock_is_a_span_for_each_command(
    request_context, recorder, statsd, plain, redis_key, lock_scripts_loaded
):
    with request_context() as context:
        lock = context.redis.lock(redis_key, timeout=10)
        with lock:
            assert plain.exists(redis_key) == 1
            assert lock.owned()
            lock.extend(5)
        assert plain.exists(redis_key) == 0
    assert child_names(recorder) == ["redis.SET", "redis.GET", "redis.EVALSHA", "redis.EVALSHA"]
    assert_lines(
        statsd_lines(statsd),
        [
            "svc.clients.redis.SET:TIMER|ms",
            "svc.clients.redis.GET:TIMER|ms",
            "svc.clients.redis.EVALSHA:TIMER|ms",
            "svc.clients.redis.EVALSHA:TIMER|ms",
            "svc.server.handler:TIMER|ms",
            "svc.clients.redis.SET.success:1|c",
            "svc.clients.redis.GET.success:1|c",
            "svc.clients.redis.EVALSHA.success:2|c",
            "svc.server.handler.success:1|c",
        ],
    )


def test_a_lock_held_elsewhere(request_context, recorder, plain, redis_key):
    other = plain.lock(redis_key, timeout=10)
    assert other.acquire(blocking=False)
    try:
        with request_context() as context:
            lock = context.redis.lock(redis_key, timeout=10)
            assert lock.acquire(blocking=False) is False
            assert lock.acquire(blocking_timeout=0.25, sleep=0.05) is False
            with pytest.raises(redis.exceptions.LockError):
                lock.release()
    finally:
        other.release()
    names = child_names(recorder)
    assert len(names) >= 3
    assert set(names) == {"redis.SET"}  # every attempt, and no span for the local error
    assert all(exc_info is None for exc_info in finishes(recorder, "redis.SET"))


def test_a_lock_shared_between_threads(request_context, plain, redis_key, lock_scripts_loaded):
    with request_context() as context:
        lock = context.redis.lock(redis_key, timeout=10, thread_local=False)
        assert lock.acquire()
        releaser = threading.Thread(target=lock.release)
        releaser.start()
        releaser.join(10)
    assert plain.exists(redis_key) == 0


# -- publish/subscribe --------------------------------------------------------------------


def test_publish_subscribe(request_context, recorder, spans, statsd, redis_key):
    channel = f"{redis_key}:channel"
    with request_context() as context:
        pubsub = context.redis.pubsub()
        assert isinstance(pubsub, MonitoredRedisPubSub)
        pubsub.subscribe(channel)
        confirmation = pubsub.get_message(timeout=5)
        assert confirmation["type"] == "subscribe"
        assert context.redis.publish(channel, "hello") == 1
        message = pubsub.get_message(timeout=5)
        assert (message["type"], message["data"]) == ("message", b"hello")
        pubsub.unsubscribe(channel)
        assert pubsub.get_message(timeout=5)["type"] == "unsubscribe"
        pubsub.close()

    assert child_names(recorder) == ["redis.SUBSCRIBE", "redis.PUBLISH", "redis.UNSUBSCRIBE"]
    server = spans.get_finished_spans()[-1]
    for span in spans.get_finished_spans()[:-1]:
        assert span.kind is SpanKind.CLIENT
        assert span.parent.span_id == server.context.span_id
    # Reading messages is not traced.
    assert_lines(
        statsd_lines(statsd),
        [
            "svc.clients.redis.SUBSCRIBE:TIMER|ms",
            "svc.clients.redis.PUBLISH:TIMER|ms",
            "svc.clients.redis.UNSUBSCRIBE:TIMER|ms",
            "svc.server.handler:TIMER|ms",
            "svc.clients.redis.SUBSCRIBE.success:1|c",
            "svc.clients.redis.PUBLISH.success:1|c",
            "svc.clients.redis.UNSUBSCRIBE.success:1|c",
            "svc.server.handler.success:1|c",
        ],
    )


def test_pattern_subscriptions_and_options(request_context, recorder, redis_key):
    channel = f"{redis_key}:news"
    with (
        request_context() as context,
        context.redis.pubsub(ignore_subscribe_messages=True) as pubsub,
    ):
        pubsub.psubscribe(f"{redis_key}:*")
        assert pubsub.get_message(timeout=5) is None  # the confirmation, ignored
        context.redis.publish(channel, "extra")
        message = pubsub.get_message(timeout=5)
        assert (message["type"], message["channel"]) == ("pmessage", channel.encode())
        pubsub.punsubscribe()
    assert child_names(recorder) == ["redis.PSUBSCRIBE", "redis.PUBLISH", "redis.PUNSUBSCRIBE"]


# -- other methods -----------------------------------------------------------------------


def test_a_single_connection_client(request_context, recorder, redis_key):
    with request_context() as context:
        client = context.redis.client()
        assert isinstance(client, MonitoredRedisConnection)
        client.set(redis_key, "one connection")
        assert client.get(redis_key) == b"one connection"
        assert client.connection is not None
        client.close()
    assert child_names(recorder) == ["redis.SET", "redis.GET"]


# -- with OpenTelemetry's Redis instrumentation --------------------------------------------


def test_one_call_one_span_with_the_redis_instrumentation(
    request_context, recorder, spans, instrumented_redis, plain, redis_key, lock_scripts_loaded
):
    channel = f"{redis_key}:channel"
    spans.clear()  # the fixtures' own commands
    with request_context() as context:
        context.redis.set(redis_key, 1)
        context.redis.get(redis_key)
        with context.redis.pipeline("both") as pipe:
            pipe.incr(redis_key).get(redis_key).execute()
        context.redis.transaction(lambda pipe: pipe.multi() or pipe.incr(redis_key), redis_key)
        with context.redis.lock(f"{redis_key}:lock", timeout=5):
            pass
        with context.redis.pubsub() as pubsub:
            pubsub.subscribe(channel)
            context.redis.publish(channel, "x")
        plain.get(redis_key)  # outside Baseplate's spans, the instrumentation traces

    ours = [
        "redis.SET",
        "redis.GET",
        "redis.pipeline_both",
        "redis.WATCH",
        "redis.pipeline_transaction",
        "redis.SET",
        "redis.EVALSHA",
        "redis.SUBSCRIBE",
        "redis.PUBLISH",
    ]
    assert [span.name for span in spans.get_finished_spans()] == [*ours, "GET", "handler"]
    assert child_names(recorder) == [*ours, "GET"]
