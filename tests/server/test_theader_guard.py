"""The THeader guard: bounded checks of header areas, and the fence around Thrift's hook."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.transport.THeaderTransport import (
    THeaderClientType,
    THeaderSubprotocolID,
    THeaderTransformID,
    THeaderTransport,
)
from thrift.transport.TTransport import TMemoryBuffer

from baseplate.server._theader_guard import (
    HOOK,
    MAX_TRANSFORMS,
    GuardedHeaderTransport,
    HeaderFormatError,
    _plainly_valid,
    _walk,
    check_header_area,
    missing_hooks,
)
from baseplate.server.thrift import ALLOWED_CLIENT_TYPES

PREAMBLE = struct.Struct("!HHIH")
COUNT_2_40 = b"\x80\x80\x80\x80\x80\x20"  # varint 2**40
PAYLOAD = b"\x80\x01\x00\x01 a binary protocol message"


def header_frame(header_area: bytes, payload: bytes = b"", words: int | None = None) -> bytes:
    """A THeader frame, without its length word; ``words`` overrides the header length."""
    padded = header_area + b"\x00" * (-len(header_area) % 4)
    size = len(padded) // 4 if words is None else words
    return PREAMBLE.pack(0x0FFF, 0, 0, size) + padded + payload


def written_frame(headers: dict[bytes, bytes], *, zlib: bool = False, compact: bool = False):
    """A frame as Thrift's own client writes it (without its length word)."""
    buffer = TMemoryBuffer()
    protocol_id = THeaderSubprotocolID.COMPACT if compact else THeaderSubprotocolID.BINARY
    transport = THeaderTransport(buffer, (THeaderClientType.HEADERS,), protocol_id)
    if zlib:
        transport.add_transform(THeaderTransformID.ZLIB)
    for key, value in headers.items():
        transport.set_header(key, value)
    transport.write(PAYLOAD)
    transport.flush()
    return buffer.getvalue()[4:]


def guarded_reader(frame: bytes) -> GuardedHeaderTransport:
    framed = struct.pack("!i", len(frame)) + frame
    return GuardedHeaderTransport(TMemoryBuffer(framed), ALLOWED_CLIENT_TYPES)


HEADER_SETS = [
    {},
    {b"k": b"v"},
    {b"Trace": b"1234", b"Span": b"5678", b"Parent": b"", b"": b"empty key"},
    {b"long": b"x" * 300, b"longer": b"y" * 70_000},
]


@pytest.mark.parametrize("headers", HEADER_SETS)
@pytest.mark.parametrize(("zlib", "compact"), [(False, False), (True, False), (False, True)])
def test_frames_thrift_writes_pass_and_parse_as_before(headers, zlib, compact):
    frame = written_frame(headers, zlib=zlib, compact=compact)
    check_header_area(frame)
    reader = guarded_reader(frame)
    reader.readFrame(0)
    assert reader.get_headers() == headers
    assert reader.read(len(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        pytest.param(
            header_frame(b"\x00\x00\x01" + COUNT_2_40, words=1),
            "the header count runs past the header area",
            id="count beyond a one-word area (the reported frame)",
        ),
        pytest.param(
            header_frame(b"\x00\x00\x01" + COUNT_2_40),
            "the header count 1099511627776 exceeds the 1 that fit",
            id="count of 2**40 inside the area",
        ),
        pytest.param(
            header_frame(b"\x00\x00\x01\x03" + b"\x00" * 4),
            "the header count 3 exceeds the 2 that fit",
            id="count just over the bytes left",
        ),
        pytest.param(
            header_frame(b"\x00\x00\x01\x01\x09abc\x00"),
            "a header key of 9 bytes exceeds the 7 left",
            id="key longer than the area",
        ),
        pytest.param(
            header_frame(b"\x00\x00\x01\x01\x01k" + b"\xff" * 9 + b"\x01"),
            "a header value of 18446744073709551615 bytes exceeds the 0 left",
            id="value length of 2**64-1",
        ),
        pytest.param(
            header_frame(b"\x00\x00\x01\x01", words=200),
            "a header area of 800 bytes exceeds the 14-byte frame",
            id="area longer than the frame",
        ),
        pytest.param(b"\x0f\xff\x00\x00\x00", "5 bytes is shorter than the preamble", id="short"),
        pytest.param(header_frame(b"\x07\x00"), "unknown protocol id 7", id="unknown protocol"),
        pytest.param(
            header_frame(b"\x00\x09" + b"\x01" * 9),
            f"the transform count 9 exceeds the {MAX_TRANSFORMS} that fit",
            id="too many transforms",
        ),
        pytest.param(
            header_frame(b"\x00\x00\x01" + b"\x80" * 11),
            "the header count is a varint longer than 10 bytes",
            id="endless varint",
        ),
    ],
)
def test_frames_that_lie_about_their_header_area_are_rejected(frame, message):
    with pytest.raises(HeaderFormatError) as caught:
        check_header_area(frame)
    assert str(caught.value) == f"malformed THeader frame: {message}"


