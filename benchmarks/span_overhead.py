"""Per-request cost of Baseplate's span facade against the bare OpenTelemetry SDK.

One simulated request is a server span made from upstream trace ids (fresh
random ids for every request), started, with three client child spans each
started, given one tag and one log, and finished; then the server span is
finished. Baseplate's metrics observer sends the request's batch to a UDP
socket on 127.0.0.1 that is never read, and every span goes through a
``SimpleSpanProcessor`` with an exporter that does nothing.

In the same run, taking turns in short blocks, the same work is done by hand:

* the bare SDK: a separate ``TracerProvider`` (not the global one) with the
  same no-op exporter, a server span under a remote parent built from the
  upstream ids and made current, and three children (also made current, as
  the facade's are) each with one attribute and one event;
* the bare SDK plus the same statsd batch written directly with
  :mod:`baseplate.metrics` (server timer and counter, three client timers and
  counters, one flush) -- the facade's overhead over doing the same work by
  hand;
* no instrumentation at all: three trivial calls, the floor.

Then memory: many facade requests in a bounded loop under ``tracemalloc``,
comparing traced memory after a warm-up with traced memory at the end, and
the bridge's span-owner registry, which must be empty once every span ended.

Run directly with ``--quick`` for a smaller, faster run.
"""

from __future__ import annotations

import gc
import socket
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from baseplate import metrics_client_from_config
from baseplate.core import Baseplate, ServerSpan, TraceInfo
from baseplate.metrics import Client
from bridge import processor, provider
from bridge.ids import random_id

CHILD_NAMES = ("users.get", "cache.get", "db.query")
SERVER_NAME = "handler"

#: The project's target: the facade adds at most this much over the same work by hand.
TARGET_OVERHEAD = 1.25
#: Memory growth over the measured stretch below this counts as flat.
FLAT_GROWTH_BYTES = 1024 * 1024

Workload = Callable[[int], None]


class NoopExporter(SpanExporter):
    """Takes every span and does nothing with it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Context:
    """A request's context object, as a framework integration would make it."""


# -- the workloads ------------------------------------------------------------


def start_facade_request(baseplate: Baseplate) -> ServerSpan:
    """One simulated request: its server span, started, with its children done.

    The caller finishes it, after whatever else it wants the request to do.
    """
    trace_info = TraceInfo.from_upstream(
        random_id(), random_id(), random_id(), sampled=True, flags=None
    )
    server = baseplate.make_server_span(_Context(), SERVER_NAME, trace_info)
    server.start()
    for name in CHILD_NAMES:
        child = server.make_child(name)
        child.start()
        child.set_tag("peer.service", name)
        child.log("response", "ok")
        child.finish()
    return server


def facade_workload(baseplate: Baseplate) -> Workload:
    """Simulated requests through the facade (shared with the other benchmarks)."""

    def facade(n: int) -> None:
        for _ in range(n):
            start_facade_request(baseplate).finish()

    return facade


