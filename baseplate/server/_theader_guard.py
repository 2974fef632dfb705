"""A bounded check of THeader header areas, ahead of Thrift's own parser.

Thrift's ``THeaderTransport`` trusts the counts a client announces: a frame
saying it carries 2**40 key-value headers makes its parser loop, reading
zero-length strings, until it runs off the end of a 16 MB frame. On a gevent
server that loop holds the one thread for seconds, so every other connection
waits. This module walks the header area first, with every count and length
bounded by the bytes that are really there, and rejects frames that lie.

It relies on a private hook of the ``thrift`` package, and this is the only
module that may: ``THeaderTransport.readFrame`` hands each THeader frame (a
``BytesIO`` of the frame without its length word) to
``THeaderTransport._parse_header_format``. :class:`GuardedHeaderTransport`
overrides that method to check the frame before Thrift parses it. If an
upgrade of ``thrift`` renames or removes the hook, :func:`missing_hooks` says
so, the server logs a warning at start, and
``tests/server/test_theader_guard.py`` fails naming the hook.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

from thrift.protocol.THeaderProtocol import PROTOCOLS_BY_ID
from thrift.protocol.TProtocol import TProtocolException
from thrift.transport.THeaderTransport import (
    KNOWN_READ_TRANSFORM_IDS,
    THeaderTransport,
    TInfoHeaderType,
)

__all__ = [
    "HOOK",
    "MAX_TRANSFORMS",
    "GuardedHeaderTransport",
    "HeaderFormatError",
    "check_header_area",
    "missing_hooks",
]

HOOK = "_parse_header_format"
"""The private ``THeaderTransport`` method the guard overrides."""

MAX_TRANSFORMS = 8
"""The most payload transforms a frame may ask for.