def test_what_thrift_ignores_or_rejects_itself_is_left_to_thrift():
    # an unknown info header type ends the area for Thrift, whatever follows
    check_header_area(header_frame(b"\x00\x00\x07" + COUNT_2_40))
    # an unknown transform is Thrift's to report, before it reads any header
    check_header_area(header_frame(b"\x00\x01\x05\x01" + COUNT_2_40))


def test_the_reported_16_mb_frame_is_rejected_before_thrift_parses_it(monkeypatch):
    """Thrift alone loops over 2**40 headers for ~13 s on this frame; the guard refuses it first.

    (What refusing costs, against reading a good frame: benchmarks/thrift_frames.py.)
    """
    frame = header_frame(b"\x00\x00\x01" + COUNT_2_40, words=1).ljust(16_000_000, b"\x00")
    reader = guarded_reader(frame)
    thrift_parsed = []

    def thrift_parse(transport, buffer):
        thrift_parsed.append(buffer)

    monkeypatch.setattr(THeaderTransport, HOOK, thrift_parse)
    with pytest.raises(HeaderFormatError, match="the header count runs past the header area"):
        reader.readFrame(0)
    assert thrift_parsed == []


def test_thrift_still_has_the_hook_the_guard_overrides():
    assert missing_hooks() == [], (
        f"thrift's THeaderTransport no longer has {HOOK}(), which "
        "baseplate/server/_theader_guard.py overrides to bound THeader parsing: "
        "find the new place where readFrame parses header frames and move the guard there"
    )


def test_thrift_reads_header_frames_through_the_hook():
    """If readFrame stopped calling the hook, the guard would be bypassed without a word."""
    reader = guarded_reader(header_frame(b"\x00\x00\x01" + COUNT_2_40))
    with pytest.raises(HeaderFormatError):  # an EOFError here means the hook was not called
        reader.readFrame(0)


def test_the_server_protocol_reads_through_the_guard():
    protocol = THeaderProtocol(guarded_reader(header_frame(b"\x00\x00\x01" + COUNT_2_40)), ())
    assert isinstance(protocol.trans, GuardedHeaderTransport)
    with pytest.raises(HeaderFormatError):
        protocol.readMessageBegin()


def test_a_missing_hook_is_named(monkeypatch):
    monkeypatch.delattr(THeaderTransport, HOOK)
    assert missing_hooks() == [f"THeaderTransport.{HOOK}"]


# -- the short walk for plain frames ---------------------------------------------------------


def area_end(frame: bytes) -> int:
    return PREAMBLE.size + 4 * PREAMBLE.unpack_from(frame)[3]


def the_general_walk_accepts(frame: bytes) -> bool:
    try:
        _walk(frame, area_end(frame))
    except HeaderFormatError:
        return False
    return True


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=40))
def test_the_short_walk_accepts_nothing_the_general_walk_rejects(area):
    frame = header_frame(area)
    if _plainly_valid(frame, PREAMBLE.size, area_end(frame)):
        assert the_general_walk_accepts(frame)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.binary(max_size=20), st.binary(max_size=60), max_size=6))
def test_the_short_walk_takes_the_frames_thrift_writes(headers):
    frame = written_frame(headers)
    assert _plainly_valid(frame, PREAMBLE.size, area_end(frame))
    assert the_general_walk_accepts(frame)


def test_a_count_bomb_is_left_to_the_general_walk():
    frame = header_frame(b"\x00\x00\x01" + COUNT_2_40)
    assert not _plainly_valid(frame, PREAMBLE.size, area_end(frame))
    with pytest.raises(HeaderFormatError, match="the header count"):
        check_header_area(frame)