def _sdk_request(tracer: trace.Tracer) -> None:
    remote_parent = trace.SpanContext(
        random_id(),
        random_id(),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    parent_context = trace.set_span_in_context(trace.NonRecordingSpan(remote_parent))
    server = tracer.start_span(SERVER_NAME, context=parent_context, kind=trace.SpanKind.SERVER)
    server_token = otel_context.attach(trace.set_span_in_context(server))
    for name in CHILD_NAMES:
        child = tracer.start_span(name, kind=trace.SpanKind.CLIENT)
        child_token = otel_context.attach(trace.set_span_in_context(child))
        child.set_attribute("peer.service", name)
        child.add_event("response", {"payload": "ok"})
        child.end()
        otel_context.detach(child_token)
    server.end()
    otel_context.detach(server_token)


def _sdk_workload(tracer: trace.Tracer) -> Workload:
    def sdk(n: int) -> None:
        for _ in range(n):
            _sdk_request(tracer)

    return sdk


def _sdk_metrics_workload(tracer: trace.Tracer, client: Client) -> Workload:
    client_names = [(f"clients.{name}", f"clients.{name}.success") for name in CHILD_NAMES]
    server_timer_name = f"server.{SERVER_NAME}"
    server_counter_name = f"server.{SERVER_NAME}.success"

    def sdk_metrics(n: int) -> None:
        for _ in range(n):
            remote_parent = trace.SpanContext(
                random_id(),
                random_id(),
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
            batch = client.batch()
            server_timer = batch.timer(server_timer_name)
            server_timer.start()
            parent_context = trace.set_span_in_context(trace.NonRecordingSpan(remote_parent))
            server = tracer.start_span(
                SERVER_NAME, context=parent_context, kind=trace.SpanKind.SERVER
            )
            server_token = otel_context.attach(trace.set_span_in_context(server))
            for name, (timer_name, counter_name) in zip(CHILD_NAMES, client_names, strict=True):
                child_timer = batch.timer(timer_name)
                child_timer.start()
                child = tracer.start_span(name, kind=trace.SpanKind.CLIENT)
                child_token = otel_context.attach(trace.set_span_in_context(child))
                child.set_attribute("peer.service", name)
                child.add_event("response", {"payload": "ok"})
                child_timer.stop()
                batch.counter(counter_name).increment()
                child.end()
                otel_context.detach(child_token)
            server_timer.stop()
            batch.counter(server_counter_name).increment()
            batch.flush()
            server.end()
            otel_context.detach(server_token)

    return sdk_metrics


def _nothing(name: str) -> str:
    return name


def _none_workload(n: int) -> None:
    for _ in range(n):
        for name in CHILD_NAMES:
            _nothing(name)


# -- measuring ----------------------------------------------------------------


def _microseconds_per_request(workload: Workload, requests: int) -> float:
    start = time.perf_counter()
    workload(requests)
    return (time.perf_counter() - start) * 1e6 / requests


def _metrics_client(endpoint: str) -> Client:
    return metrics_client_from_config({"metrics.namespace": "bench", "metrics.endpoint": endpoint})


def _facade_baseplate(endpoint: str) -> Baseplate:
    """A Baseplate sending metrics to ``endpoint``; its spans go to a no-op exporter."""
    provider.add_span_processor(SimpleSpanProcessor(NoopExporter()))
    baseplate = Baseplate()
    baseplate.configure_metrics(_metrics_client(endpoint))
    return baseplate


#: How many parts the timed run is cut into to show how steady the ratios were.
PARTS = 5


def run_timing(
    baseplate: Baseplate, rounds: int, requests: int, endpoint: str
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Return each workload's mean µs per request, and the facade's ratio to it in each part.

    The workloads take turns in short blocks of ``requests`` requests (the
    order rotating every round), so whatever the machine is doing at any
    moment slows them alike: its speed drifts by tens of percent over
    seconds, far more than the difference being measured. Ratios are of total
    times, so garbage collection, which runs when it falls due, is counted
    where it happens. The rounds are also cut into :data:`PARTS` consecutive
    parts with a ratio each, to show how steady the result was.
    """
    sdk_provider = TracerProvider()
    sdk_provider.add_span_processor(SimpleSpanProcessor(NoopExporter()))
    tracer = sdk_provider.get_tracer("bench")
    client = _metrics_client(endpoint)
    workloads: dict[str, Workload] = {
        "facade": facade_workload(baseplate),
        "sdk": _sdk_workload(tracer),
        "sdk+metrics": _sdk_metrics_workload(tracer, client),
        "none": _none_workload,
    }
    names = list(workloads)
    for workload in workloads.values():  # warm up every path
        workload(100)
    gc.collect()
    timings: dict[str, list[float]] = {name: [] for name in names}
    try:
        for round_number in range(rounds):
            order = names[round_number % len(names) :] + names[: round_number % len(names)]
            for name in order:
                timings[name].append(_microseconds_per_request(workloads[name], requests))
    finally:
        sdk_provider.shutdown()
    means = {name: statistics.fmean(values) for name, values in timings.items()}
    part = -(-rounds // PARTS)
    part_ratios = {
        name: [
            sum(timings["facade"][start : start + part]) / sum(values[start : start + part])
            for start in range(0, rounds, part)
        ]
        for name, values in timings.items()
    }
    return means, part_ratios


def run_memory(baseplate: Baseplate, requests: int, warm_up: int) -> tuple[int, int, int]:
    """Traced memory after the warm-up and at the end, and the live owner count.

    Tracing starts once the warm-up is done (the warm-up runs at full speed;
    tracemalloc makes each request about three times slower), so what is
    traced at the end is what the measured requests left behind.
    """
    facade = facade_workload(baseplate)
    facade(warm_up)
    gc.collect()
    tracemalloc.start()
    try:
        after_warm_up, _ = tracemalloc.get_traced_memory()
        facade(requests - warm_up)
        gc.collect()
        at_end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after_warm_up, at_end, processor.live_owner_count()


def main(quick: bool = False) -> None:
    if quick:
        rounds, requests, memory_requests, warm_up = 600, 10, 20_000, 2_000
    else:
        rounds, requests, memory_requests, warm_up = 3_000, 10, 200_000, 20_000
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    host, port = sink.getsockname()
    endpoint = f"{host}:{port}"
    try:
        baseplate = _facade_baseplate(endpoint)
        means, part_ratios = run_timing(baseplate, rounds, requests, endpoint)
        memory = run_memory(baseplate, memory_requests, warm_up)
    finally:
        sink.close()

    print(
        f"span facade overhead: server span + 3 children, tag + log each "
        f"({rounds:,} rounds of {requests} requests per workload, taking turns; "
        f"mean µs/request, ratios of total time)"
    )
    print(f"{'workload':<40} {'µs/req':>9} {'facade/x':>9}")
    rows = [
        ("baseplate facade + metrics observer", "facade"),
        ("(ii) bare SDK + hand-written metrics", "sdk+metrics"),
        ("(i) bare SDK spans only", "sdk"),
        ("no instrumentation (floor)", "none"),
    ]
    for label, name in rows:
        print(f"{label:<40} {means[name]:>9.2f} {means['facade'] / means[name]:>8.2f}x")
    ratio = means["facade"] / means["sdk+metrics"]
    verdict = "met" if ratio <= TARGET_OVERHEAD else "NOT met"
    parts = part_ratios["sdk+metrics"]
    print(
        f"target: facade <= {TARGET_OVERHEAD:.2f}x (bare SDK + metrics): {verdict} "
        f"({ratio:.2f}x, {min(parts):.2f}-{max(parts):.2f}x in the {len(parts)} parts of the run, "
        f"+{means['facade'] - means['sdk+metrics']:.2f} µs/request)"
    )

    after_warm_up, at_end, live_owners = memory
    growth = at_end - after_warm_up
    flat = "flat" if growth < FLAT_GROWTH_BYTES else "GROWING"
    print(
        f"memory over {memory_requests:,} facade requests (tracemalloc, after {warm_up:,} "
        f"warm-up): {after_warm_up / 1024:,.1f} KiB -> {at_end / 1024:,.1f} KiB, "
        f"growth {growth / 1024:+,.1f} KiB ({flat}, limit {FLAT_GROWTH_BYTES // 1024:,} KiB)"
    )
    owners = "ok" if live_owners == 0 else "LEAK"
    print(f"live span owners after the run: {live_owners} ({owners})")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
