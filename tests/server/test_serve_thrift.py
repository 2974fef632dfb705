"""``baseplate-serve`` with the gevent Thrift server, as a real subprocess."""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import signal
import socket
import struct
import sys
import time

import pytest
from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException
from thrift.transport import TSocket, TTransport
from thrift.transport.THeaderTransport import THeaderClientType

from tests.server import STOP_TIMEOUT, error_line, generate_thrift_service, run_command, write

CALL_TIMEOUT_MS = 10_000

INI = """
[server:main]
factory = baseplate.server.thrift
{extra}

[app:main]
factory = echoapp:make_processor
"""


@pytest.fixture(scope="module")
def service_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("thrift")
    generate_thrift_service(directory)
    return directory


@pytest.fixture(scope="module")
def echo(service_dir):
    """The generated ``Echo`` module, imported in the test process for clients."""
    sys.path.insert(0, str(service_dir))
    try:
        yield (
            importlib.import_module("echo_service.Echo"),
            importlib.import_module("echo_service.ttypes"),
        )
    finally:
        sys.path.remove(str(service_dir))
        for name in [name for name in sys.modules if name.startswith("echo_service")]:
            del sys.modules[name]


@pytest.fixture
def start(servers, service_dir):
    def start_server(extra="stop_timeout = 10", bind="127.0.0.1:0"):
        name = f"server{len(servers.servers)}.ini"
        write(service_dir / name, INI.format(extra=extra))
        return servers.start(name, "--bind", bind, cwd=service_dir)

    return start_server


def _socket(address, timeout_ms=CALL_TIMEOUT_MS):
    if "/" in address:
        sock = TSocket.TSocket(unix_socket=address)
    else:
        host, _, port = address.rpartition(":")
        sock = TSocket.TSocket(host, int(port))
    sock.setTimeout(timeout_ms)
    return sock


@contextlib.contextmanager
def client(echo, address, dialect="header", timeout_ms=CALL_TIMEOUT_MS):
    module, _ = echo
    sock = _socket(address, timeout_ms)
    if dialect == "header":
        protocol = THeaderProtocol(sock, (THeaderClientType.HEADERS,))
        transport = protocol.trans
    elif dialect == "framed binary":
        transport = TTransport.TFramedTransport(sock)
        protocol = TBinaryProtocol.TBinaryProtocolAccelerated(transport)
    elif dialect == "unframed binary":
        transport = TTransport.TBufferedTransport(sock)
        protocol = TBinaryProtocol.TBinaryProtocolAccelerated(transport)
    elif dialect == "framed compact":
        transport = TTransport.TFramedTransport(sock)
        protocol = TCompactProtocol.TCompactProtocolAccelerated(transport)
    else:
        raise AssertionError(dialect)
    transport.open()
    try:
        yield module.Client(protocol)
    finally:
        transport.close()


def start_slow_call(pool, echo, server, address, milliseconds):
    """Start ``sleep_ms`` on a connection of its own; return once the server is in it."""

    def call():
        with client(echo, address) as echo_client:
            return echo_client.sleep_ms(milliseconds)

    future = pool.submit(call)
    server.wait_for(f"sleeping {milliseconds} ms")
    return future


def raw_connection(address):
    host, _, port = address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=10)


def assert_closed_by_server(sock):
    """The server closes the connection: reading gives EOF (or a reset)."""
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass


def assert_still_serving(echo, address):
    with client(echo, address) as echo_client:
        assert echo_client.echo("still here") == "still here"


@pytest.mark.parametrize(
    "dialect", ["header", "framed binary", "unframed binary", "framed compact"]
)
def test_serves_every_dialect_thrift_header_detects(echo, start, dialect):
    server = start()
    with client(echo, server.address(), dialect) as echo_client:
        assert echo_client.echo("hello") == "hello"
        assert echo_client.sleep_ms(1) == 1
        assert echo_client.echo("again") == "again"


def test_declared_exceptions_reach_the_client(echo, start):
    _, ttypes = echo
    server = start()
    with client(echo, server.address()) as echo_client:
        with pytest.raises(ttypes.Oops) as caught:
            echo_client.fail()
        assert caught.value.why == "declared"
        with pytest.raises(TApplicationException):
            echo_client.crash()
        # the connection is still usable after both
        assert echo_client.echo("ok") == "ok"


