"""What the server benchmarks share: a load run's result, and the report
comparing instrumented with bare throughput against the project's target."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

#: The project's target: instrumented throughput at least this share of bare.
TARGET_RATIO = 0.85
KINDS = ("bare", "instrumented")


@dataclass(frozen=True)
class Result:
    """One load run against one server."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def report(results: dict[str, list[Result]]) -> bool:
    """Print the medians per kind and the throughput ratio; True if the target is met."""
    medians = {}
    for kind in KINDS:
        runs = results[kind]
        rate = statistics.median(result.requests_per_second for result in runs)
        p50 = statistics.median(result.p50_ms for result in runs)
        p99 = statistics.median(result.p99_ms for result in runs)
        errors = sum(result.errors for result in runs)
        medians[kind] = rate
        print(
            f"  {kind:<13} {rate:9.0f} req/s   p50 {p50:7.3f} ms   p99 {p99:7.3f} ms"
            + (f"   ({errors} errors)" if errors else "")
        )
    ratio = medians["instrumented"] / medians["bare"]
    met = ratio >= TARGET_RATIO
    verdict = "met" if met else "NOT met"
    print(f"  instrumented/bare throughput: {ratio:.1%} (target >= {TARGET_RATIO:.0%}: {verdict})")
    return met
