"""Hostile and broken clients against a real ``baseplate-serve`` Thrift server.

Every test runs the gevent Thrift server as a subprocess and talks to it over
127.0.0.1 with a bounded number of connections, calls and bytes. It checks
what a service owner relies on when a client misbehaves: the other clients
keep being answered promptly, the bad connection is closed, and the log says
what happened at the right level (a client's garbage at INFO in one line, a
bug of the server's at ERROR with its traceback).
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import struct
import threading
import time

import pytest
from thrift.transport import TTransport

from tests._helpers import wait_until
from tests.server import test_serve_thrift, write
from tests.server.test_serve_thrift import (
    INI,
    assert_closed_by_server,
    assert_still_serving,
    client,
    raw_connection,
)

# The Echo service and its server, as the tests of baseplate-serve make them.
service_dir = test_serve_thrift.service_dir
echo = test_serve_thrift.echo
start = test_serve_thrift.start

# Far above a loopback call, far below the ~13 s stall of the count bomb: a
# bystander's call that took longer fails with a timeout.
BYSTANDER_TIMEOUT_MS = 5_000


def framed(body: bytes) -> bytes:
    return struct.pack("!i", len(body)) + body


def theader(header_area: bytes, payload: bytes = b"") -> bytes:
    """A framed THeader frame around ``header_area`` (padded to whole words)."""
    header_area += b"\x00" * (-len(header_area) % 4)
    preamble = struct.pack("!HHIH", 0x0FFF, 0, 0, len(header_area) // 4)
    return framed(preamble + header_area + payload)


def echo_call(field: bytes) -> bytes:
    """A binary-protocol call of ``echo`` whose argument struct is ``field`` and a stop."""
    return struct.pack("!Ii", 0x80010001, 4) + b"echo" + struct.pack("!i", 0) + field + b"\x00"


def text_field(text: bytes) -> bytes:
    return b"\x0b\x00\x01" + struct.pack("!i", len(text)) + text


# The reported frame: the THeader preamble announcing a one-word header area,
# then "binary protocol, no transforms, key-value headers, 2**40 of them",
# padded to 16 MB (under the default frame limit). Thrift alone loops over the
# count, reading empty strings to the end of the frame, for ~13 s.
BOMB_HEADER = struct.pack("!HHIH", 0x0FFF, 0, 0, 1) + b"\x00\x00\x01" + b"\x80\x80\x80\x80\x80\x20"
HEADER_COUNT_BOMB = framed(BOMB_HEADER.ljust(16_000_000, b"\x00"))


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """``sendall`` for a thread: the server may close the connection once it has seen enough."""
    with contextlib.suppress(OSError):
        sock.sendall(data)


def lines_matching(server, pattern: str, start: int = 0) -> list[str]:
    regex = re.compile(pattern)
    return [line for line in server.lines[start:] if regex.search(line)]


def test_a_header_count_bomb_does_not_stall_other_connections(echo, start):
    server = start()
    address = server.address()
    rejected = "malformed request: _theader_guard.HeaderFormatError: malformed THeader frame"
    with (
        client(echo, address, timeout_ms=BYSTANDER_TIMEOUT_MS) as bystander,
        raw_connection(address) as attacker,
    ):
        assert bystander.echo("before") == "before"
        mark = server.line_count()
        sender = threading.Thread(target=send_quietly, args=(attacker, HEADER_COUNT_BOMB))
        sender.start()
        for _ in range(500):  # until the server has dealt with the frame; bounded
            assert bystander.echo("during") == "during"
            if lines_matching(server, rejected, mark):
                break
            time.sleep(0.01)
        sender.join(10)
        line = server.wait_for(rejected, timeout=10, start=mark).string
        assert " INFO baseplate.server.thrift " in line
        assert_closed_by_server(attacker)
        assert bystander.echo("after") == "after"
    assert "Traceback" not in server.output


STALLS = [
    pytest.param(b"\x00\x00", "read_timeout = 1\nidle_timeout = 0", id="two bytes of a length"),
    pytest.param(
        framed(echo_call(text_field(b"never finished")))[:20],
        "read_timeout = 1\nidle_timeout = 0",
        id="half a framed call",
    ),
    pytest.param(
        echo_call(text_field(b"never finished"))[:10],
        "read_timeout = 1\nidle_timeout = 0",
        id="half an unframed call",
    ),
    pytest.param(b"", "read_timeout = 0\nidle_timeout = 1", id="connected and silent"),
]


@pytest.mark.parametrize(("stall", "timeouts"), STALLS)
def test_stalled_clients_do_not_hold_a_full_server(echo, start, stall, timeouts):
    server = start(extra=f"max_concurrency = 4\n{timeouts}")
    address = server.address()
    started = time.monotonic()  # before any timeout can start
    stalled = [raw_connection(address) for _ in range(4)]
    try:
        for sock in stalled:
            sock.sendall(stall)
        # The fifth client waits for a slot, which a timeout frees: not before
        # the 1 s timeout, and well within the call's own timeout.
        with client(echo, address, timeout_ms=8_000) as fifth:
            assert fifth.echo("served") == "served"
        assert time.monotonic() - started > 0.5
        for sock in stalled:
            assert_closed_by_server(sock)
    finally:
        for sock in stalled:
            sock.close()
    read_timed_out = r"INFO .* not complete within read_timeout \(1s\)"
    if stall:  # the server logs as it closes: the line may trail the close
        wait_until(lambda: len(lines_matching(server, read_timed_out)) >= 4, "4 timeout lines")
    assert len(lines_matching(server, read_timed_out)) == (4 if stall else 0)
    assert "Traceback" not in server.output


def read_frame(sock: socket.socket) -> bytes:
    """One framed answer from the server."""
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack("!i", data[:4])[0]:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    return data[4:]


def test_timeouts_leave_slow_but_live_clients_alone(echo, start):
    server = start(extra="read_timeout = 1\nidle_timeout = 3")
    address = server.address()
    with client(echo, address) as keep_alive:
        assert keep_alive.echo("first") == "first"
        time.sleep(1.5)  # idle for longer than read_timeout: only idle_timeout applies
        assert keep_alive.echo("second") == "second"
    with raw_connection(address) as sock:
        for text in (b"one piece", b"another piece"):  # 1.2 s in all: read_timeout is per call
            call = framed(echo_call(text_field(text)))
            sock.sendall(call[:7])
            time.sleep(0.6)
            sock.sendall(call[7:])
            assert text in read_frame(sock)
    assert "Traceback" not in server.output


GARBAGE = [
    ("a frame too short for a version", framed(b"\xab\xcd"), "struct.error"),
    ("a negative frame length", struct.pack("!i", -8) + b"\x00" * 8, "struct.error"),
    (
        "a zlib transform over bytes that are not zlib",
        theader(b"\x00\x01\x01", b"these bytes are not zlib"),
        "zlib.error",
    ),
    (
        "a header value length of 2**64-1",
        theader(b"\x00\x00\x01\x01\x01k" + b"\xff" * 9 + b"\x01"),
        "HeaderFormatError: malformed THeader frame: a header value",
    ),
    (
        "a string length beyond what Python can index",
        theader(b"\x00\x00", echo_call(b"\x0b\x00\x01" + struct.pack("!I", 0xEC00000B))),
        "OverflowError",
    ),
    (
        "a field of an unknown type",
        theader(b"\x00\x00", echo_call(b"\x8d\x00\x01\x00\x00\x00\x00")),
        "TypeError: Unexpected TType",
    ),
    (
        "random bytes in a THeader frame",
        framed(b"\x0f\xff" + random.Random(20261201).randbytes(200)),
        "HeaderFormatError",
    ),
]


def test_client_garbage_is_one_info_line_and_the_server_keeps_serving(echo, start):
    server = start()
    address = server.address()
    with client(echo, address) as bystander:
        for kind, garbage, logged in GARBAGE:
            mark = server.line_count()
            with raw_connection(address) as sock:
                sock.sendall(garbage)
                assert_closed_by_server(sock)
            line = server.wait_for(r"closing the connection from", timeout=10, start=mark).string
            assert " INFO baseplate.server.thrift " in line, kind
            assert logged in line.partition("malformed request: ")[2], kind
            assert bystander.echo(kind) == kind
    assert_still_serving(echo, address)
    assert "Traceback" not in server.output
    assert " ERROR " not in server.output


FAULTY_APP = """
from thrift.transport.TTransport import TTransportException

