"""The batching span processor behind every tracing client's exporter.

Like OpenTelemetry's ``BatchSpanProcessor``, it queues sampled spans as they
end and has a background thread hand them to the exporter in batches, so a
request never waits for an export. It differs where the destination fails:

* Flushing and shutting down are bounded. :meth:`~BatchExportSpanProcessor.force_flush`
  waits at most its timeout (the SDK's ignores it and exports in the
  caller's thread), and :meth:`~BatchExportSpanProcessor.shutdown` at most
  :func:`bridge.shutdown.time_left`: a collector that never answers cannot
  hold the process's exit. What is still waiting then is dropped and counted.
* Failures are reported by :class:`bridge.failures.FailureLog`: the first
  of each kind as one warning line, without a traceback, the rest at debug
  level with a count. The exporter's own log lines about the export (the
  OTLP exporter's retries and errors, for one) are held back and passed on
  at debug level. Every span dropped (queue full, export failed, shutdown)
  is counted in :attr:`~BatchExportSpanProcessor.dropped_spans`.
* Exceptions other than :class:`OSError` (which covers ``requests``',
  ``urllib``'s and the socket's errors) are bugs: the first of each type is
  logged at error level with its traceback.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from bridge import shutdown
from bridge.failures import FailureLog, holding_records, one_line, pass_on_at_debug, worst

logger = logging.getLogger(__name__)

#: Spans per export call, unless ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` says otherwise.
DEFAULT_MAX_BATCH_SIZE = 512
#: Loggers of the HTTP clients exporters use, whose retry warnings are held back too.
TRANSPORT_LOGGERS = ("urllib3.connectionpool", "opentelemetry.exporter.otlp.common.http")


def unwrap(exporter: SpanExporter) -> SpanExporter:
    """The exporter that does the sending, inside Baseplate's renaming wrapper."""
    inner = getattr(exporter, "exporter", None)
    return inner if isinstance(inner, SpanExporter) else exporter


def destination(exporter: SpanExporter) -> str:
    """Where ``exporter`` sends spans, for log lines: its endpoint, else its class."""
    inner = unwrap(exporter)
    for name in ("endpoint", "_endpoint", "url"):
        value = getattr(inner, name, None)
        if isinstance(value, str) and value:
            return value
    return type(inner).__name__


def _default_batch_size() -> int:
    try:
        return max(1, int(os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "")))
    except ValueError:
        return DEFAULT_MAX_BATCH_SIZE


