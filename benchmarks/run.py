"""Run every benchmark; each prints its figures as ratios against a baseline
measured in the same run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (
    clients,
    consumer,
    events,
    exception_recording,
    experiments,
    metrics_observer,
    metrics_throughput,
    runtime_cost,
    span_overhead,
    thrift_frames,
    thrift_server,
    trace_export_request_path,
    trace_export_throughput,
    wsgi,
)

BENCHMARKS = [
    metrics_throughput,
    metrics_observer,
    span_overhead,
    runtime_cost,
    exception_recording,
    trace_export_throughput,
    trace_export_request_path,
    wsgi,
    thrift_server,
    thrift_frames,
    clients,
    experiments,
    events,
    consumer,
]


def main() -> None:
    for benchmark in BENCHMARKS:
        benchmark.main()
        print()


if __name__ == "__main__":
    main()
