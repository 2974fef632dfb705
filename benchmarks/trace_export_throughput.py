"""Throughput of each trace export path.

Finished spans are built once, by running facade
requests (a server span and three client children, each with one tag and one
log) against an in-memory exporter. Every path is then fed the same spans, in
batches of 512 (the batching processor's default batch), through its
exporter's ``export()`` called directly, in alternating rounds:

* the baseline: an exporter that returns SUCCESS and does nothing;
* the Zipkin record encoding alone (``ZipkinRecordEncoder.encode`` for every
  span, nothing sent): the part of the sidecar path that is not the queue;
* sidecar: ``PosixQueueSpanExporter`` onto a real POSIX message queue made
  here at this machine's limits (10 messages of 8,192 bytes by default),
  drained concurrently by a reader thread in this process, and again by a
  reader process (the trace publisher is a separate process): spans the full
  queue refused are dropped, so arrived and dropped spans are counted too;
* Zipkin v2 (``zipkin_v2_exporter``), OTLP/HTTP (``OTLPSpanExporter``) and the
  legacy remote recorder (``ZipkinV1HttpSpanExporter``), posting to a stdlib
  ``ThreadingHTTPServer`` on 127.0.0.1 in this process that reads and
  discards each body and answers 200 or 202;
* sidecar with no reader at all (the publisher is down): after the first
  batch fills the queue, every span is refused -- the cost of a drop.

Run directly with ``--quick`` for a smaller, faster run.
"""

from __future__ import annotations

import gc
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from baseplate.core import Baseplate
from benchmarks import _trace_queues
from benchmarks.span_overhead import facade_workload
from bridge import provider
from bridge.export import PosixQueueSpanExporter, ZipkinV1HttpSpanExporter, zipkin_v2_exporter
from bridge.zipkin_records import ZipkinRecordEncoder

BATCH_SIZE = 512
FULL_QUEUE = "sidecar, no reader (queue full)"


class EncodeOnlyExporter(SpanExporter):
    """Encodes every span as the sidecar's Zipkin record and sends nothing."""

    def __init__(self) -> None:
        self.encoder = ZipkinRecordEncoder(_trace_queues.SERVICE_NAME, "127.0.0.1")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode = self.encoder.encode
        for span in spans:
            encode(span)
        return SpanExportResult.SUCCESS


