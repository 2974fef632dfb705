"""The logging observer: request context on every log record.

During a request the handling thread (or greenlet) is named after the trace
id, as the original Baseplate did, so a plain ``%(threadName)s`` in a log
format identifies the request. Every log record also gets ``trace_id`` and
``span_id`` attributes (decimal, as in Baseplate headers; empty outside a
span) taken from the current OpenTelemetry span, so spans created by other
libraries are covered too.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opentelemetry import trace

from baseplate._state import state
from baseplate.core import BaseplateObserver, ExcInfo, ServerSpan, ServerSpanObserver
from bridge.ids import MAX_ID

_factory_lock = threading.Lock()


def _install_record_factory() -> None:
    """Wrap the log record factory once per process to add trace ids."""
    with _factory_lock:
        if state.log_record_factory is not None:
            return
        wrapped = logging.getLogRecordFactory()

        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = wrapped(*args, **kwargs)
            span_context = trace.get_current_span().get_span_context()
            if span_context.is_valid:
                record.trace_id = str(span_context.trace_id & MAX_ID)
                record.span_id = str(span_context.span_id)
            else:
                record.trace_id = record.span_id = ""
            return record

        logging.setLogRecordFactory(make_record)
        state.log_record_factory = make_record


class LoggingBaseplateObserver(BaseplateObserver):
    """Logging observer.

    Adds request context to the logging system: the thread name is the
    current request's trace id, and log records carry ``trace_id`` and
    ``span_id``.
    """

    def __init__(self) -> None:
        _install_record_factory()

    def on_server_span_created(self, context: Any, server_span: ServerSpan) -> None:
        """Observe the request's server span."""
        server_span.register(LoggingServerSpanObserver(server_span))


class LoggingServerSpanObserver(ServerSpanObserver):
    """Names the thread after the trace id while the request runs."""

    def __init__(self, server_span: ServerSpan) -> None:
        self.server_span = server_span
        self.previous_name: str | None = None

    def on_start(self) -> None:
        thread = threading.current_thread()
        self.previous_name = thread.name
        thread.name = str(self.server_span.trace_id)

    def on_finish(self, exc_info: ExcInfo | None) -> None:
        if self.previous_name is not None:
            threading.current_thread().name = self.previous_name
