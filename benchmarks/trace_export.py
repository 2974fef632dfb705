"""Throughput of each trace export path, and what the sidecar recorder costs a request.

Part 1, export throughput. Finished spans are built once, by running facade
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

Part 2, the request path. Simulated facade requests (server span from fresh
upstream ids, sampled, three children each with a tag and a log, as in
``span_overhead``) are timed, in alternating rounds, with the process's tracer
provider reset before each configuration:

* (a) a ``TracingClient`` for the sidecar (``make_client(exporter="sidecar")``:
  the bridge's ``BatchExportSpanProcessor`` feeding a
  ``PosixQueueSpanExporter``), the queue
  drained by a reader thread, and again by a reader process;
* (b) the SDK's own ``BatchSpanProcessor``, same queue size and delay, with a
  no-op exporter;
* no span processor beyond the bridge's own (the floor).

The batching processor exports on its own thread, so what (a) adds over (b)
is that thread's work competing with the request for the interpreter (and a
reader thread's, where the reader is one) -- or, where the exporter falls
behind, the spans piling up in the processor's queue. So each run also reports
the backlog (spans not yet given to the exporter when the requests end) and
how fast spans were given to it while the requests ran. Then one sustained
run per configuration ends more spans than the processor's queue holds, and
the spans it dropped are counted (at its metrics hook: its "Queue full"
warning is de-duplicated). The sidecar tables check sent = arrived + dropped;
the processor counts a drop when its queue is full as a span arrives, and the
exporter thread may take one out before it is appended, so the check can be
off by a few spans after a sustained run.

Run directly with ``--quick`` for a smaller, faster run.
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import posix_ipc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from baseplate.core import Baseplate
from baseplate.diagnostics.tracing import (
    DEFAULT_MAX_SPAN_QUEUE_SIZE,
    DEFAULT_SPAN_BATCH_INTERVAL,
    make_client,
)
from benchmarks.span_overhead import CHILD_NAMES, facade_workload
from bridge import provider
from bridge.batching import BatchExportSpanProcessor
from bridge.export import (
    PosixQueueSpanExporter,
    ZipkinV1HttpSpanExporter,
    zipkin_v2_exporter,
)
from bridge.zipkin_records import ZipkinRecordEncoder

SERVICE_NAME = "bench"
BATCH_SIZE = 512
#: The queue is made at the system's limits (or these, if the limits cannot be read).
DEFAULT_MSG_MAX = 10
DEFAULT_MSGSIZE_MAX = 8192

#: The loggers that warn of dropped spans: the batching processor's and the exporters'.
DROP_LOGGERS = ("opentelemetry.sdk._shared_internal", "bridge.export")
FULL_QUEUE = "sidecar, no reader (queue full)"

# A trace publisher stand-in: counts records until it reads the empty record,
# then prints how many it read.
_READER_PROCESS = """
import sys, posix_ipc
queue = posix_ipc.MessageQueue(sys.argv[1], read=True, write=False)
count = 0
while True:
    message, _ = queue.receive()
    if not message:
        break
    count += 1
print(count)
"""


class NoopExporter(SpanExporter):
    """Takes every span and does nothing with it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class EncodeOnlyExporter(SpanExporter):
    """Encodes every span as the sidecar's Zipkin record and sends nothing."""

    def __init__(self) -> None:
        self.encoder = ZipkinRecordEncoder(SERVICE_NAME, "127.0.0.1")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode = self.encoder.encode
        for span in spans:
            encode(span)
        return SpanExportResult.SUCCESS


# -- queues and their readers -------------------------------------------------


def _queue_limit(name: str, default: int) -> int:
    try:
        with open(f"/proc/sys/fs/mqueue/{name}") as limit:
            return int(limit.read())
    except (OSError, ValueError):
        return default


class Queues:
    """The POSIX queues this run made; all are unlinked by :meth:`unlink_all`."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.max_messages = _queue_limit("msg_max", DEFAULT_MSG_MAX)
        self.max_message_size = _queue_limit("msgsize_max", DEFAULT_MSGSIZE_MAX)

    def create(self, label: str) -> str:
        """Make ``/traces-<name>`` and return ``<name>``, the exporter's queue name."""
        name = f"bench-{os.getpid()}-{label}"
        queue = posix_ipc.MessageQueue(
            f"/traces-{name}",
            posix_ipc.O_CREX,
            max_messages=self.max_messages,
            max_message_size=self.max_message_size,
        )
        self.paths.append(queue.name)
        queue.close()
        return name

    def unlink_all(self) -> None:
        for path in self.paths:
            with suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_message_queue(path)
        self.paths.clear()