class BatchExportSpanProcessor(SpanProcessor):
    """Exports sampled spans in batches from a background thread, as the module says.

    :param exporter: Where the spans go.
    :param max_queue_size: Spans waiting beyond this are dropped and counted.
    :param schedule_delay_seconds: How long spans wait to be exported together.
    :param max_batch_size: Spans per export call.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int = 2048,
        schedule_delay_seconds: float = 5.0,
        max_batch_size: int | None = None,
    ) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1, not {max_queue_size}")
        if not schedule_delay_seconds > 0:
            raise ValueError(f"schedule_delay must be positive, not {schedule_delay_seconds}")
        self.exporter = exporter
        self.destination = destination(exporter)
        self.max_queue_size = max_queue_size
        self.schedule_delay_seconds = schedule_delay_seconds
        self.max_batch_size = min(max_batch_size or _default_batch_size(), max_queue_size)
        self.failures = FailureLog(logger)
        # The sidecar queue and Zipkin v1 exporters count and report their own drops;
        # the log lines of the others about an export are held back.
        self._reports_own_drops = hasattr(unwrap(exporter), "dropped_spans")
        own_logger = () if self._reports_own_drops else (type(unwrap(exporter)).__module__,)
        self._loggers = (*own_logger, *TRANSPORT_LOGGERS)
        self._dropped = 0
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flush_requests: list[threading.Event] = []
        self._worker: threading.Thread | None = None
        self._in_flight = 0
        self._stopping = False
        self._abandoned = False
        _forget_worker_in_forked_children(self)

    @property
    def dropped_spans(self) -> int:
        """Spans this processor dropped: queue full, export failed, or left at shutdown.

        Spans an exporter that counts its own drops (the sidecar queue's,
        Zipkin v1's) failed to send are counted there, not here.
        """
        return self._dropped

    def queued(self) -> int:
        """Spans waiting for the next export."""
        return len(self._queue)

    # -- the request's side ---------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing: spans are queued when they end."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a sampled span for export; drop and count it if the queue is full."""
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        if self._stopping:
            self._count_drop(1)
            return
        if len(self._queue) >= self.max_queue_size:
            self._drop(1, "queue full", f"the export queue is full ({self.max_queue_size} spans)")
            return
        self._queue.append(span)
        if self._worker is None:
            self._start_worker()
        if len(self._queue) >= self.max_batch_size and not self._wake.is_set():
            self._wake.set()

    # -- flushing and shutting down -------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what is waiting now; True if it was exported within the timeout.

        The background thread does the exporting; this only waits for it,
        so it returns on time however long the destination takes.
        """
        if self._worker is None or self._stopping:
            return not self._queue
        done = threading.Event()
        with self._lock:
            self._flush_requests.append(done)
        self._wake.set()
        return done.wait(max(0, timeout_millis) / 1000)

    def shutdown(self) -> None:
        """Export what is waiting, for at most :func:`bridge.shutdown.time_left`; drop the rest.

        The spans not exported by then are counted and logged, and the
        exporter is shut down: an export still in progress is left behind.
        """
        if self._stopping:
            return
        self._stopping = True
        bound = shutdown.time_left()
        worker = self._worker
        if worker is not None:
            self._wake.set()
            worker.join(bound)
        if worker is not None and worker.is_alive():
            self._abandon(bound)
        with holding_records(*self._loggers) as held:
            self.exporter.shutdown()
        pass_on_at_debug(held)

    def _abandon(self, bound: float) -> None:
        self._abandoned = True
        with self._lock:
            left = len(self._queue) + self._in_flight
            self._queue.clear()
        if left:
            self._drop(
                left,
                "shutdown",
                f"{self.destination} did not take them within {bound:.3g} s of the shutdown",
            )

    # -- the background thread ------------------------------------------------

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is not None:
                return
            self._worker = threading.Thread(
                target=self._work, name="baseplate-span-export", daemon=True
            )
        self._worker.start()

    def _work(self) -> None:
        while True:
            self._wake.wait(self.schedule_delay_seconds)
            self._wake.clear()
            with self._lock:
                flushes, self._flush_requests = self._flush_requests, []
                waiting = len(self._queue)
            self._export_queued(waiting)
            for done in flushes:
                done.set()
            if self._stopping and not self._queue:
                return

    def _export_queued(self, count: int) -> None:
        """Export ``count`` spans from the queue: those waiting when the thread woke.

        Spans queued meanwhile wait for the next round, so a flush ends even
        while requests keep adding spans.
        """
        while count > 0 and not self._abandoned:
            with self._lock:
                size = min(self.max_batch_size, count, len(self._queue))
                batch = [self._queue.popleft() for _ in range(size)]
                self._in_flight = size
            if not batch:
                return
            count -= size
            try:
                self._export(batch)
            finally:
                self._in_flight = 0

    def _export(self, batch: Sequence[ReadableSpan]) -> None:
        failure: tuple[str, str] | None = None
        with holding_records(*self._loggers) as held:
            try:
                result = self.exporter.export(batch)
            except OSError as exc:  # the network: a refused, reset or timed-out connection
                failure = (type(exc).__name__, f"{type(exc).__name__}: {one_line(str(exc))}")
            except Exception as exc:
                self._drop(
                    len(batch),
                    f"bug: {type(exc).__name__}",
                    f"the exporter raised {type(exc).__name__}",
                    exc_info=exc,
                )
            else:
                if result is not SpanExportResult.SUCCESS:
                    failure = self._failure(held)
        if failure is not None and not self._abandoned:
            kind, reason = failure
            self._drop(len(batch), kind, f"exporting to {self.destination} failed: {reason}")
        pass_on_at_debug(held)

    def _failure(self, held: list[logging.LogRecord]) -> tuple[str, str] | None:
        """The kind and the reason of a failed export, from what the exporter logged."""
        if self._reports_own_drops:
            return None
        record = worst(held)
        if record is None:
            return "failed", "no reason given"
        reason = one_line(record.getMessage(), 200)
        first = held[0]
        if first is not record:
            # The OTLP exporter's last word ("max retries") hides the cause its first gave.
            reason += f" (first: {one_line(first.getMessage(), 200)})"
        return str(record.msg), reason

    # -- counting -------------------------------------------------------------

    def _count_drop(self, count: int) -> None:
        with self._lock:
            self._dropped += count

    def _drop(self, count: int, kind: str, why: str, exc_info: Any = None) -> None:
        self._count_drop(count)
        self.failures.report(kind, f"dropped {count} span(s): {why}", exc_info=exc_info)


def _forget_worker_in_forked_children(processor: BatchExportSpanProcessor) -> None:
    """A forked child has no worker thread: start a new one on its first span."""
    if not hasattr(os, "register_at_fork"):
        return
    reference = weakref.ref(processor)

    def after_in_child() -> None:
        child = reference()
        if child is not None:
            child._lock = threading.Lock()
            child._wake = threading.Event()
            child._worker = None
            child._flush_requests = []
            child._queue.clear()
            child._in_flight = 0

    os.register_at_fork(after_in_child=after_in_child)
