"""The one tracer provider the process uses.

If the application already installed an SDK ``TracerProvider`` it is used:
its span processors and exporters keep working, the bridge adds its own span
processor, and wraps its id generator and sampler so that Baseplate's spans
keep their guarantees (see :mod:`bridge.app_provider`). Otherwise a provider
with the bridge's id generator and sampler is installed as the global one.
Either way there is never a second provider. Nothing is created at import
time: the provider is made on first use, so a server that forks workers
builds it in each worker.

The provider is shut down with the process's other telemetry, within the
deadline of :mod:`bridge.shutdown` (what is left of ``baseplate-serve``'s
stop timeout, or :data:`~bridge.shutdown.EXIT_TIMEOUT` at interpreter exit),
not by OpenTelemetry's own exit hook, which waits as long as the exporters'
timeouts and retries add up to.

What the bridge remembers between calls (this provider, its tracer, the
export routes, the root span adopter, ...) is one object, :data:`state`;
:func:`reset_state` starts it over.
"""

from __future__ import annotations

import atexit
import logging
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider

from bridge import _state, shutdown
from bridge._otel_internals import forget_global_tracer_provider
from bridge.app_provider import RequestAwareIdGenerator, wrap_provider
from bridge.ids import BaseplateIdGenerator
from bridge.processor import OwnerNotifyingSpanProcessor
from bridge.routing import ExportRoute, RoutingSpanProcessor
from bridge.sampling import BaseplateSampler

logger = logging.getLogger(__name__)

TRACER_NAME = "baseplate"

#: What the bridge remembers for the whole process, this module's part
#: included. Read it; only the bridge's modules write it, and
#: :func:`reset_state` starts it over.
state = _state.state

# Guards making the provider and the router, and reset_state.
_lock = threading.Lock()


def get_tracer_provider() -> TracerProvider:
    """The process's SDK tracer provider, set up on first use."""
    provider = state.provider
    if provider is None:
        with _lock:
            provider = state.provider if state.provider is not None else _install()
    return provider


def get_tracer() -> trace.Tracer:
    """The tracer Baseplate's spans are made with."""
    tracer = state.tracer
    return tracer if tracer is not None else _make_tracer()


def _make_tracer() -> trace.Tracer:
    tracer = state.tracer = get_tracer_provider().get_tracer(TRACER_NAME)
    return tracer


def spans_are_read() -> bool:
    """Whether a span processor outside the bridge reads every span recorded now.

    The bridge's own processors do not count: its bookkeeping reads nothing,
    and its router hands each span to its route's processor, if it has one
    (see :mod:`bridge.recording`). A processor added later, through this
    module or the provider itself, makes this true from then on.
    """
    if state.provider is None:
        get_tracer_provider()
    return state.spans_read


class _BridgeTracerProvider(TracerProvider):
    """The provider the bridge installs: it notes when a processor that reads spans is added."""

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        """Add the processor; every span is recorded from now on unless it is the bridge's."""
        if not isinstance(span_processor, (OwnerNotifyingSpanProcessor, RoutingSpanProcessor)):
            state.spans_read = True
        super().add_span_processor(span_processor)


def add_span_processor(processor: SpanProcessor) -> None:
    """Add a span processor to the process's provider: it sees every span.

    To export only the spans of one source, give it a route instead
    (:func:`add_route`).
    """
    get_tracer_provider().add_span_processor(processor)


def add_route(route: ExportRoute) -> None:
    """Make ``route`` a destination, and the one for spans that name none.

    Spans started under a context that names a route go to that route (see
    :mod:`bridge.routing`); the most recently added route takes the spans
    of other libraries started outside any such context. The route's
    processor is flushed and shut down with the provider.
    """
    tracer_provider = get_tracer_provider()
    with _lock:
        router = state.router
        if router is None:
            # Added with the first route: until a destination exists, no
            # span has anywhere to go, and routing would only cost time.
            router = state.router = RoutingSpanProcessor()
            tracer_provider.add_span_processor(router)
        router.add_route(route)


def route_open_span(span: Span, route: ExportRoute) -> None:
    """Send ``span``, started by another library and still open, down ``route``.

    For a span whose route is only known once it started (a native root span
    that a Baseplate adopts); its children follow it. Does nothing before any
    route exists.
    """
    router = state.router
    if router is not None:
        router.route_open_span(span, route)


def set_service_name(name: str) -> None:
    """Name the service in the resource of the provider the bridge will create.

    Exporters that send the resource (Zipkin, OTLP) report spans under this
    name unless they name the service themselves. The last name given before
    the provider is made counts; later ones are ignored, since a provider's
    resource cannot change.
    """
    with _lock:
        if state.provider is None:
            state.service_name = name


def root_sampler() -> BaseplateSampler | None:
    """The bridge's sampler, or None when the application brought its own."""
    sampler = get_tracer_provider().sampler
    return sampler if isinstance(sampler, BaseplateSampler) else None


def _install() -> TracerProvider:
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        provider = existing
        _wrap_application_provider(provider)
        state.spans_read = True  # its own processors may read anything
    else:
        service_name = state.service_name
        resource = Resource.create({SERVICE_NAME: service_name} if service_name else {})
        sampler = state.sampler = BaseplateSampler()
        provider = _BridgeTracerProvider(
            sampler=sampler,
            id_generator=BaseplateIdGenerator(),
            resource=resource,
            shutdown_on_exit=False,  # shutdown_provider does it, within the deadline
        )
        trace.set_tracer_provider(provider)
    owner_processor = state.owner_processor = OwnerNotifyingSpanProcessor()
    provider.add_span_processor(owner_processor)
    state.keeps_requested_ids = isinstance(
        provider.id_generator, (BaseplateIdGenerator, RequestAwareIdGenerator)
    )
    state.provider = provider
    shutdown.add_hook(shutdown_provider)
    return provider


def shutdown_provider() -> None:
    """Shut the process's provider down: its processors send what waits, and stop.

    The :mod:`bridge.shutdown` hook of the provider. The routes' processors
    give up at the deadline (:class:`bridge.batching.BatchExportSpanProcessor`).
    An application's own provider is shut down here too, and its exit hook
    forgotten, so that the process does not wait on it a second time at exit.
    """
    provider = state.provider
    if provider is None:
        return
    atexit.unregister(provider.shutdown)
    provider.shutdown()


def _wrap_application_provider(provider: TracerProvider) -> None:
    wrapped = wrap_provider(provider)
    if wrapped:
        logger.info(
            "using the application's own TracerProvider; wrapped its %s so that Baseplate's "
            "spans keep their upstream and 64-bit ids, the debug flag, and recording of "
            "unsampled requests",
            " and ".join(wrapped),
        )


def reset_state() -> None:
    """Start the bridge over, as in a new process: for tests, between cases.

    The provider is shut down (its processors send what they hold) and
    forgotten with its tracer, routes, service name and root span adopter;
    the next use installs a new provider as the global one, which
    OpenTelemetry's API otherwise allows only once per process. Hooks other
    libraries added to :mod:`bridge.shutdown` stay.
    """
    shutdown.remove_hook(shutdown_provider)
    with _lock:
        provider = state.provider
        state.forget_provider()
        if provider is not None:
            provider.shutdown()
        forget_global_tracer_provider()
