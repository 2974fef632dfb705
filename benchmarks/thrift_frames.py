"""Large Thrift frames on the server's read path: what they cost to read or refuse.

Two figures, each against a baseline measured in the same run (the tests
check what these paths do; the time they take is measured here, where a
loaded machine makes a figure noisy rather than a test fail):

* reading a 16 MB frame that arrives in 64 KB pieces, as a socket hands out
  a large frame: the server transport's ``readAll`` (pieces joined once)
  against Thrift's own ``TTransportBase.readAll`` (which concatenates as it
  goes, quadratic in the number of pieces);
* refusing the reported header-count frame (a one-word header area claiming
  2**40 headers, padded to 16 MB, on which Thrift alone loops for about
  13 s) with the THeader guard, against reading a well-formed 16 MB frame
  through the same guarded transport: refusing must cost no more than
  reading.
"""

from __future__ import annotations

import socket
import statistics
import struct
import time
from collections.abc import Callable

from thrift.transport.THeaderTransport import (
    THeaderClientType,
    THeaderSubprotocolID,
    THeaderTransport,
)
from thrift.transport.TTransport import TMemoryBuffer, TTransportBase

from baseplate.server._theader_guard import GuardedHeaderTransport, HeaderFormatError
from baseplate.server.thrift import ALLOWED_CLIENT_TYPES, _SocketTransport

FRAME_SIZE = 16_000_000
PIECE_SIZE = 65_536
COUNT_2_40 = b"\x80\x80\x80\x80\x80\x20"


class _Pieces(_SocketTransport):
    """A transport whose reads return at most one 64 KB piece, as a socket does."""

    def __init__(self) -> None:
        super().__init__(socket.socket())
        self.sock.close()
        self.piece = b"x" * PIECE_SIZE

    def read(self, sz: int) -> bytes:
        return self.piece if sz >= PIECE_SIZE else self.piece[:sz]


def _ours() -> None:
    assert len(_Pieces().readAll(FRAME_SIZE)) == FRAME_SIZE


def _thrifts() -> None:
    assert len(TTransportBase.readAll(_Pieces(), FRAME_SIZE)) == FRAME_SIZE


def _framed(frame: bytes) -> bytes:
    return struct.pack("!i", len(frame)) + frame


def _count_bomb() -> bytes:
    preamble = struct.pack("!HHIH", 0x0FFF, 0, 0, 1)
    return _framed((preamble + b"\x00\x00\x01" + COUNT_2_40).ljust(FRAME_SIZE, b"\x00"))


def _well_formed() -> bytes:
    buffer = TMemoryBuffer()
    transport = THeaderTransport(buffer, (THeaderClientType.HEADERS,), THeaderSubprotocolID.BINARY)
    transport.set_header(b"Trace", b"1234")
    transport.write(b"x" * (FRAME_SIZE - 64))
    transport.flush()
    frame: bytes = buffer.getvalue()
    return frame


def _refuse(data: bytes) -> Callable[[], None]:
    def refuse() -> None:
        reader = GuardedHeaderTransport(TMemoryBuffer(data), ALLOWED_CLIENT_TYPES)
        try:
            reader.readFrame(0)
        except HeaderFormatError:
            return
        raise AssertionError("the guard let the header-count frame through")

    return refuse


def _read(data: bytes) -> Callable[[], None]:
    def read() -> None:
        reader = GuardedHeaderTransport(TMemoryBuffer(data), ALLOWED_CLIENT_TYPES)
        reader.readFrame(0)
        assert reader.get_headers() == {b"Trace": b"1234"}

    return read


def _seconds(work: Callable[[], None], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(rounds: int = 5) -> list[tuple[str, float, str, float]]:
    """Return (work, its median seconds, baseline, the baseline's median seconds)."""
    bomb, well_formed = _count_bomb(), _well_formed()
    return [
        (
            "readAll, 16 MB in 64 KB pieces",
            _seconds(_ours, rounds),
            "Thrift's readAll",
            _seconds(_thrifts, rounds),
        ),
        (
            "guard refuses the 2**40-count frame",
            _seconds(_refuse(bomb), rounds),
            "reading a good 16 MB frame",
            _seconds(_read(well_formed), rounds),
        ),
    ]


def main() -> None:
    print("large Thrift frames on the server's read path (median seconds)")
    print(f"{'work':<38} {'seconds':>8}   {'baseline':<28} {'seconds':>8} {'ratio':>7}")
    for name, ours, baseline, theirs in run():
        print(f"{name:<38} {ours:>8.4f}   {baseline:<28} {theirs:>8.4f} {ours / theirs:>6.2f}x")


if __name__ == "__main__":
    main()
