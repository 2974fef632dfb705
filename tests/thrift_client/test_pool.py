"""``baseplate.thrift_pool`` against real Thrift servers."""

from __future__ import annotations

import datetime
import logging
import os
import socket
import textwrap
import threading
import time

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocolFactory
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from baseplate import thrift_pool
from baseplate.config import ConfigurationError, Endpoint, EndpointConfiguration
from baseplate.thrift_pool import ThriftConnectionPool, thrift_pool_from_config
from tests._helpers import run_python
from tests.server import free_port


def call_echo(pool, generated, message="hi"):
    with pool.connection() as protocol:
        return generated.ExampleService.Client(protocol).echo(message)


# -- connections ------------------------------------------------------------------


def test_connections_are_lazy(server, make_pool):
    make_pool(server.endpoint)
    assert server.connections == 0


def test_a_connection_is_a_header_protocol_and_works(server, make_pool, generated):
    pool = make_pool(server.endpoint)
    with pool.connection() as protocol:
        assert isinstance(protocol, THeaderProtocol)
        assert generated.ExampleService.Client(protocol).echo("hello") == "hello"
    assert server.connections == 1


def test_connections_are_reused(server, make_pool, generated):
    pool = make_pool(server.endpoint)
    for i in range(5):
        assert call_echo(pool, generated, str(i)) == str(i)
    assert server.connections == 1
    assert server.methods() == ["echo"] * 5


def test_connections_older_than_max_age_are_recycled(server, make_pool, generated):
    pool = make_pool(server.endpoint, max_age=datetime.timedelta(milliseconds=50))
    call_echo(pool, generated)
    call_echo(pool, generated)  # young enough: the same connection
    assert server.connections == 1
    time.sleep(0.1)
    call_echo(pool, generated)
    assert server.connections == 2


def test_max_age_zero_opens_a_connection_per_checkout(server, make_pool, generated):
    pool = make_pool(server.endpoint, max_age=0)
    call_echo(pool, generated)
    time.sleep(0.01)
    call_echo(pool, generated)
    assert server.connections == 2


def test_max_age_is_measured_on_the_wall_clock(server, make_pool, generated, clock):
    # As in the original, a connection is stamped with time.time() when opened.
    pool = make_pool(server.endpoint, max_age=120)
    with pool.connection() as protocol:
        assert protocol.baseplate_birthdate == clock.now
    clock.now += 119
    call_echo(pool, generated)
    assert server.connections == 1
    clock.now += 2
    call_echo(pool, generated)
    assert server.connections == 2


def test_other_protocol_factories(server, make_pool, generated):
    # The test server also accepts unframed binary clients, without headers.
    pool = make_pool(server.endpoint, protocol_factory=TBinaryProtocolFactory())
    with pool.connection() as protocol:
        assert not isinstance(protocol, THeaderProtocol)
        assert generated.ExampleService.Client(protocol).echo("plain") == "plain"
    assert server.calls[0].headers == {}


# -- exhaustion -------------------------------------------------------------------


def test_exhausted_pool_waits_for_timeout_then_raises(server, make_pool, generated):
    pool = make_pool(server.endpoint, size=1, timeout=0.2)
    with pool.connection(), pytest.raises(TTransportException) as excinfo:  # noqa: SIM117
        with pool.connection():
            pass
    # NOT_OPEN, as in the original: no connection could be had.
    assert excinfo.value.type == TTransportException.NOT_OPEN
    assert str(server.endpoint) in str(excinfo.value)
    assert "in use" in str(excinfo.value)
    # The slot came back: the pool is usable.
    assert call_echo(pool, generated) == "hi"


def test_exhausted_pool_hands_over_a_released_connection(server, make_pool, generated):
    pool = make_pool(server.endpoint, size=1, timeout=5)
    holding = threading.Event()
    release = threading.Event()

    def hold():
        with pool.connection():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    threading.Timer(0.1, release.set).start()
    assert call_echo(pool, generated) == "hi"  # blocks until the holder releases
    holder.join()
    assert server.connections == 1


# -- broken connections ------------------------------------------------------------


def test_a_connection_is_closed_after_an_application_exception(server, make_pool, generated):
    pool = make_pool(server.endpoint)
    with pytest.raises(TApplicationException):  # noqa: SIM117
        with pool.connection() as protocol:
            generated.ExampleService.Client(protocol).fail_undeclared()
    assert protocol.trans.isOpen() is False
    call_echo(pool, generated)
    assert server.connections == 2


