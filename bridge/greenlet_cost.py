"""What each request costs a gevent process: CPU time, yields to the hub, longest run.

Under gevent one thread runs every request, switching between their
greenlets whenever one waits for I/O. A request that computes for a long
time without waiting holds the hub, and every other request in the process
stalls until it lets go. :class:`GreenletCostTracker` follows the switches
(through ``greenlet.settrace``, which calls it on every switch of the
thread it was installed in) and charges each stretch a request's greenlet
ran to that request:

* **CPU time**: the thread's CPU time (``CLOCK_THREAD_CPUTIME_ID``) spent
  while the request's greenlet was running, so waiting for I/O, other
  requests' work and other threads' work are not counted;
* **yields**: how many times the greenlet switched to the hub, that is waited
  for something (I/O, a sleep, a lock, a pool slot);
* **longest run**: the longest stretch of wall-clock time the greenlet ran
  without switching away, which is the longest time it kept every other
  request waiting.

Only the greenlet that called :meth:`GreenletCostTracker.begin` is counted:
greenlets a request spawns are not charged to it. A switch costs one or two
clock readings, and nothing is done per request besides :meth:`GreenletCostTracker.begin`
and :meth:`GreenletCostTracker.end`.
"""

from __future__ import annotations

import time
from typing import Any

import greenlet  # type: ignore[import-untyped]

__all__ = [
    "CPU_TIME_ATTRIBUTE",
    "LONGEST_RUN_ATTRIBUTE",
    "YIELDS_ATTRIBUTE",
    "GreenletCostTracker",
    "RequestCost",
]

#: Span attribute: the request's CPU time, in milliseconds (a float).
CPU_TIME_ATTRIBUTE = "runtime.cpu_time_ms"
#: Span attribute: how many times the request yielded to the hub (an int).
YIELDS_ATTRIBUTE = "runtime.yields"
#: Span attribute: the longest the request ran without yielding, in milliseconds.
LONGEST_RUN_ATTRIBUTE = "runtime.longest_run_ms"

_thread_time = time.thread_time
_perf_counter = time.perf_counter


class RequestCost:
    """The running totals of one request, in seconds (see the module's description).

    ``label`` is what the caller of :meth:`GreenletCostTracker.begin` named the
    request by (such as its trace id), for reports about the greenlet.
    """

    __slots__ = ("_cpu_since", "_run_since", "cpu_time", "label", "longest_run", "yields")

    def __init__(self, label: object, cpu_now: float, wall_now: float) -> None:
        self.label = label
        self.cpu_time = 0.0
        self.yields = 0
        self.longest_run = 0.0
        self._cpu_since = cpu_now
        self._run_since = wall_now

    def _ran_until(self, cpu_now: float, wall_now: float) -> None:
        self.cpu_time += cpu_now - self._cpu_since
        run = wall_now - self._run_since
        if run > self.longest_run:  # noqa: PLR1730 - max() is a call more per switch
            self.longest_run = run

    def attributes(self) -> dict[str, float | int]:
        """The figures as span attributes (:data:`CPU_TIME_ATTRIBUTE` and the others)."""
        return {
            CPU_TIME_ATTRIBUTE: self.cpu_time * 1000.0,
            YIELDS_ATTRIBUTE: self.yields,
            LONGEST_RUN_ATTRIBUTE: self.longest_run * 1000.0,
        }


