"""What the sidecar recorder costs a request.

Simulated facade requests (server span from fresh
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
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace.export import BatchSpanProcessor

from baseplate.core import Baseplate
from baseplate.diagnostics.tracing import (
    DEFAULT_MAX_SPAN_QUEUE_SIZE,
    DEFAULT_SPAN_BATCH_INTERVAL,
    make_client,
)
from benchmarks import _trace_queues
from benchmarks.span_overhead import CHILD_NAMES, facade_workload
from bridge import provider
from bridge.batching import BatchExportSpanProcessor
from bridge.export import PosixQueueSpanExporter


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
        _trace_queues.SERVICE_NAME,
        exporter="sidecar",
        tracing_queue_name=queue_name,
        sample_rate=1.0,
    )
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    client.install()
    assert isinstance(client.processor, BatchExportSpanProcessor)
    assert isinstance(client.recorder, PosixQueueSpanExporter)
    return Configured(baseplate, client.processor, client.recorder)


def _configure_sdk_batch() -> Configured:
    provider.set_service_name(_trace_queues.SERVICE_NAME)
    batch = BatchSpanProcessor(
        _trace_queues.NoopExporter(),
        max_queue_size=DEFAULT_MAX_SPAN_QUEUE_SIZE,
        schedule_delay_millis=DEFAULT_SPAN_BATCH_INTERVAL.total_seconds() * 1000,
    )
    provider.add_span_processor(batch)
    return Configured(Baseplate(), batch)


def _configure_nothing() -> Configured:
    provider.set_service_name(_trace_queues.SERVICE_NAME)
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
    provider.reset_state()
    configured = configure()
    facade = facade_workload(configured.baseplate)
    facade(warm_up)
    gc.collect()
    exported_before = warm_up * SPANS_PER_REQUEST - configured.backlog()
    start = time.perf_counter()
    facade(requests)
    seconds = time.perf_counter() - start
    backlog = configured.backlog()
    provider.reset_state()  # shuts down: the processor exports what it still holds
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
    rounds: int, requests: int, sustained: int, queues: _trace_queues.Queues
) -> tuple[dict[str, Served], dict[str, Served], dict[str, tuple[int, int, int]]]:
    """Per configuration, the medians over the rounds and the sustained run;
    (sent, arrived, dropped) per sidecar queue over both."""
    readers: dict[str, _trace_queues.Reader] = {}
    configurations: dict[str, Callable[[], Configured]] = {}
    arrived: dict[str, int] = {}
    served: dict[str, list[Served]] = {}
    long_runs: dict[str, Served] = {}
    try:
        for label, reader_class in _trace_queues.READERS.items():
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
        provider.reset_state()
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
    rounds, requests = (5, 1_000) if quick else (9, 5_000)
    # Enough spans to overflow the batching processor's queue if its exporter falls behind.
    sustained = DEFAULT_MAX_SPAN_QUEUE_SIZE // SPANS_PER_REQUEST + requests
    with _trace_queues.sidecar_queues() as queues:
        try:
            request_path, long_runs, sidecars = run_request_path(
                rounds, requests, sustained, queues
            )
        finally:
            provider.reset_state()

    print(
        f"sidecar recorder on the request path: server span + 3 children, tag + log each, "
        f"sampled (median of {rounds} rounds x {requests:,} requests; backlog: of the "
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
    _trace_queues.print_sidecars(sidecars)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
