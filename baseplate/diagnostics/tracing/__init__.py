"""Distributed tracing: where finished spans go.

Every Baseplate span is an OpenTelemetry span, so tracing is a matter of
attaching an exporter to the tracer provider. A :class:`TracingClient` names
the destination and the root sample rate; :class:`TraceBaseplateObserver`
(installed by :meth:`~baseplate.core.Baseplate.configure_tracing`) attaches
the client's exporter, behind a batching span processor, the first time a
request is served, so that a server that forks workers builds it in each
worker. Exporting happens off the request's path and never raises into it.

Destinations (``tracing.exporter``):

* ``sidecar``: Zipkin records on the POSIX queue ``/traces-<queue_name>``,
  read by the trace publisher sidecar (the original's format, byte for byte);
* ``remote``: the same records posted to a Zipkin v1 API (the original's
  deprecated ``tracing.endpoint``);
* ``zipkin``: Zipkin v2 JSON posted to ``tracing.zipkin.endpoint``;
* ``otlp``: OTLP/HTTP to a collector at ``tracing.otlp.endpoint``;
* ``log``: records logged at debug level; ``none``: spans are dropped;
* any other name: the ``opentelemetry_traces_exporter`` entry point of that
  name (what ``OTEL_TRACES_EXPORTER`` selects from), made with no arguments,
  so it configures itself from the ``OTEL_*`` variables: OpenTelemetry's
  ``console``, ``zipkin_json`` and ``otlp_proto_http``, or Baseplate's
  ``baseplate_sidecar``.

Each client exports only the spans of the :class:`~baseplate.core.Baseplate`
it is configured on (its server spans, their children, and spans other
libraries start under them), under its own service name and with its own
sample rate, even with several in one process (see :mod:`bridge.routing`).
Spans that other libraries start outside any request go to the client
installed last.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from baseplate._extras import missing_extra
from baseplate.config import ConfigurationError
from baseplate.core import BaseplateObserver, ServerSpan
from bridge import provider
from bridge.batching import BatchExportSpanProcessor
from bridge.export import (
    LoggingSpanExporter,
    PosixQueueSpanExporter,
    ServiceNamingSpanExporter,
    ZipkinV1HttpSpanExporter,
    reports_shared_spans,
    zipkin_v2_exporter,
)
from bridge.routing import ExportRoute
from bridge.tail_sampling import TailSamplingSpanProcessor

logger = logging.getLogger(__name__)

#: The built-in ``tracing.exporter`` names; any other names an
#: ``opentelemetry_traces_exporter`` entry point.
BUILTIN_EXPORTERS = ("sidecar", "remote", "zipkin", "otlp", "log", "none")
#: The entry point group of OpenTelemetry's span exporters.
EXPORTER_ENTRY_POINT_GROUP = "opentelemetry_traces_exporter"
#: Every name ``tracing.exporter`` accepts: :data:`BUILTIN_EXPORTERS`, then the
#: installed entry points' names. Looked up when read, not when this module
#: is imported, as finding entry points means reading every installed
#: package's metadata.
EXPORTERS: tuple[str, ...]
DEFAULT_SAMPLE_RATE = 0.1
DEFAULT_MAX_SPAN_QUEUE_SIZE = 50000
DEFAULT_SPAN_BATCH_INTERVAL = timedelta(milliseconds=500)


class SidecarRecorder(PosixQueueSpanExporter):
    """The original's name for the exporter of ``tracing.queue_name``: Zipkin
    records on the POSIX queue the trace publisher sidecar reads."""


class RemoteRecorder(ZipkinV1HttpSpanExporter):
    """The original's name for the exporter of the deprecated ``tracing.endpoint``."""


class LoggingRecorder(LoggingSpanExporter):
    """The original's name for the exporter that logs spans (no destination configured)."""


class NullRecorder(SpanExporter):
    """Exports nothing: the recorder when there is no destination and logging is off."""

    def export(self, spans: Any) -> SpanExportResult:
        """Drop the spans."""
        return SpanExportResult.SUCCESS


