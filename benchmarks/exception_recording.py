"""Recording an exception on a span: the SDK's ``record_exception`` against the bridge's.

The SDK formats the whole stack trace as the exception is recorded, on the
request path; :func:`bridge.exception_events.record_exception` captures plain
data there and formats the text only when the event's attributes are read
(by the export thread, if the span is exported at all). This measures what
each costs the request: microseconds per call, on recording SDK spans of a
provider with no processor, for one exception raised two calls deep (the
same exception object every time, so both format or capture the same
stack). The spans are started before and ended after the timed loop.

The two take turns, round by round, and medians are reported: machines are
noisy. Run directly with ``--quick`` for a smaller, faster run.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from bridge.exception_events import record_exception

Record = Callable[[trace.Span, BaseException], None]


def _handler() -> None:
    _lookup({})


def _lookup(table: dict[str, int]) -> int:
    return table["missing"]


def _failure() -> BaseException:
    """A KeyError raised two calls below the caller, with its traceback."""
    try:
        _handler()
    except KeyError as exc:
        return exc
    raise AssertionError("the lookup did not fail")


def _sdk(span: trace.Span, exception: BaseException) -> None:
    span.record_exception(exception)


def _microseconds_per_call(
    tracer: trace.Tracer, record: Record, exception: BaseException, calls: int
) -> float:
    spans = [tracer.start_span("failed") for _ in range(calls)]
    start = time.perf_counter()
    for span in spans:
        record(span, exception)
    elapsed = time.perf_counter() - start
    for span in spans:
        span.end()
    return elapsed * 1e6 / calls


def run(rounds: int = 15, calls: int = 2000) -> tuple[float, float]:
    """Return the median microseconds per call: (the SDK's, the bridge's)."""
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer(__name__)
    exception = _failure()
    for record in (_sdk, record_exception):  # warm up: linecache, first-call costs
        _microseconds_per_call(tracer, record, exception, calls // 10 or 1)
    sdk: list[float] = []
    bridge: list[float] = []
    for _ in range(rounds):
        sdk.append(_microseconds_per_call(tracer, _sdk, exception, calls))
        bridge.append(_microseconds_per_call(tracer, record_exception, exception, calls))
    return statistics.median(sdk), statistics.median(bridge)


def main(quick: bool = False) -> None:
    sdk, bridge = run(rounds=5, calls=300) if quick else run()
    print("recording an exception raised two calls deep (median microseconds per call)")
    print(f"{'SDK span.record_exception':<44} {sdk:>8.2f}")
    print(f"{'bridge.exception_events.record_exception':<44} {bridge:>8.2f}")
    print(f"{'ratio (SDK / bridge)':<44} {sdk / bridge:>7.1f}x")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
