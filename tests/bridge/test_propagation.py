from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bridge.propagation import (
    HTTP_HEADERS,
    THRIFT_HEADERS,
    BaseplateHTTPPropagator,
    BaseplatePropagator,
    BaseplateThriftPropagator,
    InvalidTraceHeaders,
    UpstreamTrace,
    parse_trace_headers,
    parse_traceparent,
    read_upstream,
    traceparent_for_wide_trace,
    use_baseplate_and_w3c_propagation,
)
from tests import vectors

MAX_ID = 2**64 - 1
VALID = {"X-Trace": "1", "X-Parent": "2", "X-Span": "3"}


def remote_context(
    trace_id: int, span_id: int, sampled: bool = True, context: Context | None = None
) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    span_context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(span_context), context)


def current_span_context(context: Context) -> SpanContext:
    return trace.get_current_span(context).get_span_context()


@pytest.fixture
def tracer() -> Iterator[trace.Tracer]:
    """An SDK tracer from a local provider (the global provider stays unset)."""
    provider = TracerProvider(shutdown_on_exit=False)
    yield provider.get_tracer(__name__)
    provider.shutdown()


# --- parse_trace_headers --------------------------------------------------


def test_parse_all_headers() -> None:
    headers = {**VALID, "X-Sampled": "1", "X-Flags": "4"}
    assert parse_trace_headers(headers, HTTP_HEADERS) == UpstreamTrace(
        trace_id=1, parent_id=2, span_id=3, sampled=True, flags=4
    )


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="empty"),
        pytest.param({"Content-Type": "text/plain"}, id="unrelated"),
        pytest.param({"X-Sampled": "1", "X-Flags": "1"}, id="only sampled and flags"),
        pytest.param({"X-Flags": "nonsense"}, id="only bad flags"),
    ],
)
def test_parse_without_ids_is_none(headers: dict[str, str]) -> None:
    assert parse_trace_headers(headers, HTTP_HEADERS) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        (b"1", True),
        ("0", False),
        ("true", False),
        ("True", False),
        (" 1", False),
        ("1 ", False),
        ("01", False),
        ("", False),
    ],
)
def test_sampled_is_true_only_for_exactly_1(value: str | bytes, expected: bool) -> None:
    result = parse_trace_headers({**VALID, "X-Sampled": value}, HTTP_HEADERS)
    assert result is not None
    assert result.sampled is expected


def test_absent_sampled_is_false_and_absent_flags_none() -> None:
    assert parse_trace_headers(VALID, HTTP_HEADERS) == UpstreamTrace(1, 2, 3, False, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("1", 1), ("2", 2), (" 7 ", 7), (str(MAX_ID), MAX_ID)],
)
def test_flags(value: str, expected: int) -> None:
    result = parse_trace_headers({**VALID, "X-Flags": value}, HTTP_HEADERS)
    assert result is not None
    assert result.flags == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("42", 42),
        (" 42 ", 42),
        ("\t42\n", 42),
        ("+42", 42),
        ("-0", 0),
        ("0042", 42),
        (b"42", 42),
        (str(MAX_ID), MAX_ID),
    ],
)
def test_ids_follow_int(value: str | bytes, expected: int) -> None:
    fields = {"X-Trace": "trace_id", "X-Parent": "parent_id", "X-Span": "span_id"}
    for header, attribute in fields.items():
        result = parse_trace_headers({**VALID, header: value}, HTTP_HEADERS)
        assert result is not None
        assert getattr(result, attribute) == expected


def test_max_64_bit_ids() -> None:
    headers = {"X-Trace": str(MAX_ID), "X-Parent": str(MAX_ID), "X-Span": str(MAX_ID)}
    assert parse_trace_headers(headers, HTTP_HEADERS) == UpstreamTrace(
        MAX_ID, MAX_ID, MAX_ID, False, None
    )