from echo_service import Echo
from echoapp import Handler


class FaultyHandler(Handler):
    def echo(self, text):
        if text == "a number":
            return 42  # not a string: writing the answer fails
        if text == "downstream":
            raise TTransportException(TTransportException.UNKNOWN, "a backend went away")
        return text


def make_processor(app_config):
    return Echo.Processor(FaultyHandler())
"""


@pytest.mark.parametrize(
    ("argument", "error"),
    [("a number", "TypeError"), ("downstream", "TTransportException: a backend went away")],
)
def test_a_server_bug_is_still_an_error_with_its_traceback(
    echo, servers, service_dir, argument, error
):
    write(service_dir / "faultyapp.py", FAULTY_APP)
    ini = INI.replace("echoapp:make_processor", "faultyapp:make_processor").format(extra="")
    write(service_dir / "faulty.ini", ini)
    server = servers.start("faulty.ini", "--bind", "127.0.0.1:0", cwd=service_dir)
    address = server.address()
    with (
        pytest.raises((TTransport.TTransportException, OSError)),
        client(echo, address) as caller,
    ):
        caller.echo(argument)
    server.wait_for(r"ERROR baseplate\.server\.thrift .* after an unexpected error", timeout=10)
    server.wait_for(f"^\\S*{error}", timeout=10)
    assert "Traceback (most recent call last)" in server.output
    assert "malformed request" not in server.output
    assert_still_serving(echo, address)
