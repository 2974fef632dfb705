"""What the statsd metrics observer adds to a request, per request.

One request is a facade server span with three client children: the first
tagged, the second raising (a failure), the third empty; no tracing client,
no other observer. The observer's cost is the difference between the same
request with and without ``configure_metrics``, measured in the same run,
taking turns in short blocks with :mod:`timeit`; the batch goes to a UDP
socket on 127.0.0.1 that is never read.

Beside it, in the same turns:

* **floor**: an observer that makes the request's batch, registers a
  do-nothing observer on every span and sends one fixed datagram at the end:
  what any per-span observer costs before it measures anything;
* **by hand**: the same metrics written through the public
  :class:`~baseplate.metrics.Batch` API (a ``Timer`` started and stopped and a
  counter asked for per span, then one flush), without spans: the work the
  observer did that way before it wrote the batch directly.

A sanity check first compares one request's datagram with the by-hand one,
timer values aside: both must be the same lines in the same order.

Run directly with ``--quick`` for a smaller, faster run.
"""

from __future__ import annotations

import re
import socket
import statistics
import sys
import timeit
from collections.abc import Callable
from typing import Any

from baseplate import metrics_client_from_config
from baseplate.core import (
    Baseplate,
    BaseplateObserver,
    ServerSpan,
    ServerSpanObserver,
    Span,
    SpanObserver,
)
from baseplate.metrics import Batch, Client

#: The target: the observer adds at most this many µs to the request.
BUDGET_MICROSECONDS = 8.0

_TIMER_VALUE = re.compile(rb":[^|]*\|ms$")


class _Context:
    """A request's context object, as a framework integration would make it."""


def request(baseplate: Baseplate) -> None:
    """One request: a server span, a tagged child, a failed one and an empty one."""
    with baseplate.make_server_span(_Context(), "x") as server:
        with server.make_child("a") as child:
            child.set_tag("key", "value")
        try:
            with server.make_child("b"):
                raise ValueError("boom")
        except ValueError:
            pass
        with server.make_child("c"):
            pass


def by_hand(client: Client) -> None:
    """The request's metrics through the Batch API, without spans."""
    batch = client.batch()
    server = batch.timer("server.x")
    server.start()
    for name, outcome in (("a", "success"), ("b", "failure"), ("c", "success")):
        timer = batch.timer("clients." + name)
        timer.start()
        timer.stop()
        batch.counter(f"clients.{name}.{outcome}").increment()
    server.stop()
    batch.counter("server.x.success").increment()
    batch.flush()


class _NothingObserver(SpanObserver):
    """Observes a span and does nothing."""

    __slots__ = ()


class _NothingServerObserver(ServerSpanObserver):
    """Observes every child with a do-nothing observer; sends one datagram at the end."""

    __slots__ = ("batch",)

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def on_child_span_created(self, span: Span) -> None:
        span.register(_NothingObserver())

    def on_finish(self, exc_info: Any) -> None:
        self.batch.transport.transport.send(b"bench.x:1|c")


class FloorObserver(BaseplateObserver):
    """The floor: a batch per request, an observer per span, one datagram."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def on_server_span_created(self, context: Any, server_span: ServerSpan) -> None:
        batch = self.client.batch()
        context.metrics = batch
        server_span.register(_NothingServerObserver(batch))


def _client(endpoint: str) -> Client:
    return metrics_client_from_config({"metrics.namespace": "bench", "metrics.endpoint": endpoint})


def same_lines(client_for: Callable[[str], Client]) -> bool:
    """Whether a request's datagram is the by-hand one, timer values aside."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    try:
        host, port = receiver.getsockname()
        client = client_for(f"{host}:{port}")
        baseplate = Baseplate()
        baseplate.configure_metrics(client)
        request(baseplate)
        by_hand(client)
        observed, written = receiver.recv(65536), receiver.recv(65536)
    finally:
        receiver.close()

    def lines(datagram: bytes) -> list[bytes]:
        return [_TIMER_VALUE.sub(b":T|ms", line) for line in datagram.split(b"\n")]

    return lines(observed) == lines(written)


def run(rounds: int, requests: int, endpoint: str) -> dict[str, list[float]]:
    """µs per request of each workload, one figure per round; workloads take turns."""
    client = _client(endpoint)
    without = Baseplate()
    floor = Baseplate()
    floor.register(FloorObserver(client))
    with_metrics = Baseplate()
    with_metrics.configure_metrics(client)
    workloads: dict[str, Callable[[], None]] = {
        "without": lambda: request(without),
        "floor": lambda: request(floor),
        "metrics": lambda: request(with_metrics),
        "by hand": lambda: by_hand(client),
    }
    timers = {name: timeit.Timer(workload) for name, workload in workloads.items()}
    for timer in timers.values():
        timer.timeit(requests)  # warm up
    figures: dict[str, list[float]] = {name: [] for name in timers}
    names = list(timers)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            figures[name].append(timers[name].timeit(requests) * 1e6 / requests)
    return figures


def main(quick: bool = False) -> None:
    rounds, requests = (15, 1_000) if quick else (41, 2_000)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    host, port = sink.getsockname()
    try:
        same = same_lines(_client)
        figures = run(rounds, requests, f"{host}:{port}")
    finally:
        sink.close()

    medians = {name: statistics.median(values) for name, values in figures.items()}
    minimums = {name: min(values) for name, values in figures.items()}
    print(
        f"metrics observer: server span + 3 children, {rounds} rounds of {requests} "
        "requests per workload, taking turns (µs/request)"
    )
    print(f"{'workload':<34} {'median':>8} {'min':>8} {'added (median)':>15}")
    for name, title in (
        ("without", "request without metrics"),
        ("floor", "request + do-nothing observer"),
        ("metrics", "request + metrics observer"),
    ):
        added = medians[name] - medians["without"]
        print(f"{title:<34} {medians[name]:>8.2f} {minimums[name]:>8.2f} {added:>+15.2f}")
    print(f"{'the same metrics by hand (no spans)':<34} {medians['by hand']:>8.2f}")
    added = medians["metrics"] - medians["without"]
    floor = medians["floor"] - medians["without"]
    print(
        f"the observer adds {added:.2f} µs/request: {added / floor:.2f}x the do-nothing "
        f"observer's {floor:.2f} µs, {added / medians['by hand']:.2f}x the metrics by hand"
    )
    verdict = "met" if added <= BUDGET_MICROSECONDS and same else "NOT met"
    print(
        f"budget: at most +{BUDGET_MICROSECONDS:g} µs/request: {verdict} "
        f"(lines as by hand: {'yes' if same else 'NO'})"
    )


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
