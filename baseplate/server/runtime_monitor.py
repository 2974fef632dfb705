"""The runtime monitor of ``baseplate-serve``: the health of the process, off the request path.

Configured in the server section, with the original's keys and defaults::

    [server:main]
    monitoring.concurrency = true     # gauge active_requests (default true)
    monitoring.blocked_hub = 100 milliseconds  # unset (the default): off
    monitoring.gc.stats = true        # gauges gc.gen<N>.<stat> (default true)
    monitoring.gc.timing = false      # timer gc.elapsed per collection (default false)

Every :data:`REPORT_INTERVAL_SECONDS`, on the wall clock's multiples of it, a
greenlet sends what was gathered as one batch under
``<metrics namespace>.runtime.<hostname>.PID<pid>``, through the application's
metrics client; without one nothing is sent. With ``monitoring.blocked_hub``
set, gevent's monitoring thread watches the event loop; each time one
greenlet holds it longer than that, the timer ``hub_blocked`` is sent and a
WARNING names the request the greenlet was serving (its trace id) and shows
its stack, with or without a metrics client.

With ``monitoring.request_cost = true`` (new; default false) the monitor
also counts what each request costs the process (see
:mod:`bridge.greenlet_cost`): its server span carries the figures, and its
CPU time is sent beside the request's timer. Counting follows every
greenlet switch in the process, which costs each request about ten
microseconds, so it is off unless asked for; a ``monitoring.blocked_hub``
report needs it to name the request that blocked, so setting
``blocked_hub`` turns it on.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, Protocol

import gevent
import gevent.events
import gevent.pool

from baseplate import config
from baseplate.core._spans import count_runtime_cost
from baseplate.diagnostics.metrics import MetricsBaseplateObserver
from baseplate.metrics import Batch, Client
from baseplate.server._options import MONITORING_SPEC
from bridge.greenlet_cost import GreenletCostTracker

__all__ = ["REPORT_INTERVAL_SECONDS", "RuntimeMonitor", "start"]

logger = logging.getLogger(__name__)

#: Seconds between reports.
REPORT_INTERVAL_SECONDS = 10

#: Seconds a request that held the event loop is remembered after it ends, for
#: the blocked-hub report that gevent's monitoring thread may make late.
HOLDER_RETENTION_SECONDS = 10.0


class _Reporter(Protocol):
    """One kind of figure: gathers it as it happens (if it must), sends it in :meth:`report`.

    :meth:`report` runs in the reporting greenlet, once per interval, and must
    not block.
    """

    def report(self, batch: Batch) -> None: ...


class _ConcurrencyReporter:
    """The gauge ``active_requests``: the server's handlers running now."""

    def __init__(self, pool: gevent.pool.Pool) -> None:
        self.pool = pool

    def report(self, batch: Batch) -> None:
        batch.gauge("active_requests").replace(len(self.pool.greenlets))


class _BlockedHubReporter:
    """The timer ``hub_blocked``, and a WARNING naming the request, each time the loop is held.

    gevent's monitoring thread notices a block when a whole check period
    (``max_blocking_time``) went by without a greenlet switch; it then takes
    the stack of the hub's thread, builds its report (which walks every
    object of the process to list the greenlets, and lets the hub's thread
    run meanwhile), and only then calls :meth:`on_gevent_event`, in the
    monitoring thread. By then the greenlet may have let go of the loop and
    its request may have ended: the stack shown is the one gevent took when
    it noticed the block, and the request is the one the tracker saw hold
    the loop in that greenlet (it keeps those for :data:`HOLDER_RETENTION_SECONDS`).
    """

    def __init__(self, max_blocking_time: float, tracker: GreenletCostTracker) -> None:
        self.tracker = tracker
        self.times_blocked: list[float] = []
        hub = gevent.get_hub()
        # gevent reports a greenlet that ran a whole check period without
        # switching; the tracker's clock readings are taken a little later
        # than gevent's switch count, hence the margin.
        tracker.keep_holders(max_blocking_time / 2, HOLDER_RETENTION_SECONDS)
        gevent.config.monitor_thread = True
        gevent.config.max_blocking_time = max_blocking_time
        # This report replaces the one gevent prints to stderr.
        gevent.config.print_blocking_reports = False
        gevent.events.subscribers.append(self.on_gevent_event)
        hub.start_periodic_monitoring_thread()

    def on_gevent_event(self, event: object) -> None:
        if not isinstance(event, gevent.events.EventLoopBlocked):
            return
        # Swapped out whole by report(): appending is atomic under the GIL.
        self.times_blocked.append(event.blocking_time)
        trace_id = self.tracker.holder_in(event.greenlet)
        serving = "outside any request" if trace_id is None else f"serving trace id {trace_id}"
        logger.warning(
            "the event loop was blocked for more than %g s by a greenlet %s; its stack:\n%s",
            event.blocking_time,
            serving,
            _blocked_stack(event.info).rstrip("\n"),
        )

    def report(self, batch: Batch) -> None:
        times_blocked, self.times_blocked = self.times_blocked, []
        for time_blocked in times_blocked:
            batch.timer("hub_blocked").send(time_blocked)


def _blocked_stack(report: list[str]) -> str:
    """The stack of the blocked thread in gevent's report (a list of lines), as gevent formatted it.

    gevent's report has the line ``Blocked Stack (for thread id ...):``
    followed by the stack as one string.
    """
    for index, line in enumerate(report[:-1]):
        if isinstance(line, str) and line.startswith("Blocked Stack"):
            return str(report[index + 1])
    return "(unknown)"