def test_a_connection_is_closed_after_an_unrelated_exception(server, make_pool, generated):
    pool = make_pool(server.endpoint)
    with pytest.raises(ZeroDivisionError):  # noqa: SIM117
        with pool.connection() as protocol:
            generated.ExampleService.Client(protocol).send_echo("never read")
            1 / 0  # noqa: B018 - the reply is left unread on the connection
    assert call_echo(pool, generated, "fresh") == "fresh"
    assert server.connections == 2


def test_a_connection_is_kept_after_a_declared_exception(server, make_pool, generated):
    pool = make_pool(server.endpoint)
    with pytest.raises(generated.ttypes.Oops) as excinfo:  # noqa: SIM117
        with pool.connection() as protocol:
            generated.ExampleService.Client(protocol).fail_declared("nope")
    assert excinfo.value.reason == "nope"
    call_echo(pool, generated)
    assert server.connections == 1


def test_a_dropped_connection_raises_and_is_replaced(server, make_pool, generated):
    pool = make_pool(server.endpoint)
    with pytest.raises(TTransportException) as excinfo:  # noqa: SIM117
        with pool.connection() as protocol:
            generated.ExampleService.Client(protocol).drop_connection("k", 1)
    assert str(server.endpoint) in str(excinfo.value)
    assert call_echo(pool, generated) == "hi"
    assert server.connections == 2


def test_a_slow_call_times_out(server, make_pool, generated):
    pool = make_pool(server.endpoint, timeout=0.1)
    with pytest.raises(TTransportException) as excinfo:  # noqa: SIM117
        with pool.connection() as protocol:
            generated.ExampleService.Client(protocol).sleep(0.5)
    assert excinfo.value.type == TTransportException.TIMED_OUT
    assert str(server.endpoint) in str(excinfo.value)


def test_a_connection_the_server_closed_while_idle_is_replaced(server, make_pool, generated):
    pool = make_pool(server.endpoint)
    call_echo(pool, generated)
    server.stop()
    server.start()  # same address; the pooled connection is dead
    assert call_echo(pool, generated, "again") == "again"
    assert server.connections == 2


def test_a_connection_the_server_closed_during_use_is_not_pooled(server, make_pool, generated):
    pool = make_pool(server.endpoint, size=1)
    with pool.connection() as protocol:
        assert generated.ExampleService.Client(protocol).echo("last") == "last"
        server.stop()  # hangs up on the connection in use
        server.start()
    # Found closed when it came back, its slot was returned empty (the
    # original's ``pool`` attribute holds the slots).
    assert list(pool.pool.queue) == [None]
    assert call_echo(pool, generated, "new") == "new"
    assert server.connections == 2


def test_a_shorter_timeout_lasts_only_for_its_checkout(server, make_pool, generated):
    # The context factory checks out with what is left of a retry budget.
    pool = make_pool(server.endpoint, size=1, timeout=5)
    with pytest.raises(TTransportException) as excinfo:  # noqa: SIM117
        with pool._connection(0.1) as protocol:
            generated.ExampleService.Client(protocol).sleep(0.5)
    assert excinfo.value.type == TTransportException.TIMED_OUT
    with pool._connection(0.2) as protocol:
        assert generated.ExampleService.Client(protocol).echo("quick") == "quick"
    # The same connection, back to the pool's own timeout.
    with pool.connection() as protocol:
        generated.ExampleService.Client(protocol).sleep(0.3)
    assert server.connections == 2


# -- opening connections ------------------------------------------------------------


def test_a_failed_connect_is_retried(server, make_pool, generated, monkeypatch, caplog):
    # A connect that fails once and then works can't be staged reliably with
    # a real server (the pool does not wait between attempts): inject it.
    real_connect = thrift_pool._connect
    failures = [ConnectionRefusedError(111, "Connection refused")]

    def flaky_connect(endpoint, timeout):
        if failures:
            raise failures.pop()
        return real_connect(endpoint, timeout)

    monkeypatch.setattr(thrift_pool, "_connect", flaky_connect)
    pool = make_pool(server.endpoint, max_retries=2)
    with caplog.at_level(logging.INFO, logger="baseplate.thrift_pool"):
        assert call_echo(pool, generated) == "hi"
    assert server.connections == 1
    assert "connect attempt 1 failed" in caplog.text
    assert "Connection refused" in caplog.text


