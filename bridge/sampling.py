"""Parent-based sampling that still records every span.

A span that is not sampled is created as RECORD_ONLY rather than dropped:
span processors (and through them Baseplate's observers, for the spans other
libraries start) see every request, while exporters, which only take sampled
spans, do not. The parent's decision always wins over the root ratio, so a
sampled parent never gets unsampled children. Baseplate's own spans reach
the SDK only when something reads them (:mod:`bridge.recording`), which
makes the same decision with :meth:`BaseplateSampler.samples_root`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import DEFAULT_TRACE_STATE, TraceState
from opentelemetry.util.types import Attributes

from bridge import creation
from bridge.ids import ID_LIMIT

if TYPE_CHECKING:
    from bridge.routing import ExportRoute

_SAMPLED = SamplingResult(Decision.RECORD_AND_SAMPLE)
_RECORDED = SamplingResult(Decision.RECORD_ONLY)


class BaseplateSampler(Sampler):
    """Sample as the parent did; sample roots at ``root_ratio``.

    A forced decision in the :class:`~bridge.creation.SpanRequest` of the span
    being created (an upstream's flag, the debug flag) overrides both, and the
    root ratio of the request's route, if it has one, replaces ``root_ratio``.
    ``root_ratio`` may be changed at any time; tracers copy the sampler object
    when they are made, so the ratio is read on every decision.
    """

    def __init__(self, root_ratio: float = 1.0) -> None:
        self.root_ratio = root_ratio

    @property
    def root_ratio(self) -> float:
        """The share of new traces that are sampled, from 0 to 1."""
        return self._root_ratio

    @root_ratio.setter
    def root_ratio(self, ratio: float) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"root sampling ratio must be between 0 and 1, not {ratio!r}")
        self._root_ratio = ratio
        self._bound = round(ratio * ID_LIMIT)

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
        """Decide whether the new span is sampled; it is always recorded."""
        parent = trace.get_current_span(parent_context).get_span_context()
        has_parent = parent.is_valid
        request = creation.pending()
        if request is not None and request.sampled is not None:
            sampled = request.sampled
        elif has_parent and not (request is not None and request.decide_as_root):
            sampled = parent.trace_flags.sampled
        else:
            sampled = self.samples_root(trace_id, None if request is None else request.route)
        state = parent.trace_state if has_parent else trace_state
        if not attributes and (state is None or state is DEFAULT_TRACE_STATE or not state):
            # Results are immutable: share the two common ones.
            return _SAMPLED if sampled else _RECORDED
        return SamplingResult(
            Decision.RECORD_AND_SAMPLE if sampled else Decision.RECORD_ONLY, attributes, state
        )

    def samples_root(self, trace_id: int, route: ExportRoute | None = None) -> bool:
        """Whether a new trace with ``trace_id`` is sampled: at ``route``'s root ratio, if it
        has one, otherwise at the sampler's.

        The low 64 bits are random for Baseplate and W3C ids alike.
        """
        if route is not None and route.root_ratio is not None:
            return (trace_id % ID_LIMIT) < round(route.root_ratio * ID_LIMIT)
        return (trace_id % ID_LIMIT) < self._bound

    def get_description(self) -> str:
        """Name the sampler and its ratio, for diagnostics."""
        return f"BaseplateSampler{{root_ratio={self._root_ratio}}}"


def sampler_from_argument(argument: str | None) -> BaseplateSampler:
    """The ``baseplate`` sampler of ``OTEL_TRACES_SAMPLER``, made by the SDK.

    The SDK passes the raw ``OTEL_TRACES_SAMPLER_ARG`` (None when unset): the
    root ratio, 1.0 when unset or empty (OpenTelemetry treats an empty
    variable as unset). A bad value raises rather than quietly sampling at
    some other rate; the SDK then logs it and falls back to its default
    sampler.
    """
    if argument is None or not argument.strip():
        return BaseplateSampler(1.0)
    try:
        ratio = float(argument)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:  # also rejects nan
        raise ValueError(
            f"OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, not {argument!r}"
        )
    return BaseplateSampler(ratio)
