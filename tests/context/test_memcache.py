"""``baseplate.context.memcache``: real commands to a real memcached, each a child span."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import textwrap
from types import SimpleNamespace

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheClientError

from baseplate.config import ConfigurationError
from baseplate.context.memcache import (
    MemcacheContextFactory,
    MonitoredMemcacheConnection,
    make_keys_str,
    pool_from_config,
)
from baseplate.context.memcache import lib as memcache_lib
from tests._helpers import closed_afterwards, run_python
from tests.context.memcached_server import running_memcached
from tests.context.serving import make_baseplate, metrics_client_to, statsd_lines


@pytest.fixture
def memcached():
    with running_memcached() as server:
        yield server


@pytest.fixture
def make_pool(memcached):
    """Make pools from configuration (on the test's memcached); closed after the test."""

    def make(**options):
        raw = {"memcache.endpoint": memcached.endpoint, "memcache.timeout": "2"}
        raw.update({f"memcache.{key}": value for key, value in options.pop("config", {}).items()})
        return pool_from_config(raw, **options)

    with closed_afterwards(make) as make_pool:
        yield make_pool


@pytest.fixture
def pool(make_pool):
    return make_pool()


@pytest.fixture
def baseplate(pool, recorder):
    return make_baseplate(recorder=recorder, cache=MemcacheContextFactory(pool))


def timer_lines(lines, name):
    return [line for line in lines if re.fullmatch(rf"svc\.{re.escape(name)}:[0-9.]+\|ms", line)]


def child_names(recorder):
    return [event[2] for event in recorder.events if event[1] == "on_child_span_created"]


def tags_of(recorder, span_name):
    return {
        event[2]: event[3] for event in recorder.events if event[:2] == (span_name, "on_set_tag")
    }


def request(baseplate):
    """A server span (the request) and its context object."""
    context = SimpleNamespace()
    return baseplate.make_server_span(context, "handler"), context


# -- configuration ----------------------------------------------------------------------


def test_pool_from_config_defaults(memcached):
    pool = pool_from_config({"memcache.endpoint": memcached.endpoint})
    assert isinstance(pool, PooledClient)
    assert pool.server == ("127.0.0.1", memcached.port)
    assert pool.connect_timeout is None
    assert pool.timeout is None
    assert pool.no_delay is True
    assert pool.client_pool.max_size == 2**31
    assert pool.version().decode().startswith("1.")
    pool.close()


def test_pool_from_config_every_key():
    pool = pool_from_config(
        {
            "cache.main.endpoint": "cache.example:1234",
            "cache.main.max_pool_size": "3",
            "cache.main.connect_timeout": "0.5",
            "cache.main.timeout": "1.25",
            "cache.main.no_delay": "false",
            "memcache.endpoint": "ignored:1",
        },
        prefix="cache.main.",
    )
    assert pool.server == ("cache.example", 1234)
    assert pool.client_pool.max_size == 3
    assert (pool.connect_timeout, pool.timeout, pool.no_delay) == (0.5, 1.25, False)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({}, "memcache.endpoint"),
        ({"memcache.endpoint": "no-port"}, "memcache.endpoint"),
        ({"memcache.endpoint": "a:1", "memcache.timeout": "soon"}, "memcache.timeout"),
        (
            {"memcache.endpoint": "a:1", "memcache.connect_timeout": "1s"},
            "memcache.connect_timeout",
        ),
        ({"memcache.endpoint": "a:1", "memcache.max_pool_size": "-1"}, "memcache.max_pool_size"),
        ({"memcache.endpoint": "a:1", "memcache.no_delay": "maybe"}, "memcache.no_delay"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_pool_from_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigurationError) as excinfo:
        pool_from_config(raw)
    assert excinfo.value.key == key
    assert str(excinfo.value).startswith(f"{key}: ")


def test_prefix_must_end_with_a_dot():
    with pytest.raises(ValueError, match="dot"):
        pool_from_config({"memcache.endpoint": "a:1"}, prefix="memcache")


def test_unix_socket_endpoint():
    # Not under pytest's tmp_path: Unix socket paths must be short.
    directory = tempfile.mkdtemp(prefix="memcache-")
    path = f"{directory}/memcached.sock"
    with running_memcached(unix_path=path) as server:
        pool = pool_from_config({"memcache.endpoint": server.endpoint})
        assert pool.server == path
        assert pool.set("k", b"over a unix socket", noreply=False) is True
        assert pool.get("k") == b"over a unix socket"
        pool.close()
    shutil.rmtree(directory)  # the killed server left its socket file


def test_serializer_and_deserializer_are_used(make_pool):
    pool = make_pool(
        serializer=memcache_lib.make_dump_and_compress_fn(min_compress_length=10),
        deserializer=memcache_lib.decompress_and_load,
    )
    value = {"list": [1, 2.5, None], "text": "caf\u00e9" * 20}
    pool.set("k", value, noreply=False)
    assert pool.get("k") == value
    pool.set("n", 42, noreply=False)
    assert pool.get("n") == 42


# -- spans and metrics -------------------------------------------------------------------


def test_a_command_is_a_child_span_and_a_timer(baseplate, recorder, spans, statsd):
    baseplate.configure_metrics(metrics_client_to(statsd))
    server_span, context = request(baseplate)
    with server_span:
        assert isinstance(context.cache, MonitoredMemcacheConnection)
        assert context.cache.set("greeting", "hello", expire=60, noreply=False) is True
        assert context.cache.get("greeting") == b"hello"

    assert [event for event in recorder.events if event[0] == "cache.get"] == [
        ("cache.get", "on_start"),
        ("cache.get", "on_set_tag", "method", "get"),
        ("cache.get", "on_set_tag", "key", "greeting"),
        ("cache.get", "on_finish", None),
    ]
    assert tags_of(recorder, "cache.set") == {
        "method": "set",
        "key": "greeting",
        "expire": 60,
        "noreply": False,
    }

    lines = statsd_lines(statsd)
    assert "svc.clients.cache.set.success:1|c" in lines
    assert "svc.clients.cache.get.success:1|c" in lines
    assert len(timer_lines(lines, "clients.cache.set")) == 1
    assert len(timer_lines(lines, "clients.cache.get")) == 1
    assert not [line for line in lines if ".failure" in line]

    finished = {span.name: span for span in spans.get_finished_spans()}
    server = finished["handler"]
    for name in ("cache.set", "cache.get"):
        assert finished[name].kind is SpanKind.CLIENT
        assert finished[name].parent.span_id == server.context.span_id
        assert finished[name].status.status_code is StatusCode.UNSET
    assert finished["cache.get"].attributes["key"] == "greeting"
    assert finished["cache.set"].attributes["expire"] == 60


def test_a_request_reports_the_pool_gauges(make_pool, statsd):
    baseplate = make_baseplate(
        statsd, cache=MemcacheContextFactory(make_pool(config={"max_pool_size": "5"}))
    )
    server_span, context = request(baseplate)
    with server_span:
        context.cache.set("gauged", "x")
        context.cache.get("gauged")

    lines = statsd_lines(statsd)
    assert "svc.clients.cache.pool.size:5|g" in lines
    assert "svc.clients.cache.pool.in_use:0|g" in lines  # every connection came back
    assert not [line for line in lines if "pool.leaked" in line]


def test_an_unbounded_pool_reports_no_size(baseplate, statsd):
    baseplate.configure_metrics(metrics_client_to(statsd))
    server_span, context = request(baseplate)
    with server_span:
        context.cache.get("gauged")
    lines = statsd_lines(statsd)
    assert "svc.clients.cache.pool.in_use:0|g" in lines
    assert not [line for line in lines if "pool.size" in line]


def test_commands_in_a_local_span_are_its_children(baseplate, spans):
    server_span, context = request(baseplate)
    with server_span:
        with server_span.make_child("work", local=True, component_name="jobs") as local:
            local.context.cache.get("inner")
        context.cache.get("outer")
    finished = {span.name: span for span in spans.get_finished_spans()}
    inner, outer = [s for s in spans.get_finished_spans() if s.name == "cache.get"]
    assert inner.parent.span_id == finished["work"].context.span_id
    assert outer.parent.span_id == finished["handler"].context.span_id


def test_every_command_is_one_span_named_as_the_original_named_it(baseplate, recorder):
    server_span, context = request(baseplate)
    with server_span:
        cache = context.cache
        assert cache.set("a", "1", noreply=False) is True
        assert cache.set_many({"b": "2", "c": "3"}, noreply=False) == []
        assert cache.set_multi({"d": "4"}, noreply=False) == []
        assert cache.add("a", "x", noreply=False) is False
        assert cache.replace("a", "10", noreply=False) is True
        assert cache.append("a", "0", noreply=False) is True
        assert cache.prepend("a", "1", noreply=False) is True
        assert cache.get("a") == b"1100"
        assert cache.get("missing", default=b"none") == b"none"
        assert cache.get_many(["a", "b", "missing"]) == {"a": b"1100", "b": b"2"}
        assert cache.get_multi(["c"]) == {"c": b"3"}
        value, token = cache.gets("a")
        assert value == b"1100"
        assert cache.cas("a", "5", token, noreply=False) is True
        assert set(cache.gets_many(["a", "b"])) == {"a", "b"}
        assert cache.incr("a", 2) == 7
        assert cache.decr("a", 3) == 4
        assert cache.touch("a", expire=100, noreply=False) is True
        assert cache.delete("a", noreply=False) is True
        assert cache.delete_many(["b"], noreply=False) is True
        assert cache.delete_multi(["c"], noreply=False) is True
        assert cache.raw_command("get d", b"END\r\n").startswith(b"VALUE d 0 1")
        assert cache.version().startswith(b"1.")
        assert b"pid" in cache.stats() or "pid" in cache.stats()
        assert cache.flush_all(noreply=False) is True
        assert cache.get("d") is None
        cache.quit()
        cache.close()

    # get_multi, set_multi and delete_multi are other names of the *_many commands.
    commands = [
        "set", "set_many", "set_many", "add", "replace", "append", "prepend",
        "get", "get", "get_many", "get_many", "gets", "cas", "gets_many", "incr", "decr",
        "touch", "delete", "delete_many", "delete_many", "raw_command", "version", "stats",
        "flush_all", "get", "quit", "close",
    ]  # fmt: skip
    assert child_names(recorder) == [f"cache.{command}" for command in commands]
    finishes = [
        event for event in recorder.events if event[1] == "on_finish" and event[0] != "handler"
    ]
    assert len(finishes) == len(child_names(recorder))
    assert all(event[2] is None for event in finishes)


def test_the_originals_tags(baseplate, recorder):
    server_span, context = request(baseplate)
    with server_span:
        cache = context.cache
        cache.set_many({b"k1": "1", "k2": "2"}, expire=5)
        cache.get_many([b"k1", "k2"])
        cache.delete_many(["k1"], noreply=True)
        _, token = cache.gets("k2")
        cache.cas(b"k2", "3", token, expire=7, noreply=False)
        cache.incr("k2", 1, noreply=True)
        cache.touch("k2", expire=9)
        cache.flush_all(delay=0, noreply=True)
        cache.stats()

    assert tags_of(recorder, "cache.set_many") == {
        "method": "set_many",
        "key_count": 2,
        "keys": "k1,k2",
        "expire": 5,
        "noreply": None,
    }
    assert tags_of(recorder, "cache.get_many") == {
        "method": "get_many",
        "key_count": 2,
        "keys": "k1,k2",
    }
    assert tags_of(recorder, "cache.delete_many") == {
        "method": "delete_many",
        "key_count": 1,
        "keys": "k1",
        "noreply": True,
    }
    assert tags_of(recorder, "cache.cas") == {
        "method": "cas",
        "key": "k2",
        "cas": token,
        "expire": 7,
        "noreply": False,
    }
    assert tags_of(recorder, "cache.incr") == {"method": "incr", "key": "k2", "noreply": True}
    assert tags_of(recorder, "cache.touch") == {
        "method": "touch",
        "key": "k2",
        "expire": 9,
        "noreply": None,
    }
    assert tags_of(recorder, "cache.flush_all") == {
        "method": "flush_all",
        "delay": 0,
        "noreply": True,
    }
    assert tags_of(recorder, "cache.stats") == {"method": "stats"}


def test_keys_tag_is_cut_at_100_characters():
    keys = [f"key-{number:03d}" for number in range(20)]
    text = make_keys_str(keys)
    assert text == ",".join(keys)[:100] + "..."
    assert make_keys_str([b"a", "b"]) == "a,b"


def test_a_server_error_is_a_failure_and_reaches_the_caller(baseplate, recorder, spans, statsd):
    baseplate.configure_metrics(metrics_client_to(statsd))
    server_span, context = request(baseplate)
    with server_span:
        context.cache.set("word", "not a number", noreply=False)
        with pytest.raises(MemcacheClientError, match="non-numeric") as excinfo:
            context.cache.incr("word", 1)
        assert type(excinfo.value) is MemcacheClientError
        assert context.cache.get("word") == b"not a number"  # the pool is still usable

    (finish,) = [event for event in recorder.events if event[:2] == ("cache.incr", "on_finish")]
    assert finish[2][1] is excinfo.value
    (otel_span,) = [span for span in spans.get_finished_spans() if span.name == "cache.incr"]
    assert otel_span.status.status_code is StatusCode.ERROR
    lines = statsd_lines(statsd)
    assert "svc.clients.cache.incr.failure:1|c" in lines
    assert len(timer_lines(lines, "clients.cache.incr")) == 1
    assert "svc.clients.cache.get.success:1|c" in lines


# -- failures and recovery --------------------------------------------------------------


def test_server_down_is_a_failure_and_the_pool_recovers(memcached, pool, recorder, statsd):
    baseplate = make_baseplate(statsd, recorder, cache=MemcacheContextFactory(pool))
    pool.set("k", "before", noreply=False)

    memcached.stop()
    server_span, context = request(baseplate)
    with server_span:  # noqa: SIM117
        with pytest.raises(ConnectionRefusedError):
            context.cache.get("k")
    (finish,) = [event for event in recorder.events if event[:2] == ("cache.get", "on_finish")]
    assert finish[2][0] is ConnectionRefusedError
    lines = statsd_lines(statsd)
    assert "svc.clients.cache.get.failure:1|c" in lines
    assert "svc.clients.cache.get.success:1|c" not in lines
    assert pool.client_pool.used == ()

    memcached.start()  # same port, empty
    server_span, context = request(baseplate)
    with server_span:
        assert context.cache.set("k", "after", noreply=False) is True
        assert context.cache.get("k") == b"after"
    lines = statsd_lines(statsd)
    assert "svc.clients.cache.get.success:1|c" in lines
    assert "svc.clients.cache.set.success:1|c" in lines


def test_a_restart_while_idle_costs_no_request(memcached, pool, recorder, statsd):
    """An idle connection the server closed is replaced, not used and failed."""
    baseplate = make_baseplate(statsd, recorder, cache=MemcacheContextFactory(pool))
    pool.set("k", "v", noreply=False)
    assert len(pool.client_pool.free) == 1

    memcached.stop()
    memcached.start()
    server_span, context = request(baseplate)
    with server_span:
        assert context.cache.get("k") is None  # a new, empty server
        assert context.cache.set("k", "v2", noreply=False) is True
    lines = statsd_lines(statsd)
    assert "svc.clients.cache.get.success:1|c" in lines
    assert not [line for line in lines if ".failure" in line]
    assert len(pool.client_pool.free) == 1


def test_a_timeout_is_a_failure_and_the_late_reply_is_never_read(
    memcached, make_pool, recorder, statsd
):
    pool = make_pool(config={"timeout": "0.2"})
    baseplate = make_baseplate(statsd, recorder, cache=MemcacheContextFactory(pool))
    pool.set_many({"first": "one", "second": "two"}, noreply=False)

    memcached.pause()
    try:
        server_span, context = request(baseplate)
        with server_span:  # noqa: SIM117
            with pytest.raises(TimeoutError):
                context.cache.get("first")
    finally:
        memcached.resume()
    assert "svc.clients.cache.get.failure:1|c" in statsd_lines(statsd)

    # The reply to "get first" arrives now, on a connection that was destroyed.
    server_span, context = request(baseplate)
    with server_span:
        assert context.cache.get("second") == b"two"
    assert "svc.clients.cache.get.success:1|c" in statsd_lines(statsd)


class Interrupted(BaseException):
    """Like gevent.Timeout or KeyboardInterrupt: not an Exception."""


def test_an_interrupted_command_gives_its_connection_back(make_pool, spans):
    """pymemcache's own pool would keep the connection "in use" for ever."""

    def deserialize(key, data, flags):
        if key == "boom":
            raise Interrupted
        return data

    pool = make_pool(config={"max_pool_size": "1"}, deserializer=deserialize)
    pool.set_many({"boom": "x", "fine": "y"}, noreply=False)
    baseplate = make_baseplate(cache=MemcacheContextFactory(pool))
    server_span, context = request(baseplate)
    with server_span:
        with pytest.raises(Interrupted):
            context.cache.get_many(["boom", "fine"])  # "fine" is left unread
        assert pool.client_pool.used == ()
        assert context.cache.get("fine") == b"y"  # a new connection: the one slot is free
    (failed,) = [span for span in spans.get_finished_spans() if span.name == "cache.get_many"]
    assert failed.status.status_code is StatusCode.ERROR


GEVENT_CLIENT = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import os
    import signal
    import sys

    import gevent

    from baseplate.context.memcache import pool_from_config

    endpoint, pid = sys.argv[1], int(sys.argv[2])
    pool = pool_from_config(
        {"memcache.endpoint": endpoint, "memcache.timeout": "5", "memcache.max_pool_size": "1"}
    )
    pool.set("k", "v", noreply=False)
    os.kill(pid, signal.SIGSTOP)
    # The stop lands asynchronously: wait until every thread of memcached shows it.
    tasks = f"/proc/{pid}/task"
    while not all(
        open(f"{tasks}/{tid}/stat").read().rsplit(")", 1)[1].split()[0] in "Tt"
        for tid in os.listdir(tasks)
    ):
        gevent.sleep(0.005)
    try:
        with gevent.Timeout(0.2):
            pool.get("k")
    except gevent.Timeout:
        print("timed out")
    finally:
        os.kill(pid, signal.SIGCONT)
    print("in use:", len(pool.client_pool.used))
    print("then:", pool.get("k").decode())
    pool.close()
    """
)


def test_a_gevent_timeout_gives_the_connection_back(memcached):
    # In a process of its own: monkey-patching cannot be undone.
    result = run_python(
        "-W",
        "error",
        "-c",
        GEVENT_CLIENT,
        memcached.endpoint,
        str(memcached.process.pid),
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )
    assert result.stdout.split("\n")[:3] == ["timed out", "in use: 0", "then: v"]


def test_pool_exhaustion_is_pymemcaches_runtime_error(make_pool):
    pool = make_pool(config={"max_pool_size": "1"})
    with pool.client_pool.get_and_release() as held:
        assert held is not None
        with pytest.raises(RuntimeError, match="Too many"):
            pool.get("k")
    assert pool.get("k") is None


def test_quit_closes_the_connection_and_the_next_command_opens_one(baseplate, pool):
    server_span, context = request(baseplate)
    with server_span:
        context.cache.set("k", "v", noreply=False)
        context.cache.quit()
        assert pool.client_pool.free == () and pool.client_pool.used == ()
        assert context.cache.get("k") == b"v"


def test_shutdown_stops_the_server(baseplate, memcached, recorder):
    server_span, context = request(baseplate)
    with server_span:
        context.cache.shutdown(graceful=True)
    assert child_names(recorder) == ["cache.shutdown"]
    assert tags_of(recorder, "cache.shutdown") == {"method": "shutdown", "graceful": True}
    assert memcached.process is not None
    assert memcached.process.wait(5) is not None