def test_the_retry_policy_limits_the_attempts(make_pool, generated, monkeypatch):
    attempts = []
    real_connect = thrift_pool._connect

    def counting_connect(endpoint, timeout):
        attempts.append(timeout)
        return real_connect(endpoint, timeout)

    monkeypatch.setattr(thrift_pool, "_connect", counting_connect)
    endpoint = EndpointConfiguration(socket.AF_INET, ("127.0.0.1", free_port()))
    pool = make_pool(endpoint, max_retries=4, timeout=0.5)
    with pytest.raises(TTransportException, match=r"after 4 attempt\(s\)"):
        call_echo(pool, generated)
    assert attempts == [0.5] * 4
    # The slot came back empty: the pool still has all its slots.
    assert list(pool.pool.queue) == [None] * pool.size


def test_failed_connects_are_not_logged_as_errors(make_pool, generated, caplog):
    endpoint = EndpointConfiguration(socket.AF_INET, ("127.0.0.1", free_port()))
    pool = make_pool(endpoint, max_retries=2)
    with caplog.at_level(logging.DEBUG), pytest.raises(TTransportException):
        call_echo(pool, generated)
    # The error is raised to the caller; Thrift's own TSocket would also log it.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- the server goes away and comes back ---------------------------------------------


def test_server_killed_then_restarted(server, make_pool, generated):
    pool = make_pool(server.endpoint, max_retries=2)
    assert call_echo(pool, generated) == "hi"

    server.stop()
    for _ in range(3):  # every slot fails the same way, none is lost
        with pytest.raises(TTransportException) as excinfo:
            call_echo(pool, generated)
        assert excinfo.value.type == TTransportException.NOT_OPEN
        assert str(server.endpoint) in str(excinfo.value)
        assert "2 attempt(s)" in str(excinfo.value)
        assert isinstance(excinfo.value.inner, ConnectionRefusedError)

    server.start()
    assert call_echo(pool, generated, "back") == "back"
    assert call_echo(pool, generated, "again") == "again"


def test_nothing_listening(make_pool, generated):
    endpoint = EndpointConfiguration(socket.AF_INET, ("127.0.0.1", free_port()))
    pool = make_pool(endpoint, max_retries=1)
    with pytest.raises(TTransportException, match=f"127.0.0.1:{endpoint.address[1]}"):
        call_echo(pool, generated)


# -- unix sockets ------------------------------------------------------------------


def test_unix_socket_endpoint(unix_server, make_pool, generated):
    endpoint = Endpoint(unix_server.address)
    assert endpoint.family == socket.AF_UNIX
    pool = make_pool(endpoint)
    assert call_echo(pool, generated, "over unix") == "over unix"
    assert call_echo(pool, generated, "twice") == "twice"
    assert unix_server.connections == 1


def test_unix_socket_missing(make_pool, generated, tmp_path):
    pool = make_pool(Endpoint(str(tmp_path / "absent.sock")), max_retries=1)
    with pytest.raises(TTransportException, match=r"absent\.sock") as excinfo:
        call_echo(pool, generated)
    assert excinfo.value.type == TTransportException.NOT_OPEN


# -- closing ------------------------------------------------------------------------


def test_close_closes_idle_connections_and_the_pool_stays_usable(server, make_pool, generated):
    pool = make_pool(server.endpoint)
    call_echo(pool, generated)
    pool.close()
    assert call_echo(pool, generated) == "hi"
    assert server.connections == 2


# -- gevent -------------------------------------------------------------------------

