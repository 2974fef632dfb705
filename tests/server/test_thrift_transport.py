"""The Thrift server's socket transport: whole frames, and a deadline for the rest of a call."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from thrift.transport.TTransport import TTransportException

from baseplate.server.thrift import _SocketTransport


@pytest.fixture
def pair():
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        yield _SocketTransport(server_side), client_side


class ChunkedTransport(_SocketTransport):
    """Hands out at most 64 KB a read, as a socket does under a large frame."""

    def __init__(self) -> None:
        super().__init__(socket.socket())
        self.sock.close()

        self.reads = 0

    def read(self, sz: int) -> bytes:
        self.reads += 1
        return b"x" * min(sz, 65536)


def test_read_all_assembles_a_frame_sent_in_pieces(pair):
    transport, client = pair
    sender = threading.Timer(0.05, client.sendall, args=(b"world",))
    client.sendall(b"hello ")
    sender.start()
    assert transport.readAll(11) == b"hello world"
    sender.join()


def test_read_all_of_a_16_mb_frame_in_64_kb_pieces():
    """Whole, one read a piece.

    (What it costs, against Thrift's quadratic readAll: benchmarks/thrift_frames.py.)
    """
    transport = ChunkedTransport()
    assert transport.readAll(16_000_000) == b"x" * 16_000_000
    assert transport.reads == -(-16_000_000 // 65536)


def test_the_rest_of_a_call_must_come_before_the_deadline(pair):
    transport, client = pair
    client.sendall(b"\x00\x00")
    # Should the deadline not hold, the client leaves after a while, and the
    # read ends with END_OF_FILE instead of TIMED_OUT.
    leaving = threading.Timer(30, client.shutdown, args=(socket.SHUT_WR,))
    leaving.start()
    started = time.monotonic()
    transport.start_call(0.2)
    assert transport.readAll(2) == b"\x00\x00"
    try:
        with pytest.raises(TTransportException) as caught:
            transport.readAll(2)
    finally:
        leaving.cancel()
    assert time.monotonic() - started >= 0.2  # not before the deadline
    assert caught.value.type == TTransportException.TIMED_OUT
    assert str(caught.value) == "the call was not complete within read_timeout (0.2s)"


def test_a_deadline_already_past_times_out_instead_of_polling(pair):
    transport, _ = pair
    transport.start_call(0.01)
    time.sleep(0.02)
    with pytest.raises(TTransportException) as caught:
        transport.read(1)
    assert caught.value.type == TTransportException.TIMED_OUT


def test_without_a_read_timeout_reads_wait(pair):
    transport, client = pair
    transport.start_call(None)
    sender = threading.Timer(0.3, client.sendall, args=(b"late",))
    sender.start()
    assert transport.readAll(4) == b"late"
    sender.join()


def test_answers_are_not_bound_by_the_read_deadline(pair):
    transport, client = pair
    transport.start_call(0.01)
    time.sleep(0.02)
    transport.write(b"answer")
    assert client.recv(6) == b"answer"


def test_a_call_that_came_in_one_piece_is_read_with_one_recv(pair):
    transport, client = pair
    client.sendall(b"\x00\x00\x00\x05hello")
    assert transport.wait_for_call()
    client.close()  # anything not read yet would now be an end of file
    assert transport.readAll(4) == b"\x00\x00\x00\x05"
    assert transport.readAll(5) == b"hello"


def test_bytes_of_the_next_call_wait_for_it(pair):
    transport, client = pair
    transport.idle_timeout = 0.01
    client.sendall(b"first" + b"second")
    assert transport.wait_for_call()
    assert transport.readAll(5) == b"first"
    # The next call came with the first: no waiting, and nothing lost.
    assert transport.wait_for_call()
    assert transport.readAll(6) == b"second"
    with pytest.raises(TimeoutError):
        transport.wait_for_call()


def test_a_client_that_left_ends_the_wait(pair):
    transport, client = pair
    client.close()
    assert transport.wait_for_call() is False


@pytest.mark.parametrize("size", [0, -8])
def test_sizes_below_one_read_nothing(pair, size):
    transport, client = pair
    client.sendall(b"data")
    assert transport.readAll(size) == b""
    assert transport.read(size) == b""
    assert transport.readAll(4) == b"data"