class ThreadReader:
    """Drains a queue from a thread of this process, counting what arrives."""

    def __init__(self, queue_name: str) -> None:
        self.queue = posix_ipc.MessageQueue(f"/traces-{queue_name}", read=True, write=False)
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        receive = self.queue.receive
        while not self._stop.is_set():
            try:
                receive(0.05)
            except posix_ipc.BusyError:
                continue
            self.received += 1

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until the queue is empty (everything sent so far was read)."""
        deadline = time.monotonic() + timeout
        while self.queue.current_messages and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> int:
        self.settle()
        self._stop.set()
        self._thread.join()
        self.queue.close()
        return self.received


class ProcessReader:
    """Drains a queue from a separate process, as the trace publisher does."""

    def __init__(self, queue_name: str) -> None:
        self.path = f"/traces-{queue_name}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", _READER_PROCESS, self.path], stdout=subprocess.PIPE, text=True
        )
        self.queue = posix_ipc.MessageQueue(self.path, read=False, write=True)

    def settle(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.queue.current_messages and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> int:
        """Stop the reader and return how many records it read."""
        try:
            self.queue.send(b"", timeout=5)
            out, _ = self.process.communicate(timeout=10)
            return int(out.strip() or 0)
        except (posix_ipc.Error, subprocess.TimeoutExpired, ValueError):
            self.process.kill()
            self.process.wait()
            return -1
        finally:
            self.queue.close()


Reader = ThreadReader | ProcessReader


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
    provider._reset_for_tests()
    provider.set_service_name(SERVICE_NAME)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    facade_workload(Baseplate())(count // 4)
    spans = list(memory.get_finished_spans())
    provider._reset_for_tests()
    return spans


# -- part 1: export throughput ------------------------------------------------


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
    spans: list[ReadableSpan], rounds: int, queues: Queues
) -> tuple[dict[str, float], dict[str, tuple[int, int, int]], dict[str, int]]:
    """Median spans/second per path; (sent, arrived, dropped) per sidecar; bytes per HTTP path."""
    batches = _batches(spans)
    readers: dict[str, Reader] = {}
    exporters: dict[str, SpanExporter] = {}
    http_bytes: dict[str, int] = {}
    sent: dict[str, int] = {}
    arrived: dict[str, int] = {}
    with http_sink() as (server, endpoint):
        try:
            for label, reader_class in (("thread", ThreadReader), ("process", ProcessReader)):
                name = queues.create(f"export-{label}")
                readers[f"sidecar, reader {label}"] = reader_class(name)
                exporters[f"sidecar, reader {label}"] = PosixQueueSpanExporter(
                    name, SERVICE_NAME, ipv4="127.0.0.1"
                )
            # No reader: the queue fills on the first batch and every later span is refused.
            full_queue = queues.create("export-full")
            exporters[FULL_QUEUE] = PosixQueueSpanExporter(
                full_queue, SERVICE_NAME, ipv4="127.0.0.1"
            )
            exporters["zipkin v2 (HTTP JSON)"] = zipkin_v2_exporter(
                f"http://{endpoint}/api/v2/spans"
            )
            exporters["otlp (HTTP protobuf)"] = _otlp_exporter(f"http://{endpoint}/v1/traces")
            exporters["remote (zipkin v1 HTTP)"] = ZipkinV1HttpSpanExporter(
                endpoint, SERVICE_NAME, ipv4="127.0.0.1"
            )
            exporters["encode only (no I/O)"] = EncodeOnlyExporter()
            exporters["baseline (no-op)"] = NoopExporter()
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


# -- part 2: the request path -------------------------------------------------


class Configured:
    """One configuration of the process's tracer provider, ready to serve requests."""

    def __init__(
        self,
        baseplate: Baseplate,
        batch: BatchSpanProcessor | BatchExportSpanProcessor | None = None,
        recorder: PosixQueueSpanExporter | None = None,
    ) -> None:
        self.baseplate = baseplate
        self.batch = batch
        self.recorder = recorder
        self._sdk_drops = 0
        if isinstance(batch, BatchSpanProcessor):
            # The SDK processor's warning is de-duplicated, so count at its metrics
            # hook, which is called once for every span it drops.
            metrics = batch._batch_processor._metrics
            drop_items = metrics.drop_items

            def counting_drop_items(count: int, *args: Any, **kwargs: Any) -> None:
                self._sdk_drops += count
                drop_items(count, *args, **kwargs)

            metrics.drop_items = counting_drop_items  # type: ignore[method-assign]

    @property
    def bsp_drops(self) -> int:
        """Spans the batching processor dropped."""
        if isinstance(self.batch, BatchExportSpanProcessor):
            return self.batch.dropped_spans
        return self._sdk_drops

    def backlog(self) -> int:
        """Spans the batching processor holds, not yet given to its exporter."""
        if self.batch is None:
            return 0
        if isinstance(self.batch, BatchExportSpanProcessor):
            return self.batch.queued()
        return len(self.batch._batch_processor._queue)


