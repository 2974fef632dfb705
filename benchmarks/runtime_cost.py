"""What counting each request's runtime cost adds to a request, with and without it.

``baseplate-serve`` counts, for every request, its CPU time, its yields to
the hub and its longest run (:mod:`bridge.greenlet_cost`, through
:func:`baseplate.core._spans.count_runtime_cost`). Two workloads, each run
with the counting on and off, taking turns in short blocks in the same run
(in a greenlet of gevent's hub, as a server runs its requests):

* **span workload**: the request of :mod:`benchmarks.span_overhead` (a server
  span from upstream ids with three client children, each tagged and
  logged; the metrics batch to a UDP socket nobody reads; every span through a
  ``SimpleSpanProcessor`` with a no-op exporter). It never yields, so this is
  the cost of beginning and ending the count and recording its figures;
* **yielding workload**: the same request, with :data:`YIELDS` switches to
  the hub (``gevent.sleep(0)``) in the server span, as a request waiting for
  its clients makes: adds the cost of following each switch.

Run directly with ``--quick`` for a smaller, faster run.
"""

from __future__ import annotations

import gc
import socket
import statistics
import sys
import time
from collections.abc import Callable

import gevent

from baseplate.core import Baseplate
from baseplate.core._spans import CPU_TIMER_SUFFIX, count_runtime_cost
from benchmarks.span_overhead import SERVER_NAME, _facade_baseplate, start_facade_request
from bridge._otel_internals import add_number_attributes
from bridge.greenlet_cost import CPU_TIME_ATTRIBUTE, GreenletCostTracker

#: The budget: counting adds at most this many µs to a request of the span workload.
BUDGET_MICROSECONDS = 3.0
#: Switches to the hub in each request of the yielding workload.
YIELDS = 4

Workload = Callable[[int], None]


class _Context:
    pass


def _workload(baseplate: Baseplate, yields: int) -> Workload:
    def requests(n: int) -> None:
        for _ in range(n):
            server = start_facade_request(baseplate)
            for _ in range(yields):
                gevent.sleep(0)
            server.finish()

    return requests


def _counted(tracker: GreenletCostTracker, on: bool, workload: Workload) -> Workload:
    def run(n: int) -> None:
        if on:
            tracker.install()
            count_runtime_cost(tracker)
        try:
            workload(n)
        finally:
            if on:
                count_runtime_cost(None)
                tracker.uninstall()

    return run


def _counting_happens(baseplate: Baseplate, tracker: GreenletCostTracker) -> bool:
    """Whether a request run with the counting on carries its figures (a sanity check)."""
    tracker.install()
    count_runtime_cost(tracker)
    try:
        span = baseplate.make_server_span(_Context(), SERVER_NAME)
        span.start()
        span.finish()
    finally:
        count_runtime_cost(None)
        tracker.uninstall()
    attributes = getattr(span.otel_span, "attributes", None) or {}
    return CPU_TIME_ATTRIBUTE in attributes


def steps_cost(baseplate: Baseplate, repeats: int = 7, n: int = 20_000) -> dict[str, float]:
    """µs per request of each step the counting adds, timed alone (best of ``repeats``).

    Far steadier than the difference of two whole requests on a noisy
    machine: what a request pays for the counting, without the request.
    """
    tracker = GreenletCostTracker(gevent.get_hub())
    tracker.install()
    try:
        span = baseplate.make_server_span(_Context(), SERVER_NAME)
        span.start()
        otel_span = span.otel_span
        cost = tracker.begin(1)
        assert cost is not None and otel_span is not None
        tracker.end(cost)
        batch = span.context.metrics

        def begin_end() -> None:
            counted = tracker.begin(1)
            assert counted is not None
            tracker.end(counted)

        steps: dict[str, Callable[[], object]] = {
            "begin + end": begin_end,
            "attributes": lambda: add_number_attributes(otel_span, cost.attributes()),
            "timer": lambda: batch.timer("server.x" + CPU_TIMER_SUFFIX).send(cost.cpu_time),
        }
        best = {}
        for name, step in steps.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in range(n):
                    step()
                times.append((time.perf_counter() - start) * 1e6 / n)
            best[name] = min(times)
        span.finish()
    finally:
        tracker.uninstall()
    return best


def run_timing(baseplate: Baseplate, rounds: int, requests: int) -> dict[str, float]:
    """Mean µs per request of each workload, on and off, taking turns in blocks."""
    tracker = GreenletCostTracker(gevent.get_hub())
    workloads: dict[str, Workload] = {}
    for label, yields in (("span", 0), ("yielding", YIELDS)):
        plain = _workload(baseplate, yields)
        workloads[f"{label} off"] = _counted(tracker, False, plain)
        workloads[f"{label} on"] = _counted(tracker, True, plain)
    names = list(workloads)
    for workload in workloads.values():
        workload(100)
    gc.collect()
    totals: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        order = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in order:
            start = time.perf_counter()
            workloads[name](requests)
            totals[name].append((time.perf_counter() - start) * 1e6 / requests)
    return {name: statistics.fmean(values) for name, values in totals.items()}


def main(quick: bool = False) -> None:
    # Blocks long enough that turning the counting on and off between them costs nothing.
    rounds, requests = (200, 50) if quick else (1_000, 50)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    host, port = sink.getsockname()
    try:
        baseplate = _facade_baseplate(f"{host}:{port}")
        tracker = GreenletCostTracker(gevent.get_hub())
        counted = gevent.spawn(_counting_happens, baseplate, tracker).get()
        means = gevent.spawn(run_timing, baseplate, rounds, requests).get()
        steps = gevent.spawn(steps_cost, baseplate).get()
    finally:
        sink.close()

    print(
        f"runtime cost counting: {rounds:,} rounds of {requests} requests per workload, "
        f"taking turns (mean µs/request)"
    )
    print(f"{'workload':<44} {'off':>8} {'on':>8} {'added':>8}")
    for label, title in (
        ("span", "span workload (no yields)"),
        ("yielding", f"span workload + {YIELDS} yields to the hub"),
    ):
        off, on = means[f"{label} off"], means[f"{label} on"]
        print(f"{title:<44} {off:>8.2f} {on:>8.2f} {on - off:>+8.2f}")
    added = means["span on"] - means["span off"]
    per_switch = (means["yielding on"] - means["yielding off"] - added) / (2 * YIELDS)
    print(f"about {per_switch:.2f} µs per switch followed (each yield is two switches)")
    print(
        "the counting's steps alone (best µs per request): "
        + ", ".join(f"{name} {value:.2f}" for name, value in steps.items())
    )
    total = sum(steps.values())
    verdict = "met" if total <= BUDGET_MICROSECONDS and counted else "NOT met"
    print(
        f"budget: at most +{BUDGET_MICROSECONDS:g} µs/request on the span workload: {verdict} "
        f"(steps {total:.2f} µs, whole requests {added:+.2f} µs; "
        f"figures recorded: {'yes' if counted else 'NO'})"
    )


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