GEVENT_CLIENT = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import socket
    import sys

    import gevent

    from baseplate.config import EndpointConfiguration
    from baseplate.thrift_pool import ThriftConnectionPool
    from thrift_client_example import ExampleService

    pool = ThriftConnectionPool(
        EndpointConfiguration(socket.AF_INET, ("127.0.0.1", int(sys.argv[1]))),
        size=2,
        timeout=10,
    )

    def call():
        with pool.connection() as protocol:
            ExampleService.Client(protocol).sleep(0.05)

    greenlets = [gevent.spawn(call) for _ in range(6)]
    gevent.joinall(greenlets, raise_error=True)
    pool.close()
    print("ok")
    """
)


def test_greenlets_share_the_pool_under_gevent(server, generated):
    # In a process of its own: monkey-patching cannot be undone.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(generated.path), os.getcwd()]))
    result = run_python("-W", "error", "-c", GEVENT_CLIENT, str(server.address[1]), env=env)
    assert result.stdout.strip() == "ok"
    assert server.methods() == ["sleep"] * 6
    assert server.max_active == 2  # the greenlets waited for each other's connections
    assert server.connections == 2


# -- construction and configuration ------------------------------------------------


def test_constructor_defaults(server):
    pool = ThriftConnectionPool(server.endpoint)
    assert (pool.size, pool.max_age, pool.timeout, pool.max_retries) == (10, 120, 1, 3)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("size", 0), ("max_retries", 0), ("timeout", 0), ("max_age", -1)],
)
def test_constructor_rejects_bad_arguments(server, argument, value):
    with pytest.raises(ValueError, match=argument):
        ThriftConnectionPool(server.endpoint, **{argument: value})


def test_constructor_rejects_an_endpoint_it_cannot_connect_to():
    endpoint = EndpointConfiguration(socket.AF_UNSPEC, None)
    with pytest.raises(ValueError, match="endpoint must be a TCP or Unix domain socket"):
        ThriftConnectionPool(endpoint)


def test_constructor_keeps_the_originals_attributes(server):
    pool = ThriftConnectionPool(server.endpoint, size=3, max_retries=2)
    assert len(list(pool.retry_policy)) == 2
    assert list(pool.pool.queue) == [None] * 3


def test_from_config():
    pool = thrift_pool_from_config(
        {
            "example_service.endpoint": "localhost:2014",
            "example_service.size": "5",
            "example_service.max_age": "1 minute",
            "example_service.timeout": "300 milliseconds",
            "example_service.max_retries": "2",
            "other.size": "7",
        },
        "example_service.",
    )
    assert pool.endpoint == EndpointConfiguration(socket.AF_INET, ("localhost", 2014))
    assert (pool.size, pool.max_age, pool.timeout, pool.max_retries) == (5, 60, 0.3, 2)
    assert isinstance(pool.protocol_factory.getProtocol(None), THeaderProtocol)


def test_from_config_defaults_and_nested_prefix():
    pool = thrift_pool_from_config(
        {"services.example.endpoint": "/run/ex.sock"}, "services.example."
    )
    assert pool.endpoint == EndpointConfiguration(socket.AF_UNIX, "/run/ex.sock")
    # max_age defaults to a minute from the configuration, as in the original.
    assert (pool.size, pool.max_age, pool.timeout, pool.max_retries) == (10, 60, 1, 3)


def test_from_config_keyword_arguments_take_precedence():
    factory = TBinaryProtocolFactory()
    pool = thrift_pool_from_config(
        {"ex.endpoint": "localhost:2014", "ex.size": "5", "ex.timeout": "nonsense"},
        "ex.",
        size=2,
        timeout=4,
        protocol_factory=factory,
    )
    assert (pool.size, pool.timeout, pool.protocol_factory) == (2, 4, factory)
    pool = thrift_pool_from_config({}, "ex.", endpoint=Endpoint("localhost:1"))
    assert pool.endpoint.address == ("localhost", 1)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("endpoint", None, "missing"),
        ("endpoint", "no port", "host:port"),
        ("size", "ten", "whole number"),
        ("size", "0", "at least 1"),
        ("max_age", "forever", "unit"),
        ("timeout", "1", "unit"),
        ("timeout", "0 seconds", "longer than zero"),
        ("max_retries", "-1", "at least 1"),
    ],
)
def test_from_config_bad_values_name_the_key(key, value, problem):
    raw = {"ex.endpoint": "localhost:2014"}
    if value is None:
        del raw[f"ex.{key}"]
    else:
        raw[f"ex.{key}"] = value
    with pytest.raises(ConfigurationError, match=problem) as excinfo:
        thrift_pool_from_config(raw, "ex.")
    assert excinfo.value.key == f"ex.{key}"


@pytest.mark.parametrize("prefix", ["ex", ".", "a..b.", ".ex."])
def test_from_config_prefix_must_be_names_ending_with_a_dot(prefix):
    with pytest.raises(ValueError, match="dot"):
        thrift_pool_from_config({"ex.endpoint": "localhost:1"}, prefix)


def test_from_config_nested_prefix_bad_value_names_the_full_key():
    with pytest.raises(ConfigurationError) as excinfo:
        thrift_pool_from_config(
            {"services.example.endpoint": "localhost:1", "services.example.size": "0"},
            "services.example.",
        )
    assert excinfo.value.key == "services.example.size"