def _configure_sidecar(queue_name: str) -> Configured:
    client = make_client(
        SERVICE_NAME, exporter="sidecar", tracing_queue_name=queue_name, sample_rate=1.0
    )
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    client.install()
    assert isinstance(client.processor, BatchExportSpanProcessor)
    assert isinstance(client.recorder, PosixQueueSpanExporter)
    return Configured(baseplate, client.processor, client.recorder)


def _configure_sdk_batch() -> Configured:
    provider.set_service_name(SERVICE_NAME)
    batch = BatchSpanProcessor(
        NoopExporter(),
        max_queue_size=DEFAULT_MAX_SPAN_QUEUE_SIZE,
        schedule_delay_millis=DEFAULT_SPAN_BATCH_INTERVAL.total_seconds() * 1000,
    )
    provider.add_span_processor(batch)
    return Configured(Baseplate(), batch)


def _configure_nothing() -> Configured:
    provider.set_service_name(SERVICE_NAME)
    return Configured(Baseplate())


SDK_BATCH = "(b) SDK BatchSpanProcessor + no-op"
SPANS_PER_REQUEST = 1 + len(CHILD_NAMES)


@dataclass
class Served:
    """What one stretch of requests under one configuration did."""

    microseconds_per_request: float
    backlog: int  # spans not yet handed to the exporter when the requests ended
    exported_per_second: float  # spans handed to the exporter while the requests ran
    bsp_drops: int  # spans the batching processor dropped, its queue full
    sent: int  # spans the sidecar exporter was given (0 for the others)
    queue_drops: int  # of those, spans the POSIX queue refused
    batched: bool  # whether a batching processor was installed


def _serve(configure: Callable[[], Configured], warm_up: int, requests: int) -> Served:
    provider._reset_for_tests()
    configured = configure()
    facade = facade_workload(configured.baseplate)
    facade(warm_up)
    gc.collect()
    exported_before = warm_up * SPANS_PER_REQUEST - configured.backlog()
    start = time.perf_counter()
    facade(requests)
    seconds = time.perf_counter() - start
    backlog = configured.backlog()
    provider._reset_for_tests()  # shuts down: the processor exports what it still holds
    exported = (warm_up + requests) * SPANS_PER_REQUEST - backlog - exported_before
    drops = configured.bsp_drops
    recorder = configured.recorder
    return Served(
        microseconds_per_request=seconds * 1e6 / requests,
        backlog=backlog,
        exported_per_second=exported / seconds,
        bsp_drops=drops,
        sent=0 if recorder is None else (warm_up + requests) * SPANS_PER_REQUEST - drops,
        queue_drops=0 if recorder is None else recorder.dropped_spans,
        batched=configured.batch is not None,
    )


