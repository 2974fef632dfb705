"""Which of the spans Baseplate starts itself the SDK has to record.

A recording SDK span is the expensive part of a span: locks, attribute
checks, events, a snapshot for the processors when it ends. Baseplate's span
facade reports its spans to its observers itself, so the SDK only has to
record one when something will read the record:

* any span, while a span processor outside the bridge reads every span (one
  added to the provider, or the application's own provider with its
  processors): such a processor may want unsampled requests too (span
  metrics, say), as it did before spans were ever left unrecorded;
* otherwise a **sampled** span when its route exports (it has a processor),
  and an **unsampled** span only when its route keeps unsampled traces to
  decide on them when they end (tail sampling, :mod:`bridge.tail_sampling`).

Every other span is an OpenTelemetry ``NonRecordingSpan`` with the span's
ids and sampling decision: it is current while it is open, so spans other
libraries start under it are its children (and are themselves recorded as
the sampler decides, so that their owners still hear of them), and it
propagates the trace downstream like any span.

To decide before the span exists, the facade needs the sampling decision
first: :func:`root_decision` makes it for a new trace exactly as
:class:`bridge.sampling.BaseplateSampler` will, when that is the provider's
sampler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import provider
from bridge._state import state

if TYPE_CHECKING:
    from bridge.routing import ExportRoute


def records(sampled: bool, route: ExportRoute | None) -> bool:
    """Whether a span with this decision, sent down ``route``, must be recorded.

    :func:`bridge.provider.spans_are_read` installs the provider first, if
    that has not happened yet: it decides whether processors outside the
    bridge read every span, and spans other libraries start under this one
    need it.
    """
    if provider.spans_are_read():
        return True
    if route is None:
        return False
    return route.processor is not None if sampled else route.records_unsampled


def root_decision(trace_id: int, route: ExportRoute | None) -> bool | None:
    """Whether a new trace with ``trace_id`` is sampled; None when the bridge's sampler is not used.

    What :meth:`bridge.sampling.BaseplateSampler.should_sample` decides for
    a span with no parent (:meth:`~bridge.sampling.BaseplateSampler.samples_root`).
    """
    if state.provider is None:
        provider.get_tracer_provider()
    sampler = state.sampler
    if sampler is None:
        return None
    return sampler.samples_root(trace_id, route)
