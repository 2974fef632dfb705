"""Baseplate's guarantees on a tracer provider the application set up itself.

An application may install its own SDK ``TracerProvider`` before Baseplate
makes one (its own set-up code, or ``opentelemetry-instrument``). The bridge
then uses that provider, and :func:`wrap_provider` wraps its id generator and
sampler so that Baseplate's spans still behave as under the bridge's own
provider, while everything else keeps the application's choices:

* :class:`RequestAwareIdGenerator`: the ids named in the pending
  :class:`~bridge.creation.SpanRequest` win (a Baseplate server span takes
  its caller's ``X-Span``; Baseplate's ids are 64-bit); any other span gets
  ids from the application's generator.
* :class:`RequestAwareSampler`: Baseplate's own decisions win (the debug
  flag, an upstream's explicit ``sampled`` flag, and a Baseplate span's
  parent's decision); the application's sampler decides everything else
  (new traces, native spans), and where it drops a span of a Baseplate
  request, the span is recorded (RECORD_ONLY) instead, so that span
  processors see every Baseplate request while exporters still take only
  sampled spans.

Span processors and exporters are never touched. Wrapping is idempotent, and
a provider that already has the bridge's own id generator or sampler keeps it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from bridge import creation
from bridge._otel_internals import tracers_made_by
from bridge.ids import BaseplateIdGenerator
from bridge.sampling import BaseplateSampler

logger = logging.getLogger(__name__)


class RequestAwareIdGenerator(IdGenerator):
    """The requested ids for a span created under a :class:`~bridge.creation.SpanRequest`,
    the application's generator's ids for every other span.

    Native spans thus keep what the application chose (128-bit trace ids,
    say), while Baseplate's spans keep the ids its headers carry.
    """

    def __init__(self, app_generator: IdGenerator) -> None:
        #: The application's generator, asked for every id not requested.
        self.app_generator = app_generator

    def generate_span_id(self) -> int:
        """The requested span id, or the application's."""
        request = creation.pending()
        if request is not None and request.span_id:
            return request.span_id
        return self.app_generator.generate_span_id()

    def generate_trace_id(self) -> int:
        """The requested trace id, or the application's."""
        request = creation.pending()
        if request is not None and request.trace_id:
            return request.trace_id
        return self.app_generator.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        """Whether the new root's trace id is random in W3C's sense.

        The SDK asks right after :meth:`generate_trace_id`, for the same
        span: a requested id came from upstream, which promises nothing.
        """
        request = creation.pending()
        if request is not None and request.trace_id:
            return False
        return self.app_generator.is_trace_id_random()

    def __repr__(self) -> str:
        return f"RequestAwareIdGenerator({self.app_generator!r})"


class RequestAwareSampler(Sampler):
    """The application's sampler, under Baseplate's decisions, recording Baseplate's requests.

    Baseplate decides once per request and carries the decision on every
    span of it (and downstream, in ``X-Sampled``). For each new span, in
    order:

    1. a span created under a :class:`~bridge.creation.SpanRequest` (one of
       Baseplate's) takes the request's forced decision (``request.sampled``:
       the debug flag, an upstream's explicit flag) or else, under a local
       parent, its parent's decision: the facade sends that decision
       downstream, so what is exported must agree with it. The
       application's sampler is not asked, since its answer would be
       overridden (a rate-limiting sampler would count a span it did not
       decide);
    2. every other span is decided by the application's sampler: new traces
       (Baseplate's roots included), an upstream that sent ids but no
       decision, and all native spans. For that upstream, the sampler sees
       no parent: Baseplate's remote parent then carries no sampled flag,
       which a parent-based sampler would read as "not sampled";
    3. where the application's sampler drops a span that is Baseplate's (a
       SpanRequest is pending) or whose parent is a local span being
       recorded (under a Baseplate span: every native descendant), the span
       is recorded (RECORD_ONLY) instead: not sampled, so no exporter takes
       it, while span processors see it. It keeps its own attributes,
       those the application's sampler added, and the trace state it chose.

    Spans outside Baseplate's requests (native roots, children of remote or
    dropped parents) keep the application's DROP: the application chose not
    to pay for recording them, and no Baseplate processor looks at them.
    """

    def __init__(self, app_sampler: Sampler) -> None:
        #: The application's sampler, which decides every span Baseplate does not.
        self.app_sampler = app_sampler

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Decide as the class describes."""
        request = creation.pending()
        parent_span = trace.get_current_span(parent_context)
        parent = parent_span.get_span_context()
        if request is not None:
            sampled = _baseplate_decision(request, parent)
            if sampled is not None:
                state = parent.trace_state if parent.is_valid else trace_state
                return _decided(sampled, attributes, state)
        asked = parent_context
        as_root = request is not None and request.decide_as_root and parent.is_valid
        if as_root:
            asked = trace.set_span_in_context(trace.INVALID_SPAN, parent_context)
        result = self.app_sampler.should_sample(
            asked, trace_id, name, kind, attributes, links, trace_state
        )
        state = result.trace_state
        if as_root and not state and parent.trace_state:
            # Asked as for a root, the sampler saw no parent state to keep.
            state = parent.trace_state
        if result.decision is Decision.DROP and (
            request is not None or isinstance(parent_span, ReadableSpan)
        ):
            # A dropped result carries no attributes: give the span its own back.
            kept = {**attributes, **result.attributes} if attributes else result.attributes
            return SamplingResult(Decision.RECORD_ONLY, kept, state)
        if state is not result.trace_state:
            return SamplingResult(result.decision, result.attributes, state)
        return result

    def get_description(self) -> str:
        """Name this sampler and the application's."""
        return f"RequestAwareSampler{{{self.app_sampler.get_description()}}}"