def run_request_path(
    rounds: int, requests: int, sustained: int, queues: Queues
) -> tuple[dict[str, Served], dict[str, Served], dict[str, tuple[int, int, int]]]:
    """Per configuration, the medians over the rounds and the sustained run;
    (sent, arrived, dropped) per sidecar queue over both."""
    readers: dict[str, Reader] = {}
    configurations: dict[str, Callable[[], Configured]] = {}
    arrived: dict[str, int] = {}
    served: dict[str, list[Served]] = {}
    long_runs: dict[str, Served] = {}
    try:
        for label, reader_class in (("thread", ThreadReader), ("process", ProcessReader)):
            queue_name = queues.create(f"request-{label}")
            name = f"(a) sidecar, reader {label}"
            readers[name] = reader_class(queue_name)
            configurations[name] = lambda queue_name=queue_name: _configure_sidecar(queue_name)
        configurations[SDK_BATCH] = _configure_sdk_batch
        configurations["no exporter (floor)"] = _configure_nothing
        names = list(configurations)
        served = {name: [] for name in names}
        warm_up = max(1, requests // 10)
        for round_number in range(rounds):
            order = names[round_number % len(names) :] + names[: round_number % len(names)]
            for name in order:
                served[name].append(_serve(configurations[name], warm_up, requests))
                if name in readers:
                    readers[name].settle()
        for name in names:
            long_runs[name] = _serve(configurations[name], warm_up, sustained)
            if name in readers:
                readers[name].settle()
    finally:
        provider._reset_for_tests()
        for name, reader in readers.items():
            arrived[name] = reader.close()

    medians = {
        name: Served(
            microseconds_per_request=statistics.median(
                run.microseconds_per_request for run in runs
            ),
            backlog=int(statistics.median(run.backlog for run in runs)),
            exported_per_second=statistics.median(run.exported_per_second for run in runs),
            bsp_drops=sum(run.bsp_drops for run in runs),
            sent=sum(run.sent for run in runs),
            queue_drops=sum(run.queue_drops for run in runs),
            batched=runs[0].batched,
        )
        for name, runs in served.items()
    }
    sidecars = {
        name: (
            medians[name].sent + long_runs[name].sent,
            arrived[name],
            medians[name].queue_drops + long_runs[name].queue_drops,
        )
        for name in readers
    }
    return medians, long_runs, sidecars


# -- reporting ----------------------------------------------------------------


def _print_sidecars(sidecars: dict[str, tuple[int, int, int]]) -> None:
    print(f"{'sidecar queue':<40} {'sent':>9} {'arrived':>9} {'dropped':>9} {'arrived %':>9}")
    for name, (sent, arrived, dropped) in sidecars.items():
        share = 100 * arrived / sent if sent else 0.0
        unaccounted = sent - arrived - dropped
        note = f"  ({unaccounted:+,} unaccounted)" if unaccounted else ""
        print(f"{name:<40} {sent:>9,} {arrived:>9,} {dropped:>9,} {share:>8.1f}%{note}")


def _print_served(results: dict[str, Served], reference: Served) -> None:
    print(
        f"{'configuration':<40} {'µs/req':>9} {'x/(b)':>7} {'backlog':>9} "
        f"{'exported/s':>11} {'BSP drops':>10}"
    )
    for name, result in results.items():
        value = result.microseconds_per_request
        ratio = value / reference.microseconds_per_request
        exported = f"{result.exported_per_second:>11,.0f}" if result.batched else f"{'-':>11}"
        print(
            f"{name:<40} {value:>9.2f} {ratio:>6.2f}x {result.backlog:>9,} "
            f"{exported} {result.bsp_drops:>10,}"
        )


def main(quick: bool = False) -> None:
    if quick:
        span_count, export_rounds, request_rounds, requests = 2_000, 5, 5, 1_000
    else:
        span_count, export_rounds, request_rounds, requests = 4_000, 9, 9, 5_000
    # Enough spans to overflow the batching processor's queue if its exporter falls behind.
    sustained = DEFAULT_MAX_SPAN_QUEUE_SIZE // SPANS_PER_REQUEST + requests
    # Drops are counted and reported below: keep their warnings off stderr.
    quiet = logging.NullHandler()
    loggers = [logging.getLogger(name) for name in DROP_LOGGERS]
    for logger in loggers:
        logger.addHandler(quiet)
    queues = Queues()
    try:
        spans = build_spans(span_count)
        throughput, export_sidecars, http_bytes = run_throughput(spans, export_rounds, queues)
        request_path, long_runs, request_sidecars = run_request_path(
            request_rounds, requests, sustained, queues
        )
    finally:
        provider._reset_for_tests()
        queues.unlink_all()
        for logger in loggers:
            logger.removeHandler(quiet)

    print(
        f"trace export throughput: {len(spans):,} facade spans in batches of {BATCH_SIZE} "
        f"through export() (median of {export_rounds} rounds; POSIX queues of "
        f"{queues.max_messages} x {queues.max_message_size} bytes)"
    )
    baseline = throughput["baseline (no-op)"]
    print(f"{'path':<40} {'spans/s':>12} {'µs/span':>9} {'x/baseline':>11} {'bytes/span':>10}")
    for name, rate in sorted(throughput.items(), key=lambda item: -item[1]):
        size = f"{http_bytes[name]:>10,}" if name in http_bytes else f"{'':>10}"
        print(f"{name:<40} {rate:>12,.0f} {1e6 / rate:>9.2f} {rate / baseline:>11.2e} {size}")
    _print_sidecars(export_sidecars)
    print()

    print(
        f"sidecar recorder on the request path: server span + 3 children, tag + log each, "
        f"sampled (median of {request_rounds} rounds x {requests:,} requests; backlog: of the "
        f"{requests * SPANS_PER_REQUEST:,} spans, those not yet given to the exporter when the "
        f"requests end; exported/s: spans given to it while they ran)"
    )
    _print_served(request_path, request_path[SDK_BATCH])
    print(
        f"sustained: one run of {sustained:,} requests each "
        f"({sustained * SPANS_PER_REQUEST:,} spans; the batching queue holds "
        f"{DEFAULT_MAX_SPAN_QUEUE_SIZE:,})"
    )
    _print_served(long_runs, long_runs[SDK_BATCH])
    _print_sidecars(request_sidecars)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