Thrift knows one transform, zlib; a frame asking for more than a handful is
an attempt to make the server decompress the same bytes over and over.
"""

_PREAMBLE = struct.Struct("!HHIH")  # magic, flags, sequence id, header words
_MAX_VARINT_BYTES = 10  # a 64-bit value, 7 bits a byte; as Thrift's reader


class HeaderFormatError(TProtocolException):  # type: ignore[misc]  # thrift is untyped
    """A THeader frame whose header area contradicts itself or its frame."""

    def __init__(self, message: str) -> None:
        super().__init__(TProtocolException.INVALID_DATA, f"malformed THeader frame: {message}")


def missing_hooks() -> list[str]:
    """The private ``thrift`` hooks the guard needs that this ``thrift`` lacks."""
    hook = getattr(THeaderTransport, HOOK, None)
    return [] if callable(hook) else [f"THeaderTransport.{HOOK}"]


class _Reader:
    """Reads varints and skips strings inside ``frame[position:end]``, never past ``end``."""

    def __init__(self, frame: bytes, position: int, end: int) -> None:
        self.frame = frame
        self.position = position
        self.end = end

    @property
    def left(self) -> int:
        return self.end - self.position

    def varint(self, what: str) -> int:
        # Nearly every varint of a header area (ids, counts, lengths under
        # 128) is one byte: read it without the general loop.
        position = self.position
        if position < self.end:
            byte = self.frame[position]
            if not byte & 0x80:
                self.position = position + 1
                return byte
        return self._long_varint(what)

    def _long_varint(self, what: str) -> int:
        result = 0
        for index in range(_MAX_VARINT_BYTES):
            if self.position >= self.end:
                raise HeaderFormatError(f"{what} runs past the header area")
            byte = self.frame[self.position]
            self.position += 1
            result |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                return result
        raise HeaderFormatError(f"{what} is a varint longer than {_MAX_VARINT_BYTES} bytes")

    def count(self, what: str, each: int, most: int | None = None) -> int:
        """A count of items of at least ``each`` bytes, which must fit in what is left."""
        value = self.varint(what)
        limit = self.left // each
        if most is not None:
            limit = min(limit, most)
        if value > limit:
            raise HeaderFormatError(f"{what} {value} exceeds the {limit} that fit")
        return value

    def skip_string(self, what: str) -> None:
        position = self.position
        end = self.end
        if position < end and not self.frame[position] & 0x80:
            # A length under 128, in one byte.
            size = self.frame[position]
            position += 1
        else:
            size = self._long_varint(f"{what} length")
            position = self.position
        if size > end - position:
            raise HeaderFormatError(f"{what} of {size} bytes exceeds the {end - position} left")
        self.position = position + size


def check_header_area(frame: bytes) -> None:
    """Check that the header area of the THeader ``frame`` is what it claims.

    ``frame`` is a whole frame without its length word. Walks the area as
    Thrift's parser will: the preamble, the protocol id, the transforms and
    the key-value headers, stopping where Thrift stops (at an unknown
    transform, which Thrift reports itself, or at an info header type it
    ignores). Costs at most one step per byte of the header area (at most
    256 KB).

    :raises HeaderFormatError: The frame is shorter than its preamble, the
        header area is longer than the frame, the protocol is not one Thrift
        speaks, a count or a length exceeds the bytes left in the header
        area, or a varint runs past it.
    """
    if len(frame) < _PREAMBLE.size:
        raise HeaderFormatError(f"{len(frame)} bytes is shorter than the preamble")
    header_words = _PREAMBLE.unpack_from(frame)[3]
    end = _PREAMBLE.size + 4 * header_words
    if end > len(frame):
        raise HeaderFormatError(
            f"a header area of {4 * header_words} bytes exceeds the {len(frame)}-byte frame"
        )
    if not _plainly_valid(frame, _PREAMBLE.size, end):
        _walk(frame, end)


def _walk(frame: bytes, end: int) -> None:
    """Check the header area ``frame[preamble:end]`` as :func:`check_header_area` says."""
    reader = _Reader(frame, _PREAMBLE.size, end)
    protocol_id = reader.varint("the protocol id")
    if protocol_id not in PROTOCOLS_BY_ID:
        # Thrift would try to answer in a protocol it cannot write, and fail with a TypeError.
        raise HeaderFormatError(f"unknown protocol id {protocol_id}")
    for _ in range(reader.count("the transform count", 1, MAX_TRANSFORMS)):
        if reader.varint("a transform id") not in KNOWN_READ_TRANSFORM_IDS:
            return  # Thrift rejects the frame itself, before reading further
    while reader.left > 0:
        if reader.varint("an info header type") != TInfoHeaderType.KEY_VALUE:
            return  # Thrift ignores the rest of the area (padding is type 0)
        for _ in range(reader.count("the header count", 2)):  # two length bytes at least
            reader.skip_string("a header key")
            reader.skip_string("a header value")


def _plainly_valid(frame: bytes, position: int, end: int) -> bool:
    """Whether the header area ``frame[position:end]`` is valid with every varint one byte long.

    The usual frame: a few headers, short names and values. This walk
    accepts it in one function with no objects; False sends anything else,
    valid or not, to the general walk, which tells why a frame is invalid.
    It accepts nothing the general walk would reject.
    """
    if end - position < 2:
        return False
    protocol_id, transforms = frame[position], frame[position + 1]
    position += 2
    if protocol_id & 0x80 or protocol_id not in PROTOCOLS_BY_ID:
        return False
    if transforms & 0x80 or transforms > MAX_TRANSFORMS or transforms > end - position:
        return False
    for transform in frame[position : position + transforms]:
        position += 1
        if transform & 0x80:
            return False
        if transform not in KNOWN_READ_TRANSFORM_IDS:
            return True  # Thrift rejects the frame itself, before reading further
    while position < end:
        info_type = frame[position]
        position += 1
        if info_type != TInfoHeaderType.KEY_VALUE:
            return not info_type & 0x80  # Thrift ignores the rest (padding is type 0)
        if position >= end:
            return False
        count = frame[position]
        position += 1
        if count & 0x80 or count > (end - position) // 2:
            return False
        for _ in range(2 * count):  # a key, then a value
            if position >= end:
                return False
            size = frame[position]
            position += 1
            if size & 0x80 or size > end - position:
                return False
            position += size
    return True


class GuardedHeaderTransport(THeaderTransport):  # type: ignore[misc]  # thrift is untyped
    """A ``THeaderTransport`` that checks each THeader frame's header area before parsing it."""

    def _parse_header_format(self, buffer: BytesIO) -> Any:
        check_header_area(buffer.getvalue())
        return super()._parse_header_format(buffer)