INVALID_HEADERS = [
    pytest.param({**VALID, "X-Trace": "abc"}, "X-Trace", id="non-decimal"),
    pytest.param({**VALID, "X-Trace": "a1"}, "X-Trace", id="hex digits"),
    pytest.param({**VALID, "X-Span": "0x10"}, "X-Span", id="0x prefix"),
    pytest.param({**VALID, "X-Span": "0b1"}, "X-Span", id="0b prefix"),
    pytest.param({**VALID, "X-Parent": "-1"}, "X-Parent", id="negative"),
    pytest.param({**VALID, "X-Trace": str(2**64)}, "X-Trace", id="2**64"),
    pytest.param({**VALID, "X-Trace": str(2**128)}, "X-Trace", id="128-bit"),
    pytest.param({**VALID, "X-Trace": "1_000"}, "X-Trace", id="underscore"),
    pytest.param({**VALID, "X-Trace": "1.0"}, "X-Trace", id="float"),
    pytest.param({**VALID, "X-Trace": ""}, "X-Trace", id="empty"),
    pytest.param({**VALID, "X-Trace": "  "}, "X-Trace", id="blank"),
    pytest.param({**VALID, "X-Trace": "1 2"}, "X-Trace", id="two numbers"),
    pytest.param({**VALID, "X-Flags": "-1"}, "X-Flags", id="negative flags"),
    pytest.param({**VALID, "X-Flags": str(2**64)}, "X-Flags", id="flags 2**64"),
    pytest.param({**VALID, "X-Flags": "0x1"}, "X-Flags", id="hex flags"),
    pytest.param({**VALID, "X-B3-TraceId": "11"}, "X-B3-TraceId", id="conflicting trace"),
    pytest.param({**VALID, "X-B3-SpanId": " 3"}, "X-B3-SpanId", id="conflicting spelling"),
    pytest.param(
        {**VALID, "X-Sampled": "1", "X-B3-Sampled": "0"}, "X-B3-Sampled", id="conflicting sampled"
    ),
    pytest.param(
        {**VALID, "X-Flags": "1", "X-B3-Flags": "2"}, "X-B3-Flags", id="conflicting flags"
    ),
    pytest.param({"X-Trace": "1", "X-Span": "3"}, "X-Parent", id="missing parent"),
    pytest.param({"X-Parent": "2", "X-Span": "3"}, "X-Trace", id="missing trace"),
    pytest.param({"X-Trace": "1", "X-Parent": "2"}, "X-Span", id="missing span"),
    pytest.param({"X-Span": "3", "X-Sampled": "1"}, "X-Trace", id="span alone"),
    pytest.param({**VALID, "X-Trace": b"\xd9\xa1"}, "X-Trace", id="non-ASCII bytes id"),
    pytest.param({**VALID, "X-Sampled": b"\xff"}, "X-Sampled", id="non-ASCII bytes sampled"),
]


@pytest.mark.parametrize(("headers", "header"), INVALID_HEADERS)
def test_invalid_headers_raise(headers: dict[str, str | bytes], header: str) -> None:
    with pytest.raises(InvalidTraceHeaders) as info:
        parse_trace_headers(headers, HTTP_HEADERS)
    assert info.value.header == header
    assert isinstance(info.value, ValueError)
    assert header in str(info.value)


def test_invalid_headers_carry_the_value() -> None:
    with pytest.raises(InvalidTraceHeaders) as info:
        parse_trace_headers({**VALID, "X-Span": "0x10"}, HTTP_HEADERS)
    assert (info.value.header, info.value.value) == ("X-Span", "0x10")
    assert info.value.reason

    with pytest.raises(InvalidTraceHeaders) as info:
        parse_trace_headers({"X-Trace": "1", "X-Span": "3"}, HTTP_HEADERS)
    assert (info.value.header, info.value.value) == ("X-Parent", None)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-trace": "5", "x-parent": "6", "x-span": "7", "x-sampled": "1"},
        {"X-TRACE": "5", "X-PARENT": "6", "X-SPAN": "7", "X-SAMPLED": "1"},
        {"x-b3-traceid": "5", "X-B3-PARENTSPANID": "6", "x-B3-spanId": "7", "x-b3-sampled": "1"},
    ],
)
def test_names_are_case_insensitive(headers: dict[str, str]) -> None:
    assert parse_trace_headers(headers, HTTP_HEADERS) == UpstreamTrace(5, 6, 7, True, None)


