"""What the bridge keeps for the whole process, in one object.

The tracer provider, Baseplate's tracer, the export router, the root span
adopter, the telemetry shutdown's hooks and deadline: each is an attribute of
:data:`state` rather than a module global, so one class shows everything the
bridge remembers between calls, and :func:`bridge.provider.reset_state`
starts it over (tests do, to get what a new process would). The modules that
own each part (:mod:`bridge.provider`, :mod:`bridge.processor`,
:mod:`bridge.shutdown`) are the only ones that write it. Code on the request
path reads ``state.attribute``: one slot read, as cheap as a module global.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

    from bridge.processor import OwnerNotifyingSpanProcessor, RootSpanAdopter
    from bridge.routing import RoutingSpanProcessor
    from bridge.sampling import BaseplateSampler


class BridgeState:
    """The bridge's process-wide state, as a new process has it once made."""

    __slots__ = (
        "exit_hook_registered",
        "keeps_requested_ids",
        "owner_processor",
        "provider",
        "root_adopter",
        "router",
        "sampler",
        "service_name",
        "shutdown_deadline",
        "shutdown_hooks",
        "spans_read",
        "tracer",
    )

    #: The process's SDK tracer provider, once made or found (:mod:`bridge.provider`).
    provider: TracerProvider | None
    #: The tracer Baseplate's spans are made with, once asked for.
    tracer: Tracer | None
    #: The service the provider's resource names, if given before it was made.
    service_name: str | None
    #: The bridge's sampler, when it is the provider's (not the application's own).
    sampler: BaseplateSampler | None
    #: The span processor sending spans down their routes, once a route exists.
    router: RoutingSpanProcessor | None
    #: The bridge's processor on the provider: the owners of adopted spans live there.
    owner_processor: OwnerNotifyingSpanProcessor | None
    #: Whether any span processor besides the bridge's own (its bookkeeping
    #: and its router) reads every span (see :func:`bridge.provider.spans_are_read`).
    spans_read: bool
    #: Whether the provider's id generator gives a span the (non-zero) ids
    #: named in its :class:`~bridge.creation.SpanRequest`: the bridge's, or
    #: the wrapper around the application's. Set when the provider is
    #: installed; callers that name ids only need to read back the ids of
    #: spans they started when this is false.
    keeps_requested_ids: bool
    #: Who takes on the root spans of requests that no owner started
    #: (:func:`bridge.processor.set_root_span_adopter`).
    root_adopter: RootSpanAdopter | None
    #: What runs when the process's telemetry is shut down (:mod:`bridge.shutdown`).
    shutdown_hooks: list[Callable[[], None]]
    #: The monotonic time a running shutdown must end by; None outside one.
    shutdown_deadline: float | None
    #: Whether the shutdown is registered to run at interpreter exit (once per process).
    exit_hook_registered: bool

    def __init__(self) -> None:
        self.shutdown_hooks = []
        self.shutdown_deadline = None
        self.exit_hook_registered = False
        self.forget_provider()

    def forget_provider(self) -> None:
        """Back to no provider: what :func:`bridge.provider.reset_state` does once it shut it down.

        The shutdown's hooks stay: each belongs to the library that added it.
        """
        self.provider = None
        self.tracer = None
        self.service_name = None
        self.router = None
        self.sampler = None
        self.owner_processor = None
        self.spans_read = False
        self.keeps_requested_ids = False
        self.root_adopter = None


state = BridgeState()