class TracingClient:
    """Where spans are exported, and how many new traces are sampled.

    :param service_name: The name this service's spans are reported under.
    :param sample_rate: The share (0 to 1) of traces with no upstream
        decision that are sampled.
    :param recorder: The span exporter; None or a :class:`NullRecorder` exports nothing.
    :param max_span_queue_size: Spans waiting for export beyond this are dropped.
    :param span_batch_interval: How long spans wait to be exported in batches.
    :param tail_errors: Also export unsampled traces whose server span failed.
    :param tail_slower_than: Also export unsampled traces whose server span
        took longer than this.

    .. versionchanged:: 0.31
       Built on OpenTelemetry; the tail-sampling options are new.
    """

    def __init__(
        self,
        service_name: str,
        sample_rate: float,
        recorder: SpanExporter | None,
        max_span_queue_size: int = DEFAULT_MAX_SPAN_QUEUE_SIZE,
        span_batch_interval: timedelta = DEFAULT_SPAN_BATCH_INTERVAL,
        tail_errors: bool = False,
        tail_slower_than: timedelta | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, not {sample_rate!r}")
        # Checked now: the batching processor is only made on the first request.
        if max_span_queue_size < 1:
            raise ValueError(f"max_span_queue_size must be at least 1, not {max_span_queue_size}")
        if span_batch_interval <= timedelta(0):
            raise ValueError(f"span_batch_interval must be positive, not {span_batch_interval}")
        #: Where the spans of the Baseplate this client is configured on go.
        self.route = ExportRoute(root_ratio=sample_rate)
        self.service_name = service_name
        self.recorder = recorder
        self.max_span_queue_size = max_span_queue_size
        self.span_batch_interval = span_batch_interval
        self.tail_errors = tail_errors
        self.tail_slower_than = tail_slower_than
        self.processor: SpanProcessor | None = None
        #: The batching processor in front of the exporter, once installed.
        self.batch_processor: BatchExportSpanProcessor | None = None
        self._install_lock = threading.Lock()
        provider.set_service_name(service_name)

    @property
    def sample_rate(self) -> float:
        """The share (0 to 1) of new traces sampled: the root ratio of ``route``."""
        ratio = self.route.root_ratio
        assert ratio is not None
        return ratio

    def install(self) -> None:
        """Make the exporter the destination of ``route`` (once)."""
        if self.processor is None:
            with self._install_lock:
                self._install_once()

    def _install_once(self) -> None:
        if self.processor is not None:
            return
        sampler = provider.root_sampler()
        if sampler is not None:
            sampler.root_ratio = self.sample_rate
        else:
            # The application installed its own provider; the bridge wrapped
            # its sampler (bridge.app_provider), which decides new traces.
            logger.info(
                "the application's own sampler decides new traces, and upstream traces that "
                "came without a decision; tracing.sample_rate (%s) is not applied: %s",
                self.sample_rate,
                provider.get_tracer_provider().sampler.get_description(),
            )
        if self.recorder is None or isinstance(self.recorder, NullRecorder):
            self.processor = _NO_PROCESSOR
            provider.add_route(self.route)
            return
        self.batch_processor = BatchExportSpanProcessor(
            self.recorder,
            max_queue_size=self.max_span_queue_size,
            schedule_delay_seconds=self.span_batch_interval.total_seconds(),
        )
        processor: SpanProcessor = self.batch_processor
        if self.tail_errors or self.tail_slower_than is not None:
            self.route.records_unsampled = True
            processor = TailSamplingSpanProcessor(
                processor,
                errors=self.tail_errors,
                slower_than_seconds=(
                    None if self.tail_slower_than is None else self.tail_slower_than.total_seconds()
                ),
            )
        self.route.processor = processor
        self.route.marks_shared_spans = reports_shared_spans(self.recorder)
        provider.add_route(self.route)
        self.processor = processor

    def flush(self, timeout_seconds: float = 30.0) -> bool:
        """Export what is waiting now; True if everything went out in time.

        Returns after ``timeout_seconds`` at the latest, however long the
        destination takes: the background thread goes on exporting.

        .. versionadded:: 0.31
        """
        if self.processor is None:
            return True
        return self.processor.force_flush(int(timeout_seconds * 1000))

    @property
    def dropped_spans(self) -> int:
        """Sampled spans that were not exported: the export queue was full, the
        destination failed or refused them, or they were still waiting when
        the process shut down.

        .. versionadded:: 0.31
        """
        dropped = self.batch_processor.dropped_spans if self.batch_processor else 0
        return dropped + int(getattr(self.recorder, "dropped_spans", 0))


class _NoProcessor(SpanProcessor):
    """Stands for "installed, with nothing to export to"."""


_NO_PROCESSOR = _NoProcessor()


def make_client(
    service_name: str,
    tracing_endpoint: Any = None,
    tracing_queue_name: str | None = None,
    max_span_queue_size: int = DEFAULT_MAX_SPAN_QUEUE_SIZE,
    num_span_workers: int = 5,
    span_batch_interval: float = DEFAULT_SPAN_BATCH_INTERVAL.total_seconds(),
    num_conns: int = 100,
    sample_rate: float = DEFAULT_SAMPLE_RATE,
    log_if_unconfigured: bool = True,
    exporter: str | None = None,
    zipkin_endpoint: str | None = None,
    otlp_endpoint: str | None = None,
    tail_errors: bool = False,
    tail_slower_than: timedelta | None = None,
) -> TracingClient:
    """Return a tracing client for the given destination.

    With no ``exporter``, the destination given decides, and the choice is
    logged at INFO: a Zipkin or OTLP endpoint means that exporter; of the
    original's arguments, a queue name means the sidecar, else an endpoint the
    remote recorder, as in the original; none means spans are logged (or
    dropped if ``log_if_unconfigured`` is false). ``num_span_workers`` and
    ``num_conns`` are accepted for compatibility: one background exporter
    thread does the work.

    :raises ~baseplate.config.ConfigurationError: The exporter lacks its
        destination, or no exporter is named and a Zipkin or OTLP endpoint is
        given with another destination; the error names the configuration key.

    .. versionchanged:: 0.31
       The exporter is inferred from a Zipkin or OTLP endpoint.
    """
    if exporter is None:
        exporter = _infer_exporter(
            tracing_queue_name, tracing_endpoint, zipkin_endpoint, otlp_endpoint
        ) or ("log" if log_if_unconfigured else "none")
    recorder = _make_recorder(
        exporter, service_name, tracing_endpoint, tracing_queue_name, zipkin_endpoint, otlp_endpoint
    )
    return TracingClient(
        service_name,
        sample_rate,
        recorder,
        max_span_queue_size=max_span_queue_size,
        span_batch_interval=timedelta(seconds=span_batch_interval),
        tail_errors=tail_errors,
        tail_slower_than=tail_slower_than,
    )


def _infer_exporter(
    queue_name: str | None, endpoint: Any, zipkin_endpoint: str | None, otlp_endpoint: str | None
) -> str | None:
    """The exporter the one destination given implies, or None if none is given."""
    destinations = [
        (key, name)
        for key, name, value in (
            ("tracing.queue_name", "sidecar", queue_name),
            ("tracing.endpoint", "remote", endpoint),
            ("tracing.zipkin.endpoint", "zipkin", zipkin_endpoint),
            ("tracing.otlp.endpoint", "otlp", otlp_endpoint),
        )
        if value
    ]
    if not destinations:
        return None
    # The original's two keys together meant the sidecar; the new ones must be alone.
    if len(destinations) > 1 and any(name in ("zipkin", "otlp") for _, name in destinations):
        keys = " and ".join(key for key, _ in destinations)
        raise ConfigurationError(
            "tracing.exporter", f"required when several destinations are set ({keys})"
        )
    key, exporter = destinations[0]
    logger.info("tracing.exporter is not set: using %s, as %s is set", exporter, key)
    return exporter


def _make_recorder(
    exporter: str,
    service_name: str,
    tracing_endpoint: Any,
    queue_name: str | None,
    zipkin_endpoint: str | None,
    otlp_endpoint: str | None,
) -> SpanExporter:
    if exporter == "sidecar":
        if not queue_name:
            raise ConfigurationError("tracing.queue_name", "required by tracing.exporter = sidecar")
        return SidecarRecorder(queue_name, service_name)
    if exporter == "remote":
        if not tracing_endpoint:
            raise ConfigurationError("tracing.endpoint", "required by tracing.exporter = remote")
        return RemoteRecorder(str(tracing_endpoint), service_name)
    if exporter == "zipkin":
        if not zipkin_endpoint:
            raise ConfigurationError(
                "tracing.zipkin.endpoint", "required by tracing.exporter = zipkin"
            )
        try:
            return ServiceNamingSpanExporter(zipkin_v2_exporter(zipkin_endpoint), service_name)
        except ImportError as exc:
            raise missing_extra("the zipkin exporter", "its exporter package", "zipkin") from exc
    if exporter == "otlp":
        if not otlp_endpoint:
            raise ConfigurationError("tracing.otlp.endpoint", "required by tracing.exporter = otlp")
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise missing_extra("the otlp exporter", "its exporter package", "otlp") from exc
        return ServiceNamingSpanExporter(OTLPSpanExporter(endpoint=otlp_endpoint), service_name)
    if exporter == "log":
        return LoggingRecorder(service_name)
    if exporter == "none":
        return NullRecorder()
    return ServiceNamingSpanExporter(_entry_point_exporter(exporter), service_name)


def installed_exporter_names() -> list[str]:
    """The names of the installed ``opentelemetry_traces_exporter`` entry points."""
    return sorted({point.name for point in entry_points(group=EXPORTER_ENTRY_POINT_GROUP)})


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Compute :data:`EXPORTERS` on demand (the configuration parser reads it)."""
        if name == "EXPORTERS":
            installed = [n for n in installed_exporter_names() if n not in BUILTIN_EXPORTERS]
            return (*BUILTIN_EXPORTERS, *installed)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _entry_point_exporter(name: str) -> SpanExporter:
    """The exporter the entry point ``name`` names, made as the OpenTelemetry SDK makes it.

    The SDK constructs the exporters of ``OTEL_TRACES_EXPORTER`` with no
    arguments, so every such exporter configures itself from the
    environment; doing the same here means a name works the same way in
    ``tracing.exporter`` as in ``OTEL_TRACES_EXPORTER``.
    """
    points = entry_points(group=EXPORTER_ENTRY_POINT_GROUP, name=name)
    if not points:
        raise ValueError(
            f"unknown tracing exporter {name!r}: expected one of {', '.join(BUILTIN_EXPORTERS)} "
            f"or an installed {EXPORTER_ENTRY_POINT_GROUP} entry point "
            f"({', '.join(installed_exporter_names()) or 'none installed'})"
        )
    exporter_class = next(iter(points)).load()
    exporter = exporter_class()
    if not isinstance(exporter, SpanExporter):
        raise ValueError(f"the {name!r} exporter entry point made {exporter!r}, not a SpanExporter")
    return exporter


class TraceBaseplateObserver(BaseplateObserver):
    """Distributed tracing observer.

    Attaches the client's exporter on the first request and routes each
    server span (and so its children) to it. A server span with an export
    route keeps the sampling decision made for a new trace when it starts
    (see :meth:`baseplate.core.Span.start`), so its child spans and the
    calls it makes downstream carry it.

    :param tracing_client: Where spans go.
    """

    def __init__(self, tracing_client: TracingClient) -> None:
        self.tracing_client = tracing_client

    def on_server_span_created(self, context: Any, server_span: ServerSpan) -> None:
        """Install the exporter if needed and route the server span to it."""
        client = self.tracing_client
        if client.processor is None:
            client.install()
        server_span.export_route = client.route