def test_b3_names() -> None:
    headers = {
        "X-B3-TraceId": "10",
        "X-B3-ParentSpanId": "20",
        "X-B3-SpanId": "30",
        "X-B3-Sampled": "1",
        "X-B3-Flags": "2",
    }
    assert parse_trace_headers(headers, HTTP_HEADERS) == UpstreamTrace(10, 20, 30, True, 2)


def test_agreeing_aliases_in_any_case() -> None:
    headers = {**VALID, "x-b3-traceid": "1", "X-B3-SAMPLED": "1", "X-Sampled": "1"}
    assert parse_trace_headers(headers, HTTP_HEADERS) == UpstreamTrace(1, 2, 3, True, None)


def test_same_name_in_two_cases_must_agree() -> None:
    assert parse_trace_headers({**VALID, "x-trace": "1"}, HTTP_HEADERS) is not None
    with pytest.raises(InvalidTraceHeaders):
        parse_trace_headers({**VALID, "x-trace": "2"}, HTTP_HEADERS)


def test_thrift_bytes_keys_and_values() -> None:
    headers = {
        b"Trace": b"100",
        b"parent": b"200",
        b"SPAN": b"300",
        b"Sampled": b"1",
        b"Flags": b"1",
        b"Edge-Request": b"\x00\xff",
    }
    assert parse_trace_headers(headers, THRIFT_HEADERS) == UpstreamTrace(100, 200, 300, True, 1)


def test_thrift_b3_names() -> None:
    headers = {
        b"B3-TraceId": b"1",
        b"B3-ParentSpanId": b"2",
        b"B3-SpanId": b"3",
        b"B3-Sampled": b"0",
        b"B3-Flags": b"0",
    }
    assert parse_trace_headers(headers, THRIFT_HEADERS) == UpstreamTrace(1, 2, 3, False, 0)


def test_thrift_invalid_bytes() -> None:
    with pytest.raises(InvalidTraceHeaders) as info:
        parse_trace_headers({b"Trace": b"\xff", b"Parent": b"2", b"Span": b"3"}, THRIFT_HEADERS)
    assert info.value.header == "Trace"
    assert info.value.value == b"\xff"
    with pytest.raises(InvalidTraceHeaders):
        parse_trace_headers(
            {b"Trace": b"1", b"B3-TraceId": b"2", b"Parent": b"2", b"Span": b"3"}, THRIFT_HEADERS
        )


def test_name_sets_do_not_mix() -> None:
    assert parse_trace_headers(VALID, THRIFT_HEADERS) is None
    assert parse_trace_headers({"Trace": "1", "Parent": "2", "Span": "3"}, HTTP_HEADERS) is None


def test_non_ascii_keys_are_ignored() -> None:
    assert parse_trace_headers({"X-Tra\u0441e": "1", b"X-Sp\xe4n": b"2"}, HTTP_HEADERS) is None
    assert parse_trace_headers({**VALID, "X-Trace\u00e9": "9"}, HTTP_HEADERS) is not None


TRUSTED_VECTORS = [case for case in vectors.cases("headers") if case.values[0]["trust"]]


def test_vectors_format_is_understood() -> None:
    fmt = vectors.load("headers")["format"]
    assert "new_trace" in fmt
    assert "trust_trace_headers" in fmt
    assert TRUSTED_VECTORS


@pytest.mark.parametrize("case", TRUSTED_VECTORS)
def test_reference_vectors(case: dict[str, Any]) -> None:
    headers = {k: v for k, v in case["headers"].items() if k.lower() != "x-edge-request"}
    expected = case["expected"]
    if expected.get("new_trace"):
        try:
            result = parse_trace_headers(headers, HTTP_HEADERS)
        except InvalidTraceHeaders:
            return
        assert result is None
        return
    result = parse_trace_headers(headers, HTTP_HEADERS)
    assert result == UpstreamTrace(
        trace_id=expected["trace_id"],
        parent_id=expected["parent_id"],
        span_id=expected["span_id"],
        sampled=expected["sampled"],
        flags=expected["flags"],
    )


# --- extract ----------------------------------------------------------------