class _GCStatsReporter:
    """Gauges ``gc.gen<N>.<stat>`` of :func:`gc.get_stats`."""

    def report(self, batch: Batch) -> None:
        for generation, stats in enumerate(gc.get_stats()):
            for name, value in stats.items():
                batch.gauge(f"gc.gen{generation}.{name}").replace(value)


class _GCTimingReporter:
    """The timer ``gc.elapsed``, once per collection."""

    def __init__(self) -> None:
        self.gc_durations: list[float] = []
        self._started: float | None = None
        gc.callbacks.append(self.on_gc)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif phase == "stop" and self._started is not None:
            self.gc_durations.append(time.perf_counter() - self._started)
            self._started = None

    def report(self, batch: Batch) -> None:
        gc_durations, self.gc_durations = self.gc_durations, []
        for duration in gc_durations:
            batch.timer("gc.elapsed").send(duration)

    def close(self) -> None:
        gc.callbacks.remove(self.on_gc)


class RuntimeMonitor:
    """What :func:`start` started; :meth:`stop` ends it."""

    def __init__(
        self,
        tracker: GreenletCostTracker | None,
        client: Client | None,
        reporters: list[_Reporter],
    ) -> None:
        self.tracker = tracker
        self.client = client
        self.reporters = reporters
        self._greenlet: gevent.Greenlet | None = None
        if client is not None and reporters:
            self._greenlet = gevent.spawn(self._report_periodically, client)

    def _report_periodically(self, client: Client) -> None:
        suffix = f".runtime.{socket.gethostname()}.PID{os.getpid()}".encode()
        while True:
            gevent.sleep(REPORT_INTERVAL_SECONDS - time.time() % REPORT_INTERVAL_SECONDS)
            self.report(client, suffix)

    def report(self, client: Client, suffix: bytes) -> None:
        """Send one batch of every reporter's figures; failures are logged, never raised."""
        try:
            with client.batch() as batch:
                batch.namespace += suffix
                for reporter in self.reporters:
                    try:
                        reporter.report(batch)
                    except Exception as exc:
                        logger.debug(
                            "runtime metrics of %s failed: %s", type(reporter).__name__, exc
                        )
        except Exception as exc:
            logger.debug("runtime metrics not sent: %s", exc)

    def stop(self) -> None:
        """Stop reporting and counting; gevent's monitoring thread ends with the process."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        for reporter in self.reporters:
            if isinstance(reporter, _GCTimingReporter):
                reporter.close()
            elif isinstance(reporter, _BlockedHubReporter):
                gevent.events.subscribers.remove(reporter.on_gevent_event)
        if self.tracker is not None:
            count_runtime_cost(None)
            self.tracker.uninstall()


def start(server_config: Mapping[str, str], application: Any, pool: Any) -> RuntimeMonitor:
    """Start the runtime monitor and the per-request cost counting for ``application``.

    ``server_config`` is the server section (the ``monitoring.*`` keys are
    read from it); ``pool`` is the server's pool of handlers, if it has one.
    Call it in the server's thread, after gevent patched the process.

    :raises baseplate.config.ConfigurationError: A ``monitoring.*`` key is invalid.
    """
    cfg = config.parse_config(server_config, MONITORING_SPEC)
    # Following switches costs every request about ten microseconds (see
    # docs/runtime_monitor.rst): only when asked for, or when blocked_hub
    # needs the tracker to name the request that blocked.
    tracker: GreenletCostTracker | None = None
    if cfg.monitoring.request_cost or cfg.monitoring.blocked_hub is not None:
        tracker = GreenletCostTracker(gevent.get_hub())
        tracker.install()
        count_runtime_cost(tracker)

    client = _metrics_client_of(application)
    if client is None:
        logger.info("no metrics client configured: runtime metrics will not be sent")
    reporters: list[_Reporter] = []
    if cfg.monitoring.concurrency and client is not None:
        if isinstance(pool, gevent.pool.Pool):
            reporters.append(_ConcurrencyReporter(pool))
        else:
            logger.info("monitoring.concurrency disabled: the server has no pool of handlers")
    if cfg.monitoring.blocked_hub is not None and tracker is not None:
        reporters.append(_BlockedHubReporter(cfg.monitoring.blocked_hub.total_seconds(), tracker))
    if cfg.monitoring.gc.stats and client is not None:
        reporters.append(_GCStatsReporter())
    if cfg.monitoring.gc.timing and client is not None:
        reporters.append(_GCTimingReporter())
    return RuntimeMonitor(tracker, client, reporters)


def _metrics_client_of(application: Any) -> Client | None:
    """The metrics client of the application's Baseplate, if it has one.

    The Baseplate is ``application.baseplate`` (a Pyramid application's, as
    the original looked for it), or that of a Thrift processor's event handler.
    """
    baseplate = getattr(application, "baseplate", None)
    if baseplate is None:
        dispatcher = getattr(application, "_context_dispatcher", None)
        handler = getattr(dispatcher, "event_handler", None)
        baseplate = getattr(handler, "baseplate", None)
    for observer in getattr(baseplate, "observers", ()):
        if isinstance(observer, MetricsBaseplateObserver):
            return observer.client
    return None
