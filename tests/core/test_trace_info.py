import pytest

from baseplate.core import TraceInfo
from bridge.propagation import THRIFT_HEADERS

MAX = 2**64 - 1


def test_new_trace_uses_one_random_id_for_trace_and_span():
    first, second = TraceInfo.new(), TraceInfo.new()
    assert first.trace_id == first.span_id
    assert 0 < first.trace_id <= MAX
    assert (first.parent_id, first.sampled, first.flags) == (None, None, None)
    assert first.trace_id != second.trace_id


def test_from_upstream_keeps_values():
    info = TraceInfo.from_upstream(MAX, 0, 1, False, 3)
    assert info == (MAX, 0, 1, False, 3)
    assert TraceInfo.from_upstream(1, None, 2, None, None).parent_id is None


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((None, 1, 2, True, None), "trace_id"),
        ((1, 2, None, True, None), "span_id"),
        ((-1, 1, 2, True, None), "trace_id"),
        ((2**64, 1, 2, True, None), "trace_id"),
        ((1, -5, 2, True, None), "parent_id"),
        ((1, 2, 2**64, True, None), "span_id"),
        (("1", 2, 3, True, None), "trace_id"),
        ((True, 2, 3, True, None), "trace_id"),
        ((1, 2, 3, "yes", None), "sampled"),
        ((1, 2, 3, 1, None), "sampled"),
        ((1, 2, 3, True, -1), "flags"),
        ((1, 2, 3, True, 2**64), "flags"),
        ((1, 2, 3, True, 1.5), "flags"),
    ],
)
def test_from_upstream_rejects_inappropriate_values(args, field):
    with pytest.raises(ValueError, match=field):
        TraceInfo.from_upstream(*args)


def test_from_upstream_headers_http():
    info = TraceInfo.from_upstream_headers(
        {"X-Trace": "1", "X-Parent": "2", "X-Span": "3", "X-Sampled": "1", "X-Flags": "4"}
    )
    assert info == (1, 2, 3, True, 4)


def test_from_upstream_headers_thrift_bytes():
    info = TraceInfo.from_upstream_headers(
        {b"Trace": b"10", b"Parent": b"20", b"Span": b"30"}, THRIFT_HEADERS
    )
    assert info == (10, 20, 30, False, None)


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Trace": "1", "X-Span": "3"}, {"X-Trace": "0x1", "X-Parent": "2", "X-Span": "3"}],
)
def test_from_upstream_headers_missing_or_invalid(headers):
    with pytest.raises(ValueError):
        TraceInfo.from_upstream_headers(headers)
