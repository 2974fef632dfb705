"""Tail sampling: export a trace that failed or was slow, whatever the head decision.

Every request is recorded (see :mod:`bridge.sampling`), so the decision to
export can wait until the request is over. :class:`TailSamplingSpanProcessor`
passes sampled spans straight on; it holds the unsampled spans of each trace
in flight and, when the trace's local root span (the server span) ends, hands
them all on if the root failed or took too long, marked with the attribute
``baseplate.tail_sampled``, and forgets them otherwise.

Memory is bounded: at most ``max_spans_per_trace`` spans are held per trace
and ``max_traces`` traces at once; beyond that spans are dropped and counted.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags

from bridge.span_copy import copy_span

logger = logging.getLogger(__name__)

#: The attribute that marks spans exported by the tail decision.
TAIL_SAMPLED_ATTRIBUTE = "baseplate.tail_sampled"


def _as_sampled(span: ReadableSpan) -> ReadableSpan:
    context = span.context
    assert context is not None
    sampled_context = SpanContext(
        context.trace_id,
        context.span_id,
        is_remote=False,
        trace_flags=TraceFlags(context.trace_flags | TraceFlags.SAMPLED),
        trace_state=context.trace_state,
    )
    return copy_span(
        span,
        context=sampled_context,
        attributes={**(span.attributes or {}), TAIL_SAMPLED_ATTRIBUTE: True},
    )


class TailSamplingSpanProcessor(SpanProcessor):
    """Hands sampled spans, and unsampled traces that failed or were slow, to ``downstream``.

    :param downstream: The processor that exports (a batching one).
    :param errors: Export traces whose root span ended with an error status.
    :param slower_than_seconds: Export traces whose root span took longer
        than this; None to ignore duration.
    """

    def __init__(
        self,
        downstream: SpanProcessor,
        errors: bool = False,
        slower_than_seconds: float | None = None,
        max_spans_per_trace: int = 1000,
        max_traces: int = 10000,
    ) -> None:
        self.downstream = downstream
        self.errors = errors
        self.slower_than_ns = (
            None if slower_than_seconds is None else int(slower_than_seconds * 1_000_000_000)
        )
        self.max_spans_per_trace = max_spans_per_trace
        self.max_traces = max_traces
        #: Spans dropped because a trace or the whole buffer was at its cap.
        self.dropped_spans = 0
        #: Spans exported because of the tail decision.
        self.tail_sampled_spans = 0
        self._held: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Pass the start on."""
        self.downstream.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        """Pass sampled spans on; hold or decide on the others."""
        context = span.context
        if context is None or context.trace_flags.sampled:
            self.downstream.on_end(span)
            return
        is_local_root = span.parent is None or span.parent.is_remote
        if is_local_root:
            self._decide(span)
        else:
            self._hold(context.trace_id, span)

    def _hold(self, trace_id: int, span: ReadableSpan) -> None:
        with self._lock:
            held = self._held.get(trace_id)
            if held is None:
                if len(self._held) >= self.max_traces:
                    _, evicted = self._held.popitem(last=False)
                    self.dropped_spans += len(evicted)
                held = self._held[trace_id] = []
            if len(held) < self.max_spans_per_trace:
                held.append(span)
            else:
                self.dropped_spans += 1

    def _wanted(self, root: ReadableSpan) -> bool:
        if self.errors and root.status.status_code is StatusCode.ERROR:
            return True
        if self.slower_than_ns is not None and root.end_time and root.start_time:
            return root.end_time - root.start_time > self.slower_than_ns
        return False

    def _decide(self, root: ReadableSpan) -> None:
        assert root.context is not None
        with self._lock:
            held = self._held.pop(root.context.trace_id, [])
        if not self._wanted(root):
            return
        spans = [*held, root]
        with self._lock:
            self.tail_sampled_spans += len(spans)
        for span in spans:
            self.downstream.on_end(_as_sampled(span))

    def shutdown(self) -> None:
        """Shut the downstream processor down."""
        self.downstream.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the downstream processor."""
        return self.downstream.force_flush(timeout_millis)

    def held_traces(self) -> int:
        """How many traces have spans held right now."""
        with self._lock:
            return len(self._held)
