"""Throughput of baseplate.metrics against the plain ``statsd`` client.

Both clients send the same metrics to the same UDP socket on 127.0.0.1 in the
same run; the socket is never read, so the kernel drops what overflows and
neither sender waits on a reader. Rounds alternate between the two clients
and the median of each is compared.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable

import statsd

from baseplate import metrics_client_from_config

BATCH_COUNTERS = 40
BATCH_TIMERS = 10


def _ops_per_second(workload: Callable[[int], int], operations: int) -> float:
    start = time.perf_counter()
    metrics_sent = workload(operations)
    return metrics_sent / (time.perf_counter() - start)


def _workloads(endpoint: tuple[str, int]) -> dict[str, tuple[Callable[[int], int], ...]]:
    host, port = endpoint
    ours = metrics_client_from_config(
        {"metrics.namespace": "bench", "metrics.endpoint": f"{host}:{port}"}
    )
    theirs = statsd.StatsClient(host, port, prefix="bench")

    def ours_counter(n: int) -> int:
        for _ in range(n):
            ours.counter("requests").increment()
        return n

    def theirs_counter(n: int) -> int:
        for _ in range(n):
            theirs.incr("requests")
        return n

    def ours_timer(n: int) -> int:
        for _ in range(n):
            ours.timer("latency").send(0.0123)
        return n

    def theirs_timer(n: int) -> int:
        for _ in range(n):
            theirs.timing("latency", 12.3)
        return n

    def ours_batch(n: int) -> int:
        for _ in range(n):
            with ours.batch() as batch:
                for i in range(BATCH_COUNTERS):
                    batch.counter(f"c{i}").increment()
                for i in range(BATCH_TIMERS):
                    batch.timer(f"t{i}").send(0.0123)
        return n * (BATCH_COUNTERS + BATCH_TIMERS)

    def theirs_batch(n: int) -> int:
        for _ in range(n):
            with theirs.pipeline() as pipe:
                for i in range(BATCH_COUNTERS):
                    pipe.incr(f"c{i}")
                for i in range(BATCH_TIMERS):
                    pipe.timing(f"t{i}", 12.3)
        return n * (BATCH_COUNTERS + BATCH_TIMERS)

    return {
        "counter, one datagram each": (ours_counter, theirs_counter),
        "timer, one datagram each": (ours_timer, theirs_timer),
        "batch of 50 metrics": (ours_batch, theirs_batch),
    }


def run(rounds: int = 7, operations: int = 20_000) -> list[tuple[str, float, float]]:
    """Return (workload, baseplate metrics/s, statsd metrics/s) medians."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    try:
        results = []
        for name, (ours, theirs) in _workloads(sink.getsockname()).items():
            batch_scale = BATCH_COUNTERS + BATCH_TIMERS if "batch" in name else 1
            n = max(1, operations // batch_scale)
            ours_rates, theirs_rates = [], []
            for _ in range(rounds):
                ours_rates.append(_ops_per_second(ours, n))
                theirs_rates.append(_ops_per_second(theirs, n))
            results.append((name, statistics.median(ours_rates), statistics.median(theirs_rates)))
        return results
    finally:
        sink.close()


def main() -> None:
    print("metrics throughput into a local UDP socket (median metrics/second)")
    print(f"{'workload':<30} {'baseplate':>12} {'statsd':>12} {'ratio':>7}")
    for name, ours, theirs in run():
        print(f"{name:<30} {ours:>12,.0f} {theirs:>12,.0f} {ours / theirs:>6.2f}x")


if __name__ == "__main__":
    main()