def test_extract_makes_the_span_header_the_remote_parent() -> None:
    carrier = {"X-Trace": "1234", "X-Parent": "2345", "X-Span": "3456", "X-Sampled": "1"}
    context = BaseplateHTTPPropagator().extract(carrier)
    span = trace.get_current_span(context)
    assert isinstance(span, NonRecordingSpan)
    assert span.get_span_context() == SpanContext(
        1234, 3456, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


@pytest.mark.parametrize(
    ("extra", "sampled"),
    [
        ({}, False),
        ({"X-Sampled": "0"}, False),
        ({"X-Sampled": "1"}, True),
        ({"X-Sampled": "0", "X-Flags": "1"}, True),  # the debug flag forces sampling
        ({"X-Flags": "3"}, True),
        ({"X-Sampled": "0", "X-Flags": "2"}, False),
        ({"X-Sampled": "1", "X-Flags": "0"}, True),
    ],
)
def test_extract_sampling(extra: dict[str, str], sampled: bool) -> None:
    context = BaseplateHTTPPropagator().extract({**VALID, **extra})
    span_context = current_span_context(context)
    assert span_context.is_valid
    assert span_context.trace_flags.sampled is sampled


def test_extract_max_ids() -> None:
    carrier = {"X-Trace": str(MAX_ID), "X-Parent": "0", "X-Span": str(MAX_ID)}
    span_context = current_span_context(BaseplateHTTPPropagator().extract(carrier))
    assert (span_context.trace_id, span_context.span_id) == (MAX_ID, MAX_ID)


@pytest.mark.parametrize(
    "carrier",
    [
        pytest.param({}, id="no headers"),
        pytest.param({"X-Sampled": "1"}, id="only sampled"),
        pytest.param({**VALID, "X-Trace": "0"}, id="trace id 0"),
        pytest.param({**VALID, "X-Span": "0"}, id="span id 0"),
        *(pytest.param(param.values[0], id=param.id) for param in INVALID_HEADERS),
    ],
)
def test_extract_leaves_the_context_alone(carrier: dict[str, Any]) -> None:
    upstream = remote_context(77, 88)
    assert BaseplateHTTPPropagator().extract(carrier, upstream) is upstream
    assert not current_span_context(BaseplateHTTPPropagator().extract(carrier)).is_valid


def test_extract_without_context_starts_from_an_empty_one() -> None:
    context = BaseplateHTTPPropagator().extract(VALID)
    assert current_span_context(context).trace_id == 1


def test_extract_keeps_other_context_values() -> None:
    from opentelemetry.context import get_value, set_value

    base = set_value("some-key", "some-value", Context())
    context = BaseplateHTTPPropagator().extract(VALID, base)
    assert get_value("some-key", context) == "some-value"
    assert current_span_context(context).span_id == 3


def test_extract_case_insensitive_with_the_default_getter() -> None:
    carrier = {"x-trace": "5", "X-PARENT": "6", "x-b3-spanid": "7", "x-sampled": "1"}
    span_context = current_span_context(BaseplateHTTPPropagator().extract(carrier))
    assert (span_context.trace_id, span_context.span_id) == (5, 7)
    assert span_context.trace_flags.sampled


def test_extract_takes_the_first_of_several_values() -> None:
    carrier = {"X-Trace": ["5", "9"], "X-Parent": ["6"], "X-Span": ("7",)}
    span_context = current_span_context(BaseplateHTTPPropagator().extract(carrier))
    assert (span_context.trace_id, span_context.span_id) == (5, 7)


def test_extract_thrift_bytes_carrier() -> None:
    carrier = {b"Trace": b"11", b"Parent": b"22", b"span": b"33", b"Sampled": b"1"}
    span_context = current_span_context(BaseplateThriftPropagator().extract(carrier))
    assert span_context == SpanContext(
        11, 33, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def test_extract_thrift_ignores_http_names() -> None:
    assert not current_span_context(BaseplateThriftPropagator().extract(VALID)).is_valid


class PairsGetter(Getter[list[tuple[str, str]]]):
    """A carrier of (name, value) pairs, as a WSGI server might hand them over."""

    def get(self, carrier: list[tuple[str, str]], key: str) -> list[str] | None:
        values = [value for name, value in carrier if name == key]
        return values or None

    def keys(self, carrier: list[tuple[str, str]]) -> list[str]:
        return [name for name, _ in carrier]


def test_extract_uses_the_getter() -> None:
    carrier = [("x-trace", "8"), ("x-parent", "0"), ("x-span", "9"), ("x-span", "10")]
    context = BaseplateHTTPPropagator().extract(carrier, getter=PairsGetter())
    span_context = current_span_context(context)
    assert (span_context.trace_id, span_context.span_id) == (8, 9)


# --- inject -----------------------------------------------------------------


def test_inject_writes_decimal_headers() -> None:
    carrier: dict[str, str] = {}
    BaseplateHTTPPropagator().inject(carrier, remote_context(1234, 3456))
    assert carrier == {"X-Trace": "1234", "X-Parent": "0", "X-Span": "3456", "X-Sampled": "1"}


def test_inject_unsampled() -> None:
    carrier: dict[str, str] = {}
    BaseplateHTTPPropagator().inject(carrier, remote_context(1, 2, sampled=False))
    assert carrier["X-Sampled"] == "0"


def test_inject_max_ids() -> None:
    carrier: dict[str, str] = {}
    BaseplateHTTPPropagator().inject(carrier, remote_context(MAX_ID, MAX_ID))
    assert (carrier["X-Trace"], carrier["X-Span"]) == (str(MAX_ID), str(MAX_ID))


def test_inject_128_bit_trace_id_keeps_low_64_bits() -> None:
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    carrier: dict[str, str] = {}
    BaseplateHTTPPropagator().inject(carrier, remote_context(trace_id, 0x00F067AA0BA902B7))
    assert carrier["X-Trace"] == str(0xA3CE929D0E0E4736)
    assert carrier["X-Span"] == str(0x00F067AA0BA902B7)


def test_inject_without_a_valid_span_writes_nothing() -> None:
    carrier: dict[str, str] = {}
    BaseplateHTTPPropagator().inject(carrier, Context())
    BaseplateHTTPPropagator().inject(carrier)
    assert carrier == {}


def test_inject_thrift_names() -> None:
    carrier: dict[str, str] = {}
    BaseplateThriftPropagator().inject(carrier, remote_context(1, 2, sampled=False))
    assert carrier == {"Trace": "1", "Parent": "0", "Span": "2", "Sampled": "0"}


def test_inject_from_sdk_spans_writes_the_parent_id(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("root") as root:
        root_context = root.get_span_context()
        carrier: dict[str, str] = {}
        BaseplateHTTPPropagator().inject(carrier)
        assert carrier["X-Parent"] == "0"
        assert carrier["X-Span"] == str(root_context.span_id)

        with tracer.start_as_current_span("child") as child:
            child_context = child.get_span_context()
            carrier = {}
            BaseplateHTTPPropagator().inject(carrier)
    assert carrier == {
        "X-Trace": str(child_context.trace_id & MAX_ID),
        "X-Parent": str(root_context.span_id),
        "X-Span": str(child_context.span_id),
        "X-Sampled": "1",
    }


def test_server_span_under_extracted_context(tracer: trace.Tracer) -> None:
    """OTel's model: the server span is a child of the upstream's ``Span``."""
    upstream = {"X-Trace": "1234", "X-Parent": "2345", "X-Span": "3456", "X-Sampled": "1"}
    context = BaseplateHTTPPropagator().extract(upstream)
    with tracer.start_as_current_span("server", context=context) as server:
        carrier: dict[str, str] = {}
        BaseplateHTTPPropagator().inject(carrier)
    assert carrier == {
        "X-Trace": "1234",
        "X-Parent": "3456",
        "X-Span": str(server.get_span_context().span_id),
        "X-Sampled": "1",
    }


def test_extract_inject_round_trip() -> None:
    propagator = BaseplateHTTPPropagator()
    upstream = {"X-Trace": str(MAX_ID), "X-Parent": "2", "X-Span": "3", "X-Sampled": "0"}
    carrier: dict[str, str] = {}
    propagator.inject(carrier, propagator.extract(upstream))
    assert carrier == {"X-Trace": str(MAX_ID), "X-Parent": "0", "X-Span": "3", "X-Sampled": "0"}
    assert parse_trace_headers(carrier, HTTP_HEADERS) == UpstreamTrace(MAX_ID, 0, 3, False, None)


def test_thrift_round_trip_through_bytes() -> None:
    propagator = BaseplateThriftPropagator()
    carrier: dict[str, str] = {}
    propagator.inject(carrier, remote_context(5, 6))
    wire = {key.encode(): value.encode() for key, value in carrier.items()}
    assert parse_trace_headers(wire, THRIFT_HEADERS) == UpstreamTrace(5, 0, 6, True, None)
    assert current_span_context(propagator.extract(wire)) == SpanContext(
        5, 6, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def test_fields() -> None:
    assert BaseplateHTTPPropagator().fields == {"X-Trace", "X-Parent", "X-Span", "X-Sampled"}
    assert BaseplateThriftPropagator().fields == {"Trace", "Parent", "Span", "Sampled"}
    carrier: dict[str, str] = {}
    BaseplateHTTPPropagator().inject(carrier, remote_context(1, 2))
    assert set(carrier) == BaseplateHTTPPropagator().fields


def test_both_share_one_implementation() -> None:
    assert isinstance(BaseplateHTTPPropagator(), BaseplatePropagator)
    assert isinstance(BaseplateThriftPropagator(), BaseplatePropagator)
    custom = BaseplatePropagator(THRIFT_HEADERS)
    assert custom.fields == BaseplateThriftPropagator().fields


# --- composition with W3C traceparent ---------------------------------------


@pytest.fixture
def composite() -> CompositePropagator:
    return CompositePropagator([BaseplateHTTPPropagator(), TraceContextTextMapPropagator()])


def test_composite_round_trip(composite: CompositePropagator) -> None:
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    carrier: dict[str, str] = {}
    composite.inject(carrier, remote_context(trace_id, 0x00F067AA0BA902B7))
    assert carrier["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert carrier["X-Trace"] == str(0xA3CE929D0E0E4736)
    assert carrier["X-Span"] == str(0x00F067AA0BA902B7)
    assert composite.fields >= {"traceparent", "X-Trace", "X-Parent", "X-Span", "X-Sampled"}

    # traceparent comes later and keeps the full 128-bit trace id.
    assert current_span_context(composite.extract(carrier)) == SpanContext(
        trace_id, 0x00F067AA0BA902B7, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def test_composite_traceparent_only(composite: CompositePropagator) -> None:
    carrier = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}
    span_context = current_span_context(composite.extract(carrier))
    assert span_context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert span_context.span_id == 0x00F067AA0BA902B7
    assert not span_context.trace_flags.sampled


def test_composite_baseplate_only(composite: CompositePropagator) -> None:
    span_context = current_span_context(composite.extract({**VALID, "X-Sampled": "1"}))
    assert (span_context.trace_id, span_context.span_id) == (1, 3)
    assert span_context.trace_flags.sampled


def test_composite_invalid_baseplate_headers_keep_traceparent(
    composite: CompositePropagator,
) -> None:
    carrier = {
        "X-Trace": "0x1",
        "X-Parent": "2",
        "X-Span": "3",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    assert current_span_context(composite.extract(carrier)).span_id == 0x00F067AA0BA902B7


# --- which model a server follows: read_upstream ----------------------------

WIDE_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{WIDE_TRACE:032x}-{CALLER_SPAN:016x}-01"
MATCHING = {
    "X-Trace": str(WIDE_TRACE & MAX_ID),
    "X-Parent": "9",
    "X-Span": str(CALLER_SPAN),
    "X-Sampled": "1",
}


def test_parse_traceparent_reads_str_and_bytes_case_insensitively() -> None:
    expected = SpanContext(
        WIDE_TRACE, CALLER_SPAN, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    assert parse_traceparent({"TraceParent": TRACEPARENT}) == expected
    parsed = parse_traceparent({b"traceparent": TRACEPARENT.encode(), b"tracestate": b"k=v"})
    assert parsed is not None
    assert parsed.trace_state.get("k") == "v"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": "garbage"},
        {"traceparent": f"00-{0:032x}-{CALLER_SPAN:016x}-01"},  # all-zero trace id
        {b"traceparent": b"\xff"},
        {"tracestate": "k=v"},
    ],
)
def test_parse_traceparent_gives_none_for_absent_or_invalid(headers: Any) -> None:
    assert parse_traceparent(headers) is None


def test_baseplate_headers_alone_mean_a_shared_span() -> None:
    baseplate, parent = read_upstream({**VALID, "X-Sampled": "1"}, HTTP_HEADERS)
    assert baseplate == UpstreamTrace(1, 2, 3, True, None)
    assert parent is None


def test_traceparent_alone_means_a_child() -> None:
    baseplate, parent = read_upstream({"traceparent": TRACEPARENT}, HTTP_HEADERS)
    assert baseplate is None
    assert parent is not None
    assert (parent.trace_id, parent.span_id) == (WIDE_TRACE, CALLER_SPAN)


def test_agreeing_headers_mean_a_child_with_the_full_trace_id() -> None:
    baseplate, parent = read_upstream({**MATCHING, "traceparent": TRACEPARENT}, HTTP_HEADERS)
    assert baseplate is not None
    assert parent is not None
    assert parent.trace_id == WIDE_TRACE


@pytest.mark.parametrize(
    "changed", [{"X-Span": "12345"}, {"X-Trace": "12345"}], ids=["other span", "other trace"]
)
def test_disagreeing_headers_let_baseplate_win(changed: dict[str, str]) -> None:
    headers = {**MATCHING, **changed, "traceparent": TRACEPARENT}
    baseplate, parent = read_upstream(headers, HTTP_HEADERS)
    assert baseplate is not None
    assert parent is None


def test_invalid_baseplate_headers_fall_back_to_traceparent() -> None:
    headers = {"X-Trace": "0x1", "X-Parent": "2", "X-Span": "3", "traceparent": TRACEPARENT}
    baseplate, parent = read_upstream(headers, HTTP_HEADERS)
    assert baseplate is None
    assert parent is not None


def test_thrift_headers_and_traceparent_as_bytes() -> None:
    headers = {
        b"Trace": str(WIDE_TRACE & MAX_ID).encode(),
        b"Parent": b"9",
        b"Span": str(CALLER_SPAN).encode(),
        b"traceparent": TRACEPARENT.encode(),
    }
    baseplate, parent = read_upstream(headers, THRIFT_HEADERS)
    assert baseplate is not None
    assert parent is not None
    assert parent.trace_id == WIDE_TRACE


def test_traceparent_only_for_wide_traces() -> None:
    narrow = NonRecordingSpan(SpanContext(5, 6, False, TraceFlags(TraceFlags.SAMPLED)))
    assert traceparent_for_wide_trace(narrow) is None
    wide = NonRecordingSpan(SpanContext(WIDE_TRACE, CALLER_SPAN, False, TraceFlags(1)))
    assert traceparent_for_wide_trace(wide) == TRACEPARENT


# --- the propagator a traced Baseplate application gets ----------------------


@pytest.fixture
def global_textmap() -> Iterator[None]:
    """Restore the process's global propagator after the test."""
    from opentelemetry import propagate

    saved = propagate.get_global_textmap()
    yield
    propagate.set_global_textmap(saved)


def test_default_propagator_speaks_both(global_textmap: None, monkeypatch: Any) -> None:
    from opentelemetry import baggage, propagate

    monkeypatch.delenv("OTEL_PROPAGATORS", raising=False)
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    assert use_baseplate_and_w3c_propagation()
    assert not use_baseplate_and_w3c_propagation()  # once is enough

    context = baggage.set_baggage("user", "u1", remote_context(WIDE_TRACE, CALLER_SPAN))
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context)
    assert carrier["traceparent"] == TRACEPARENT
    assert carrier["X-Trace"] == str(WIDE_TRACE & MAX_ID)
    assert carrier["X-Span"] == str(CALLER_SPAN)
    assert carrier["baggage"] == "user=u1"

    # Agreeing headers keep the 128-bit id; disagreeing ones let Baseplate win.
    extracted = current_span_context(propagate.extract(carrier))
    assert (extracted.trace_id, extracted.span_id) == (WIDE_TRACE, CALLER_SPAN)
    disagreeing = {**carrier, "X-Span": "77"}
    extracted = current_span_context(propagate.extract(disagreeing))
    assert (extracted.trace_id, extracted.span_id) == (WIDE_TRACE & MAX_ID, 77)
    assert baggage.get_baggage("user", propagate.extract(carrier)) == "u1"


def test_otel_propagators_choice_is_respected(global_textmap: None, monkeypatch: Any) -> None:
    from opentelemetry import propagate

    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext")
    before = propagate.get_global_textmap()
    assert not use_baseplate_and_w3c_propagation()
    assert propagate.get_global_textmap() is before


def test_an_applications_own_propagator_is_respected(
    global_textmap: None, monkeypatch: Any
) -> None:
    from opentelemetry import propagate

    monkeypatch.delenv("OTEL_PROPAGATORS", raising=False)
    own = TraceContextTextMapPropagator()
    propagate.set_global_textmap(own)
    assert not use_baseplate_and_w3c_propagation()
    assert propagate.get_global_textmap() is own


# --- entry points -------------------------------------------------------------

ENTRY_POINT_SCRIPT = textwrap.dedent(
    """
    import json
    from opentelemetry import propagate, trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    composite = propagate.get_global_textmap()
    span = NonRecordingSpan(SpanContext(7, 8, False, TraceFlags(TraceFlags.SAMPLED)))
    carrier = {}
    propagate.inject(carrier, trace.set_span_in_context(span))
    extracted = propagate.extract({"X-Trace": "5", "X-Parent": "0", "X-Span": "6"})
    print(json.dumps({
        "propagators": [type(p).__name__ for p in composite._propagators],
        "carrier": carrier,
        "extracted": trace.get_current_span(extracted).get_span_context().span_id,
    }))
    """
)


def run_with_propagators(value: str, tmp_path: Any) -> dict[str, Any]:
    env = {**os.environ, "OTEL_PROPAGATORS": value}
    result = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT_SCRIPT],
        env=env,
        cwd=tmp_path,  # away from the checkout: the entry points must be installed
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def test_entry_points_load_from_otel_propagators(tmp_path: Any) -> None:
    output = run_with_propagators("baseplate,tracecontext", tmp_path)
    assert output["propagators"] == ["BaseplateHTTPPropagator", "TraceContextTextMapPropagator"]
    assert output["carrier"] == {
        "X-Trace": "7",
        "X-Parent": "0",
        "X-Span": "8",
        "X-Sampled": "1",
        "traceparent": "00-00000000000000000000000000000007-0000000000000008-01",
    }
    assert output["extracted"] == 6


def test_thrift_entry_point(tmp_path: Any) -> None:
    output = run_with_propagators("baseplate_thrift", tmp_path)
    assert output["propagators"] == ["BaseplateThriftPropagator"]
    assert output["carrier"] == {"Trace": "7", "Parent": "0", "Span": "8", "Sampled": "1"}


def test_header_keys_are_remembered_up_to_a_bound():
    """Clients choose the keys they send: a stream of new ones cannot grow memory."""
    from bridge import propagation

    names = propagation.HeaderNames(
        trace=("T-Bound",), parent=("P-Bound",), span=("S-Bound",), sampled=("X",), flags=("F",)
    )
    for index in range(propagation.HEADER_KEY_CACHE_SIZE + 50):
        headers = {f"Other-{index}": "x", "T-Bound": "1", "p-bound": "2", "S-BOUND": "3"}
        assert parse_trace_headers(headers, names) == UpstreamTrace(1, 2, 3, False, None)
    remembered = propagation._trace_field_lookup(names).cache_info().currsize
    assert remembered == propagation.HEADER_KEY_CACHE_SIZE
    # Keys never seen before, past the bound, are still read.
    late = {"t-BOUND": "4", "P-Bound": "5", "s-bound": "6", "x": "1"}
    assert parse_trace_headers(late, names) == UpstreamTrace(4, 5, 6, True, None)
