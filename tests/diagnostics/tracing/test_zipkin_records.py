"""The hand-written record encoder writes exactly what json.dumps would."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from bridge.zipkin_records import DEBUG_ATTRIBUTE, ZipkinRecordEncoder

ids = st.integers(min_value=1, max_value=2**64 - 1)
attribute_values = st.one_of(
    st.text(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False)
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(),
    service=st.text(min_size=1),
    trace_id=st.integers(min_value=1, max_value=2**128 - 1),
    span_id=ids,
    parent_id=st.one_of(st.none(), ids),
    kind=st.sampled_from(list(SpanKind)),
    attributes=st.dictionaries(st.text(), attribute_values, max_size=5),
    debug=st.booleans(),
    error=st.booleans(),
    start=st.integers(min_value=0, max_value=2**62),
    length=st.integers(min_value=0, max_value=10**12),
)
def test_encode_matches_json_dumps_of_the_record(
    name, service, trace_id, span_id, parent_id, kind, attributes, debug, error, start, length
):
    if debug:
        attributes = {**attributes, DEBUG_ATTRIBUTE: True}
    span = ReadableSpan(
        name=name,
        context=SpanContext(trace_id, span_id, is_remote=False),
        parent=None if parent_id is None else SpanContext(trace_id, parent_id, is_remote=True),
        attributes=attributes,
        kind=kind,
        status=Status(StatusCode.ERROR if error else StatusCode.UNSET),
        start_time=start,
        end_time=start + length,
    )
    encoder = ZipkinRecordEncoder(service, "10.0.0.1")
    assert encoder.encode(span) == json.dumps(encoder.record(span)).encode()