def test_serves_on_a_unix_socket(echo, start, service_dir):
    path = str(service_dir / "thrift.sock")
    server = start(bind=path)
    assert server.address() == path
    with client(echo, path) as echo_client:
        assert echo_client.echo("unix") == "unix"


def test_malformed_frames_close_only_that_connection(echo, start):
    server = start()
    address = server.address()
    with client(echo, address) as bystander:
        assert bystander.echo("before") == "before"
        garbage = b"\x00\x00\x00\x08" + b"\xde\xad\xbe\xef" * 2  # a frame nobody can parse
        with raw_connection(address) as sock:
            sock.sendall(garbage)
            assert_closed_by_server(sock)
        with raw_connection(address) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not Thrift at all
            assert_closed_by_server(sock)
        assert bystander.echo("after") == "after"
    assert_still_serving(echo, address)
    assert "Traceback" not in server.output


def test_oversized_frames_close_only_that_connection(echo, start):
    server = start(extra="max_frame_size = 1024")
    address = server.address()
    with raw_connection(address) as sock:
        sock.sendall(struct.pack("!i", 512 * 1024 * 1024))  # a 512 MB frame announced
        assert_closed_by_server(sock)
    with (
        client(echo, address, "framed binary") as echo_client,
        pytest.raises((TTransport.TTransportException, OSError)),
    ):
        echo_client.echo("x" * 4096)
    with client(echo, address, "framed binary") as echo_client:
        assert echo_client.echo("x" * 100) == "x" * 100
    assert_still_serving(echo, address)


def test_clients_disconnecting_mid_call_leave_the_server_serving(echo, start):
    server = start()
    address = server.address()

    # half a frame, then gone
    with raw_connection(address) as sock:
        sock.sendall(b"\x00\x00\x01\x00\x0f\xff")
    # a whole call, then gone before the answer
    with (
        pytest.raises((TTransport.TTransportException, OSError)),
        client(echo, address, timeout_ms=200) as echo_client,
    ):
        echo_client.sleep_ms(600)
    server.wait_for("sleeping 600 ms")
    time.sleep(0.8)  # let the server try to answer the departed client

    assert_still_serving(echo, address)
    assert "Traceback" not in server.output


def test_max_concurrency_bounds_connections(echo, start):
    server = start(extra="max_concurrency = 1")
    address = server.address()
    with client(echo, address) as first:
        assert first.echo("one") == "one"
        # the only slot is taken by the open connection: a second client waits
        with (
            pytest.raises((TTransport.TTransportException, OSError)),
            client(echo, address, timeout_ms=500) as second,
        ):
            second.echo("two")
    # once the first connection closes, the next client is served
    assert_still_serving(echo, address)


def test_graceful_stop_finishes_calls_in_progress(echo, start):
    # A stop that waited for the idle connection would last the whole
    # stop_timeout, longer than server.wait() waits for the exit.
    server = start(extra=f"stop_timeout = {STOP_TIMEOUT * 3:g}")
    address = server.address()
    with client(echo, address) as idle_client:  # an idle connection must not delay the stop
        assert idle_client.echo("idle") == "idle"
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            slow = start_slow_call(pool, echo, server, address, 1500)
            server.send_signal(signal.SIGTERM)
            assert slow.result(timeout=15) == 1500
            assert server.wait() == 0
    assert "Traceback" not in server.output


def test_stop_timeout_zero_stops_at_once(echo, start):
    server = start(extra="stop_timeout = 0")
    address = server.address()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        # The call lasts longer than server.stop() waits for the exit.
        slow = start_slow_call(pool, echo, server, address, int(STOP_TIMEOUT * 3000))
        assert server.stop() == 0
        with pytest.raises((TTransport.TTransportException, OSError)):
            slow.result(timeout=15)


def test_an_app_that_is_not_a_processor_is_one_clear_line(service_dir):
    write(service_dir / "wsgi_as_thrift.py", "def make_app(config):\n    return lambda e, s: []\n")
    write(
        service_dir / "mismatch.ini",
        "[server:main]\nfactory = baseplate.server.thrift\n\n"
        "[app:main]\nfactory = wsgi_as_thrift\n",
    )
    result = run_command(
        "baseplate-serve", "mismatch.ini", "--bind", "127.0.0.1:0", cwd=service_dir
    )
    line = error_line(result, "baseplate-serve")
    assert "[server:main] the application must be a Thrift processor" in line
