"""Span exporters for Baseplate's trace destinations.

* :class:`PosixQueueSpanExporter` writes Zipkin span records onto the POSIX
  message queue read by the trace publisher sidecar; a full queue drops the
  span and counts it, it never waits.
* :class:`SidecarSpanExporter` is the same, configured from the environment:
  the ``baseplate_sidecar`` exporter of ``OTEL_TRACES_EXPORTER``.
* :class:`ZipkinV1HttpSpanExporter` posts the same records to a Zipkin v1 API,
  as the original's deprecated in-app remote recorder did.
* :class:`LoggingSpanExporter` logs the records, for development.
* :class:`ServiceNamingSpanExporter` makes an exporter that reports the
  service from the span's resource (Zipkin v2, OTLP) use a given name.

They run behind a batching span processor, so none of them is ever called on
a request's path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import posix_ipc
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from bridge._otel_internals import zipkin_v2_encoder
from bridge.failures import FailureLog, one_line
from bridge.posix_queues import (
    MSG_MAX_PATH,
    MSGSIZE_MAX_PATH,
    explain_os_error,
    name_problem,
    read_limit,
)
from bridge.span_copy import copy_span
from bridge.zipkin_records import (
    DEBUG_ATTRIBUTE,
    SHARED_ATTRIBUTE,
    ZipkinRecordEncoder,
    local_ipv4,
)

logger = logging.getLogger(__name__)

#: What the sidecar queue asks for when it creates the queue (the original's sizes).
QUEUE_MAX_MESSAGES = 102400
QUEUE_MAX_MESSAGE_SIZE = 10000


def span_queue_path(name: str) -> str:
    """The POSIX queue ``/traces-<name>`` that spans of queue ``name`` go to.

    :raises ValueError: when the result can't name a queue (``name`` is
        empty, holds a slash, or is too long).
    """
    path = f"/traces-{name}"
    problem = name_problem(path) if name else "needs a non-empty queue name"
    if problem is not None:
        raise ValueError(f"the queue {path!r} {problem}")
    return path


def open_span_queue(name: str) -> posix_ipc.MessageQueue:
    """Open (creating if needed) the ``/traces-<name>`` queue for writing.

    An existing queue is used as it is. A new one gets the original's sizes;
    where the system's limits (``/proc/sys/fs/mqueue/msg_max`` and
    ``msgsize_max``) are lower, it gets the limits instead, with a warning,
    rather than failing the application's start.

    :raises ValueError: for a name that can't name a queue.
    :raises OSError: when the system refuses the queue; the message names
        the limit that was hit.
    """
    path = span_queue_path(name)

    def open_queue(max_messages: int, max_message_size: int) -> posix_ipc.MessageQueue:
        try:
            return posix_ipc.MessageQueue(
                path,
                flags=posix_ipc.O_CREAT,
                max_messages=max_messages,
                max_message_size=max_message_size,
                write=True,
                read=False,
            )
        except posix_ipc.PermissionsError as exc:
            raise PermissionError(f"no permission to open queue {path!r}: {exc}") from exc
        except OSError as exc:
            raise OSError(exc.errno, explain_os_error(path, exc)) from exc

    try:
        return open_queue(QUEUE_MAX_MESSAGES, QUEUE_MAX_MESSAGE_SIZE)
    except ValueError:
        pass  # over the system's sizes: ask for what they allow
    max_messages = _system_limit(MSG_MAX_PATH, QUEUE_MAX_MESSAGES)
    max_message_size = _system_limit(MSGSIZE_MAX_PATH, QUEUE_MAX_MESSAGE_SIZE)
    queue = open_queue(max_messages, max_message_size)
    logger.warning(
        "span queue %s created with %d messages of %d bytes: raise "
        "/proc/sys/fs/mqueue/msg_max and msgsize_max for the usual %d x %d",
        path,
        max_messages,
        max_message_size,
        QUEUE_MAX_MESSAGES,
        QUEUE_MAX_MESSAGE_SIZE,
    )
    return queue


def _system_limit(path: Path, requested: int) -> int:
    limit = read_limit(path)
    return requested if limit is None else min(requested, limit)


class _DropCounter:
    """Counts dropped spans; reports them by :class:`~bridge.failures.FailureLog`'s policy.

    The first drop of each kind is logged at warning level, the rest at
    debug level with a count: a sidecar that is not running fills the queue
    on every request, and one line says so.
    """

    def __init__(self) -> None:
        self.dropped_spans = 0
        self._lock = threading.Lock()
        self._failures = FailureLog(logger)

    def drop(self, count: int, why: str, kind: str | None = None) -> None:
        """Count ``count`` spans dropped because ``why``; ``kind`` (default ``why``) groups them."""
        with self._lock:
            self.dropped_spans += count
        self._failures.report(kind or why, f"dropped {count} span(s): {why}")


def _unlocked_sender(queue: posix_ipc.MessageQueue) -> Callable[[bytes], int]:
    """A non-blocking ``mq_send`` on ``queue`` that keeps the GIL; returns an errno or 0.

    posix_ipc releases the GIL around every send. An exporter thread that
    sends span by span then has to win the GIL back after each one, and
    while request threads are busy it rarely does: the export backlog
    grows without bound. A non-blocking send takes about a microsecond, so
    holding the GIL through it is cheaper for everyone. Falls back to
    posix_ipc where the C library cannot be found.
    """
    queue.block = False
    library = ctypes.util.find_library("rt") or ctypes.util.find_library("c")
    try:
        mq_send = ctypes.PyDLL(library, use_errno=True).mq_send
    except (OSError, AttributeError, TypeError):
        return _posix_ipc_sender(queue)
    mq_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint]
    mq_send.restype = ctypes.c_int
    descriptor = queue.mqd

    def send(message: bytes) -> int:
        if mq_send(descriptor, message, len(message), 0) == 0:
            return 0
        return ctypes.get_errno()

    return send


def _posix_ipc_sender(queue: posix_ipc.MessageQueue) -> Callable[[bytes], int]:
    def send(message: bytes) -> int:
        try:
            queue.send(message)
        except posix_ipc.BusyError:
            return errno.EAGAIN
        except ValueError:
            return errno.EMSGSIZE
        except posix_ipc.Error:
            return errno.EIO
        return 0

    return send


class PosixQueueSpanExporter(SpanExporter):
    """Writes one Zipkin record per sampled span onto ``/traces-<queue_name>``.

    Sends never wait: :attr:`dropped_spans` counts the spans the queue could
    not take (full, or a record larger than the queue's message size).
    """

    def __init__(self, queue_name: str, service_name: str, ipv4: str | None = None) -> None:
        self.encoder = ZipkinRecordEncoder(service_name, ipv4)
        self.queue = open_span_queue(queue_name)
        self._send = _unlocked_sender(self.queue)
        self._drops = _DropCounter()

    @property
    def dropped_spans(self) -> int:
        """Spans dropped because the queue was full or rejected them."""
        return self._drops.dropped_spans

    def _records(self, spans: Sequence[ReadableSpan]) -> Iterable[bytes]:
        """The records to send, one per span, all for :attr:`encoder`'s service."""
        return map(self.encoder.encode, spans)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Put each span's record on the queue without waiting."""
        for record in self._records(spans):
            error = self._send(record)
            if error == errno.EAGAIN:
                self._drops.drop(1, "the span queue is full (is the trace publisher running?)")
            elif error == errno.EMSGSIZE:
                self._drops.drop(
                    1,
                    f"a span record is longer than the queue's {self.queue.max_message_size} bytes",
                )
            elif error:
                self._drops.drop(1, f"the span queue rejected a record: {os.strerror(error)}")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the queue (it stays for the publisher to read)."""
        self.queue.close()


#: The variable naming the queue of :class:`SidecarSpanExporter`.
QUEUE_NAME_VARIABLE = "BASEPLATE_TRACES_QUEUE_NAME"
#: The trace publisher's queue when none is named.
DEFAULT_QUEUE_NAME = "main"
#: The service spans are reported under when their resource names none
#: (OpenTelemetry's own default).
UNKNOWN_SERVICE = "unknown_service"


class SidecarSpanExporter(PosixQueueSpanExporter):
    """The sidecar queue exporter, for OpenTelemetry's environment configuration.

    The SDK makes the exporters named in ``OTEL_TRACES_EXPORTER`` with no
    arguments, so this one reads its queue from
    ``BASEPLATE_TRACES_QUEUE_NAME`` (default ``main``, the trace publisher's
    default) and, unless given a service name, reports each span under its
    resource's ``service.name``, as the OTLP and Zipkin v2 exporters do.

    :param queue_name: The queue is ``/traces-<queue_name>``.
    :param service_name: Report every span under this name instead.
    """

    def __init__(
        self,
        queue_name: str | None = None,
        service_name: str | None = None,
        ipv4: str | None = None,
    ) -> None:
        queue_name = queue_name or os.environ.get(QUEUE_NAME_VARIABLE) or DEFAULT_QUEUE_NAME
        self.ipv4 = ipv4 or local_ipv4()
        super().__init__(queue_name, service_name or UNKNOWN_SERVICE, self.ipv4)
        self.fixed_service_name = service_name
        self._encoders: dict[str, ZipkinRecordEncoder] = {}

    def _encoder_for(self, service_name: str) -> ZipkinRecordEncoder:
        """The encoder of one service; made once, as its endpoint JSON is precomputed."""
        encoder = self._encoders.get(service_name)
        if encoder is None:
            encoder = self._encoders[service_name] = ZipkinRecordEncoder(service_name, self.ipv4)
        return encoder

    def _records(self, spans: Sequence[ReadableSpan]) -> Iterable[bytes]:
        """Each span's record, under its resource's service unless one was given."""
        if self.fixed_service_name is not None:
            return super()._records(spans)
        return (
            self._encoder_for(
                str(span.resource.attributes.get(SERVICE_NAME) or UNKNOWN_SERVICE)
            ).encode(span)
            for span in spans
        )


class ZipkinV1HttpSpanExporter(SpanExporter):
    """Posts Zipkin records to ``<endpoint>/api/v1/spans``, the legacy remote recorder.

    :param endpoint: ``host:port`` of the Zipkin (v1 API) server.
    :param timeout: Seconds to wait for each post.
    """

    def __init__(
        self, endpoint: str, service_name: str, timeout: float = 1.0, ipv4: str | None = None
    ) -> None:
        self.url = f"http://{endpoint}/api/v1/spans"
        self.timeout = timeout
        self.encoder = ZipkinRecordEncoder(service_name, ipv4)
        self._drops = _DropCounter()

    @property
    def dropped_spans(self) -> int:
        """Spans dropped because the post failed."""
        return self._drops.dropped_spans

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Post the batch as one JSON list."""
        body = json.dumps([self.encoder.record(span) for span in spans]).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            self._drops.drop(
                len(spans),
                f"posting to {self.url} failed: {one_line(str(exc))}",
                kind=f"post: {type(exc).__name__}",
            )
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


class LoggingSpanExporter(SpanExporter):
    """Logs each span's record at ``level``: traces with nowhere to go, for development."""

    def __init__(self, service_name: str, level: int = logging.DEBUG) -> None:
        self.encoder = ZipkinRecordEncoder(service_name, "127.0.0.1")
        self.level = level

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Log the records."""
        for span in spans:
            logger.log(self.level, "span: %s", json.dumps(self.encoder.record(span)))
        return SpanExportResult.SUCCESS


def _apply_baseplate_markers(encoded: dict[str, Any], attributes: Any) -> None:
    """Turn the facade's marker attributes into Zipkin v2's ``debug`` and ``shared``.

    The upstream encoder sets ``debug`` on every sampled span, which tells
    Zipkin each one was forced; only spans of traces with Baseplate's debug
    flag are. The markers are instructions to the encoder, not tags.
    """
    encoded.pop("debug", None)
    tags = encoded.get("tags")
    if tags is not None:
        tags.pop(DEBUG_ATTRIBUTE, None)
        tags.pop(SHARED_ATTRIBUTE, None)
        if not tags:
            del encoded["tags"]
    attributes = attributes or {}
    if attributes.get(DEBUG_ATTRIBUTE):
        encoded["debug"] = True
    if attributes.get(SHARED_ATTRIBUTE):
        encoded["shared"] = True


def zipkin_v2_exporter(endpoint: str) -> SpanExporter:
    """A Zipkin v2 JSON exporter whose output follows the v2 API's span schema.

    OpenTelemetry's Zipkin exporter writes ``"kind": null`` for internal spans
    and a zero duration for spans shorter than a microsecond; the v2 schema
    allows neither (kind is an enum, duration at least 1), so this encoder
    leaves an unknown kind out and rounds durations up to 1. It also marks
    ``debug`` only the spans of debug-flagged traces (not every sampled span)
    and ``shared`` the server spans that took their caller's span id.
    """
    from opentelemetry.exporter.zipkin.json import ZipkinExporter

    exporter = ZipkinExporter(endpoint=endpoint)
    exporter.encoder = zipkin_v2_encoder(exporter.encoder.max_tag_value_length, _conform_to_v2)
    return exporter


def _conform_to_v2(encoded: dict[str, Any], span: Any) -> None:
    """Make one span's Zipkin v2 JSON follow the schema and Baseplate's markers."""
    if encoded.get("kind") is None:
        encoded.pop("kind", None)
    encoded["duration"] = max(1, encoded.get("duration") or 0)
    _apply_baseplate_markers(encoded, span.attributes)


def reports_shared_spans(exporter: SpanExporter) -> bool:
    """Whether ``exporter`` reports Zipkin's ``shared`` flag (:func:`zipkin_v2_exporter`'s do).

    Marking a span as shared costs an attribute; it is only worth it on
    the spans of an exporter that reads the mark.
    """
    if isinstance(exporter, ServiceNamingSpanExporter):
        exporter = exporter.exporter
    return bool(getattr(getattr(exporter, "encoder", None), "reports_shared_spans", False))


class ServiceNamingSpanExporter(SpanExporter):
    """Exports spans under ``service_name``, whatever their resource says.

    A process has one tracer provider, and so one resource, but may hold
    several services (each test of an application's suite, an in-process
    client and server). Spans whose resource names another service are
    exported as copies naming this one; this happens in the exporting
    thread, off the request's path.
    """

    def __init__(self, exporter: SpanExporter, service_name: str) -> None:
        self.exporter = exporter
        self.service_name = service_name
        self._renamed: dict[int, tuple[Resource, Resource]] = {}

    def _resource_for(self, original: Resource) -> Resource:
        cached = self._renamed.get(id(original))
        if cached is not None and cached[0] is original:
            return cached[1]
        renamed = original.merge(Resource({SERVICE_NAME: self.service_name}))
        self._renamed[id(original)] = (original, renamed)
        return renamed

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export the spans, renamed where they name another service."""
        named = [
            span
            if span.resource.attributes.get(SERVICE_NAME) == self.service_name
            else copy_span(span, resource=self._resource_for(span.resource))
            for span in spans
        ]
        return self.exporter.export(named)

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.exporter.force_flush(timeout_millis)