class GreenletCostTracker:
    """Charges the running time of greenlets to the requests they serve.

    Made for the thread that runs ``hub`` (a gevent hub, or any greenlet that
    greenlets yield to when they wait); :meth:`install` must be called in that
    thread. Requests are counted only in greenlets whose parent is ``hub``,
    as gevent's are: elsewhere (another thread, the hub itself)
    :meth:`begin` returns None, so figures that would be wrong are never made.
    """

    def __init__(self, hub: greenlet.greenlet) -> None:
        self._hub = hub
        self._costs: dict[object, RequestCost] = {}
        #: The cost of the greenlet running now, if it is a counted one.
        self._running: RequestCost | None = None
        self._previous_trace: Any = None
        self._installed = False
        #: Whether :meth:`_on_switch` is in the thread's chain of trace functions.
        self._chained = False
        #: Requests that held the thread at least this long are kept after they end.
        self._hold_threshold = float("inf")
        self._hold_retention = 0.0
        #: Greenlet: (the last request that held the thread in it, when that request ended).
        self._held: dict[object, tuple[RequestCost, float]] = {}

    def install(self) -> None:
        """Start following switches, keeping (and calling) any trace function already set."""
        if self._installed:
            return
        if not self._chained:
            self._previous_trace = greenlet.settrace(self._on_switch)
            self._chained = True
        self._installed = True

    def uninstall(self) -> None:
        """Stop following switches; put back the trace function that was set before.

        If a trace function set since (such as the one of gevent's monitoring
        thread) calls this one, this one stays in that chain, counting nothing,
        so that the later one keeps working.
        """
        if not self._installed:
            return
        if greenlet.gettrace() == self._on_switch:
            greenlet.settrace(self._previous_trace)
            self._previous_trace = None
            self._chained = False
        self._installed = False
        self._costs.clear()
        self._held.clear()
        self._running = None

    def keep_holders(self, min_run: float, retention: float) -> None:
        """Remember, for ``retention`` seconds after it ends, each request that held the thread.

        A request holds the thread when it runs ``min_run`` seconds or more
        without switching away; :meth:`holder_in` then still finds it once it
        has ended, as a monitor that notices the hold late needs.
        """
        self._hold_threshold = min_run
        self._hold_retention = retention

    def begin(self, label: object) -> RequestCost | None:
        """Start counting the current greenlet's running time as one request's.

        Returns None where nothing can be counted (see the class description).
        """
        current = greenlet.getcurrent()
        if not self._installed or current.parent is not self._hub:
            return None
        cost = RequestCost(label, _thread_time(), _perf_counter())
        self._costs[current] = cost
        self._running = cost
        return cost

    def end(self, cost: RequestCost) -> None:
        """Stop counting: the stretch running now is added to ``cost``'s totals."""
        if self._running is cost:
            cost._ran_until(_thread_time(), _perf_counter())
            self._running = None
        current = greenlet.getcurrent()
        if self._costs.get(current) is cost:
            del self._costs[current]
            glets: list[object] = [current]
        else:  # ended from another greenlet than the one that began it
            glets = [glet for glet, counted in list(self._costs.items()) if counted is cost]
            for glet in glets:
                del self._costs[glet]
        if cost.longest_run >= self._hold_threshold:
            self._keep_holder(glets, cost)

    def _keep_holder(self, glets: list[object], cost: RequestCost) -> None:
        now = _perf_counter()
        held = self._held
        for glet in glets:
            held.pop(glet, None)  # re-inserted last: the dict stays in order of ending
            held[glet] = (cost, now)
        expired = now - self._hold_retention
        while held:
            oldest = next(iter(held))
            if held[oldest][1] >= expired:
                break
            del held[oldest]

    def label_of(self, glet: object) -> object | None:
        """The label of the request ``glet`` is counted for, if any.

        Safe to call from another thread (a monitoring thread, for example).
        """
        cost = self._costs.get(glet)
        return None if cost is None else cost.label

    def holder_in(self, glet: object) -> object | None:
        """The label of the request that held the thread in ``glet`` most recently, if any.

        That is the request ``glet`` serves now if it holds the thread now or
        held it earlier, else the last request that held it in ``glet`` and
        ended less than the retention of :meth:`keep_holders` ago, else the
        request ``glet`` serves now (None if it serves none). Safe to call
        from another thread (a monitoring thread, for example).
        """
        cost = self._costs.get(glet)
        if cost is not None:
            threshold = self._hold_threshold
            if cost.longest_run >= threshold or (
                self._running is cost and _perf_counter() - cost._run_since >= threshold
            ):
                return cost.label
        held = self._held.get(glet)
        if held is not None:
            return held[0].label
        return None if cost is None else cost.label

    def _on_switch(self, event: str, args: tuple[greenlet.greenlet, greenlet.greenlet]) -> None:
        running = self._running
        following = self._costs.get(args[1])
        if running is not None or following is not None:
            cpu_now = _thread_time()
            wall_now = _perf_counter()
            if running is not None:
                running._ran_until(cpu_now, wall_now)
                if args[1] is self._hub:
                    running.yields += 1
            if following is not None:
                following._cpu_since = cpu_now
                following._run_since = wall_now
        self._running = following
        previous = self._previous_trace
        if previous is not None:
            previous(event, args)
