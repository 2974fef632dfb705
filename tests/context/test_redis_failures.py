"""``baseplate.context.redis`` when Redis goes away and comes back.

Each test starts a ``redis-server`` of its own on a spare port, so that it
can stop it: commands fail with redis-py's own errors, each a failed span,
and the same pool works again once the server is back.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from baseplate.context.redis import MessageQueue, RedisContextFactory
from baseplate.core import Baseplate
from baseplate.testing import RecordingObserver
from tests._helpers import wait_until
from tests.context.serving import make_baseplate, statsd_lines
from tests.server import free_port

TIMER = r"[0-9]+(?:\.[0-9]+)?"


class RedisServer:
    """A ``redis-server`` on 127.0.0.1, without persistence, that can be stopped and restarted."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        options = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "save": "",
            "appendonly": "no",
            "dir": str(self.directory),
            "loglevel": "warning",
        }
        arguments = [part for name, value in options.items() for part in (f"--{name}", value)]
        self.process = subprocess.Popen(
            ["redis-server", *arguments],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, "redis-server answering")

    def answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}")
        try:
            with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def server(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pool(server) -> Iterator[redis.ConnectionPool]:
    pool = redis.ConnectionPool(
        host="127.0.0.1", port=server.port, socket_connect_timeout=2, socket_timeout=2
    )
    yield pool
    pool.disconnect()


@pytest.fixture
def baseplate(pool, recorder, statsd) -> Baseplate:
    return make_baseplate(statsd, recorder, redis=RedisContextFactory(pool))


def assert_lines(lines: list[str], expected: list[str]) -> None:
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        regex = re.escape(pattern).replace(re.escape("TIMER"), TIMER)
        assert re.fullmatch(regex, line), (line, pattern, lines)


def finishes(recorder: RecordingObserver, name: str) -> list[object]:
    return [event[2] for event in recorder.events if event[:2] == (name, "on_finish")]


def test_commands_fail_while_redis_is_down_and_work_when_it_is_back(
    baseplate, server, recorder, spans, statsd
):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "before"):
        context.redis.set("key", "value")
    statsd.received()

    server.stop()
    with baseplate.make_server_span(context, "down"):
        with pytest.raises(redis.ConnectionError) as closed:
            context.redis.get("key")  # on the connection the server closed
        with pytest.raises(redis.ConnectionError) as refused:
            context.redis.ping()  # on a new connection, refused
        with pytest.raises(redis.ConnectionError):
            context.redis.pipeline("both").get("key").ping().execute()

    # redis-py's own errors, unchanged.
    assert type(closed.value).__module__ == "redis.exceptions"
    assert type(refused.value).__module__ == "redis.exceptions"
    for name in ("redis.GET", "redis.PING", "redis.pipeline_both"):
        (exc_info,) = finishes(recorder, name)
        assert issubclass(exc_info[0], redis.ConnectionError)
    assert_lines(
        statsd_lines(statsd),
        [
            "svc.clients.redis.GET:TIMER|ms",
            "svc.clients.redis.PING:TIMER|ms",
            "svc.clients.redis.pipeline_both:TIMER|ms",
            "svc.server.down:TIMER|ms",
            "svc.clients.redis.GET.failure:1|c",
            "svc.clients.redis.PING.failure:1|c",
            "svc.clients.redis.pipeline_both.failure:1|c",
            "svc.server.down.success:1|c",
        ],
    )

    server.start()  # the same port, empty: nothing was saved
    with baseplate.make_server_span(context, "after"):
        assert context.redis.get("key") is None
        context.redis.set("key", "again")
        assert context.redis.pipeline("both").get("key").ping().execute() == [b"again", True]
    assert_lines(
        statsd_lines(statsd),
        [
            "svc.clients.redis.GET:TIMER|ms",
            "svc.clients.redis.SET:TIMER|ms",
            "svc.clients.redis.pipeline_both:TIMER|ms",
            "svc.server.after:TIMER|ms",
            "svc.clients.redis.GET.success:1|c",
            "svc.clients.redis.SET.success:1|c",
            "svc.clients.redis.pipeline_both.success:1|c",
            "svc.server.after.success:1|c",
        ],
    )

    failed = [
        span for span in spans.get_finished_spans() if span.status.status_code.name == "ERROR"
    ]
    assert [span.name for span in failed] == ["redis.GET", "redis.PING", "redis.pipeline_both"]


def test_a_request_that_lets_the_error_through_fails(baseplate, server, recorder):
    server.stop()
    context = SimpleNamespace()
    with (
        pytest.raises(redis.ConnectionError),
        baseplate.make_server_span(context, "handler"),
    ):
        context.redis.get("key")
    (exc_info,) = finishes(recorder, "handler")
    assert issubclass(exc_info[0], redis.ConnectionError)


def test_a_lock_on_a_server_that_does_not_know_its_scripts(baseplate, pool, recorder):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        with context.redis.lock("a-lock", timeout=10):
            assert redis.Redis(connection_pool=pool).exists("a-lock") == 1
        assert redis.Redis(connection_pool=pool).exists("a-lock") == 0

    created = [event[2] for event in recorder.events_named("on_child_span_created")]
    # Redis answers the first EVALSHA of a script it has not seen with NOSCRIPT;
    # redis-py loads the script and tries again.
    assert created == ["redis.SET", "redis.EVALSHA", "redis.SCRIPT_LOAD", "redis.EVALSHA"]
    first, second = finishes(recorder, "redis.EVALSHA")
    assert first[0] is redis.exceptions.NoScriptError
    assert second is None


def test_a_message_queue_while_redis_is_down(server, pool):
    queue = MessageQueue("queue", pool)
    queue.put(b"before")
    server.stop()
    with pytest.raises(redis.ConnectionError):
        queue.get(timeout=0)
    with pytest.raises(redis.ConnectionError):
        queue.get()  # not a TimedOutError, and no waiting for ever
    with pytest.raises(redis.ConnectionError):
        queue.put(b"lost")
    server.start()
    queue.put(b"after")
    assert queue.get(timeout=1) == b"after"