_SAMPLED = SamplingResult(Decision.RECORD_AND_SAMPLE)
_RECORDED = SamplingResult(Decision.RECORD_ONLY)


def _baseplate_decision(request: creation.SpanRequest, parent: trace.SpanContext) -> bool | None:
    """The decision Baseplate made for its span, or None to let the application's sampler decide."""
    if request.sampled is not None:
        return request.sampled
    if parent.is_valid and not parent.is_remote and not request.decide_as_root:
        return parent.trace_flags.sampled
    return None


def _decided(sampled: bool, attributes: Attributes, state: TraceState | None) -> SamplingResult:
    if not attributes and not state:
        # Results are immutable: share the two common ones.
        return _SAMPLED if sampled else _RECORDED
    return SamplingResult(
        Decision.RECORD_AND_SAMPLE if sampled else Decision.RECORD_ONLY, attributes, state
    )


def wrap_provider(provider: TracerProvider) -> list[str]:
    """Wrap the id generator and sampler of the application's ``provider``.

    The provider's tracers read both when they are made, so the tracers it
    has already made (an instrumentation's, made before Baseplate was
    imported) are given the wrappers too. Returns a description of each
    wrapper installed now: empty when there was nothing to wrap (done
    before, or the bridge's own id generator and sampler).
    """
    wrapped = []
    old_ids, old_sampler = provider.id_generator, provider.sampler
    if not isinstance(old_ids, (BaseplateIdGenerator, RequestAwareIdGenerator)):
        # The SDK's attribute is inferred as RandomIdGenerator, its default.
        provider.id_generator = RequestAwareIdGenerator(old_ids)  # type: ignore[assignment]
        wrapped.append(f"id generator {type(old_ids).__name__}")
    if not isinstance(old_sampler, (BaseplateSampler, RequestAwareSampler)):
        provider.sampler = RequestAwareSampler(old_sampler)
        wrapped.append(f"sampler {old_sampler.get_description()}")
    if wrapped:
        _rewire_tracers(provider, old_ids, old_sampler)
    return wrapped


def _rewire_tracers(provider: TracerProvider, old_ids: IdGenerator, old_sampler: Sampler) -> None:
    """Give the provider's existing tracers its new id generator and sampler.

    Relies on the SDK's private cache of tracers
    (:func:`bridge._otel_internals.tracers_made_by`); without it, tracers
    made earlier keep the application's originals.
    """
    found = tracers_made_by(provider)
    if found is None:
        logger.info("cannot find the tracers the provider already made; they are not wrapped")
        return
    tracers, lock = found
    with lock:
        for tracer in tracers.values():
            if getattr(tracer, "id_generator", None) is old_ids:
                tracer.id_generator = provider.id_generator
            if getattr(tracer, "sampler", None) is old_sampler:
                tracer.sampler = provider.sampler
