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

    def read(self, sz: int) -> bytes:
        return b"x" * min(sz, 65536)


def test_read_all_assembles_a_frame_sent_in_pieces(pair):
    transport, client = pair
    sender = threading.Timer(0.05, client.sendall, args=(b"world",))
    client.sendall(b"hello ")
    sender.start()
    assert transport.readAll(11) == b"hello world"
    sender.join()


def test_read_all_of_a_16_mb_frame_is_linear():
    """Thrift's readAll concatenates: ~0.9 s of copying for 16 MB in 64 KB reads."""
    started = time.perf_counter()
    assert len(ChunkedTransport().readAll(16_000_000)) == 16_000_000
    assert time.perf_counter() - started < 0.3


def test_the_rest_of_a_call_must_come_before_the_deadline(pair):
    transport, client = pair
    client.sendall(b"\x00\x00")
    transport.start_call(0.2)
    assert transport.readAll(2) == b"\x00\x00"
    started = time.monotonic()
    with pytest.raises(TTransportException) as caught:
        transport.readAll(2)
    assert 0.1 < time.monotonic() - started < 2
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