# -- a collector that discards what it is sent --------------------------------


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real collector would

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.bytes_received += length  # type: ignore[attr-defined]
        status = 200 if self.path.startswith("/v1/traces") else 202
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def http_sink() -> Iterator[tuple[ThreadingHTTPServer, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SinkHandler)
    server.daemon_threads = True
    server.bytes_received = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="http-sink", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield server, f"{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- the spans ----------------------------------------------------------------


def build_spans(count: int) -> list[ReadableSpan]:
    """``count`` finished facade spans (a multiple of four: requests of four spans)."""
    provider.reset_state()
    provider.set_service_name(_trace_queues.SERVICE_NAME)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    facade_workload(Baseplate())(count // 4)
    spans = list(memory.get_finished_spans())
    provider.reset_state()
    return spans


# -- the export paths ---------------------------------------------------------


def _batches(spans: list[ReadableSpan]) -> list[list[ReadableSpan]]:
    return [spans[i : i + BATCH_SIZE] for i in range(0, len(spans), BATCH_SIZE)]


def _seconds_to_export(exporter: SpanExporter, batches: list[list[ReadableSpan]]) -> float:
    export = exporter.export
    start = time.perf_counter()
    for batch in batches:
        if export(batch) is not SpanExportResult.SUCCESS:
            raise RuntimeError(f"{type(exporter).__name__} failed to export a batch")
    return time.perf_counter() - start


def run_throughput(
    spans: list[ReadableSpan], rounds: int, queues: _trace_queues.Queues
) -> tuple[dict[str, float], dict[str, tuple[int, int, int]], dict[str, int]]:
    """Median spans/second per path; (sent, arrived, dropped) per sidecar; bytes per HTTP path."""
    batches = _batches(spans)
    readers: dict[str, _trace_queues.Reader] = {}
    exporters: dict[str, SpanExporter] = {}
    http_bytes: dict[str, int] = {}
    sent: dict[str, int] = {}
    arrived: dict[str, int] = {}
    with http_sink() as (server, endpoint):
        try:
            for label, reader_class in _trace_queues.READERS.items():
                name = queues.create(f"export-{label}")
                readers[f"sidecar, reader {label}"] = reader_class(name)
                exporters[f"sidecar, reader {label}"] = PosixQueueSpanExporter(
                    name, _trace_queues.SERVICE_NAME, ipv4="127.0.0.1"
                )
            # No reader: the queue fills on the first batch and every later span is refused.
            full_queue = queues.create("export-full")
            exporters[FULL_QUEUE] = PosixQueueSpanExporter(
                full_queue, _trace_queues.SERVICE_NAME, ipv4="127.0.0.1"
            )
            exporters["zipkin v2 (HTTP JSON)"] = zipkin_v2_exporter(
                f"http://{endpoint}/api/v2/spans"
            )
            exporters["otlp (HTTP protobuf)"] = _otlp_exporter(f"http://{endpoint}/v1/traces")
            exporters["remote (zipkin v1 HTTP)"] = ZipkinV1HttpSpanExporter(
                endpoint, _trace_queues.SERVICE_NAME, ipv4="127.0.0.1"
            )
            exporters["encode only (no I/O)"] = EncodeOnlyExporter()
            exporters["baseline (no-op)"] = _trace_queues.NoopExporter()
            names = list(exporters)

            # Warm up every path once (connections, imports); the warm-up counts as sent.
            for name in names:
                _seconds_to_export(exporters[name], batches[:1])
                if isinstance(exporters[name], PosixQueueSpanExporter):
                    sent[name] = len(batches[0])
            timings: dict[str, list[float]] = {name: [] for name in names}
            for round_number in range(rounds):
                order = names[round_number % len(names) :] + names[: round_number % len(names)]
                for name in order:
                    gc.collect()
                    bytes_before = server.bytes_received  # type: ignore[attr-defined]
                    seconds = _seconds_to_export(exporters[name], batches)
                    timings[name].append(len(spans) / seconds)
                    if name in readers:
                        readers[name].settle()  # drained before the next path runs
                    if name in sent:
                        sent[name] += len(spans)
                    received = server.bytes_received - bytes_before  # type: ignore[attr-defined]
                    if received:
                        http_bytes[name] = http_bytes.get(name, 0) + received
        finally:
            for name, reader in readers.items():
                arrived[name] = reader.close()
            for exporter in exporters.values():
                exporter.shutdown()

    sidecars: dict[str, tuple[int, int, int]] = {}
    for name, count in sent.items():
        exporter = exporters[name]
        assert isinstance(exporter, PosixQueueSpanExporter)
        # With no reader, what was not dropped is still on the queue.
        got = arrived.get(name, count - exporter.dropped_spans)
        sidecars[name] = (count, got, exporter.dropped_spans)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    per_span = {name: total // (len(spans) * rounds) for name, total in http_bytes.items()}
    return medians, sidecars, per_span


def _otlp_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def main(quick: bool = False) -> None:
    span_count, rounds = (2_000, 5) if quick else (4_000, 9)
    with _trace_queues.sidecar_queues() as queues:
        try:
            spans = build_spans(span_count)
            throughput, sidecars, http_bytes = run_throughput(spans, rounds, queues)
        finally:
            provider.reset_state()

    print(
        f"trace export throughput: {len(spans):,} facade spans in batches of {BATCH_SIZE} "
        f"through export() (median of {rounds} rounds; POSIX queues of "
        f"{queues.max_messages} x {queues.max_message_size} bytes)"
    )
    baseline = throughput["baseline (no-op)"]
    print(f"{'path':<40} {'spans/s':>12} {'µs/span':>9} {'x/baseline':>11} {'bytes/span':>10}")
    for name, rate in sorted(throughput.items(), key=lambda item: -item[1]):
        size = f"{http_bytes[name]:>10,}" if name in http_bytes else f"{'':>10}"
        print(f"{name:<40} {rate:>12,.0f} {1e6 / rate:>9.2f} {rate / baseline:>11.2e} {size}")
    _trace_queues.print_sidecars(sidecars)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
