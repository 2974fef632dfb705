"""Span and trace ids for Baseplate-compatible tracing.

Baseplate's headers and Zipkin records carry 64-bit ids, so trace ids are
64-bit too: they round-trip exactly through every Baseplate peer. A span
started under a :class:`bridge.creation.SpanRequest` gets the ids the request
names.
"""

from __future__ import annotations

import random

from opentelemetry.sdk.trace.id_generator import IdGenerator

from bridge import creation

#: Ids are 64-bit: every Baseplate id is below this.
ID_LIMIT = 2**64
#: The largest id; also the mask that keeps an id's low 64 bits (of a 128-bit
#: W3C trace id, say), which is what Baseplate headers and Zipkin records carry.
MAX_ID = ID_LIMIT - 1
#: Baseplate's debug flag (in a trace's ``flags``): the trace is sampled
#: whatever the sampler says.
DEBUG_FLAG = 1


def random_id() -> int:
    """A random, non-zero 64-bit id (zero means "invalid" to OpenTelemetry)."""
    while True:
        value = random.getrandbits(64)
        if value:
            return value


class BaseplateIdGenerator(IdGenerator):
    """64-bit random ids, or the ids requested for the span being created."""

    def generate_span_id(self) -> int:
        """The requested span id, or a random one."""
        request = creation.pending()
        if request is not None and request.span_id:
            return request.span_id
        return random_id()

    def generate_trace_id(self) -> int:
        """The requested trace id, or a random 64-bit one."""
        request = creation.pending()
        if request is not None and request.trace_id:
            return request.trace_id
        return random_id()
