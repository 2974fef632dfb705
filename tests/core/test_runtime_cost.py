"""Server spans carry their request's runtime cost while a tracker counts it."""

from __future__ import annotations

import time

import gevent
import pytest

from baseplate import Baseplate, metrics_client_from_config
from baseplate.core import ServerSpan, Span
from baseplate.core._spans import count_runtime_cost
from baseplate.testing import recorded_spans
from bridge.greenlet_cost import (
    CPU_TIME_ATTRIBUTE,
    LONGEST_RUN_ATTRIBUTE,
    YIELDS_ATTRIBUTE,
    GreenletCostTracker,
)


class Context:
    pass


@pytest.fixture
def tracker():
    tracker = GreenletCostTracker(gevent.get_hub())
    tracker.install()
    count_runtime_cost(tracker)
    yield tracker
    count_runtime_cost(None)
    tracker.uninstall()


@pytest.fixture
def baseplate(statsd):
    baseplate = Baseplate()
    baseplate.configure_metrics(
        metrics_client_from_config(
            {"metrics.namespace": "svc", "metrics.endpoint": statsd.endpoint}
        )
    )
    return baseplate


def serve(baseplate, name, work):
    with baseplate.make_server_span(Context(), name) as span:
        work()
    return span


def burn(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_the_server_span_carries_the_cost_and_the_cpu_timer_is_sent(tracker, baseplate, statsd):
    with recorded_spans() as exporter:
        span = gevent.spawn(serve, baseplate, "busy", lambda: (burn(0.02), gevent.sleep(0))).get()
        (exported,) = exporter.get_finished_spans()

    attributes = exported.attributes
    assert attributes[CPU_TIME_ATTRIBUTE] >= 20
    assert attributes[LONGEST_RUN_ATTRIBUTE] >= 20
    assert attributes[YIELDS_ATTRIBUTE] == 1
    assert span._cost is None
    assert tracker._costs == {}
    (datagram,) = statsd.received()
    lines = datagram.decode().split("\n")
    cpu_lines = [line for line in lines if line.startswith("svc.server.busy.cpu_time:")]
    assert cpu_lines == [f"svc.server.busy.cpu_time:{attributes[CPU_TIME_ATTRIBUTE]:g}|ms"]
    assert any(line.startswith("svc.server.busy:") for line in lines)


def test_outside_the_hubs_greenlets_the_figures_are_omitted(tracker, baseplate, statsd):
    with recorded_spans() as exporter:
        serve(baseplate, "plain", lambda: burn(0.005))
        (exported,) = exporter.get_finished_spans()

    assert CPU_TIME_ATTRIBUTE not in exported.attributes
    assert b"cpu_time" not in b"".join(statsd.received())


def test_without_a_tracker_server_spans_use_the_plain_methods(baseplate):
    tracker = GreenletCostTracker(gevent.get_hub())
    tracker.install()
    count_runtime_cost(tracker)
    assert ServerSpan.start is not Span.start
    count_runtime_cost(None)
    tracker.uninstall()
    assert ServerSpan.start is Span.start
    assert ServerSpan.finish is Span.finish

    with recorded_spans() as exporter:
        gevent.spawn(serve, baseplate, "uncounted", lambda: burn(0.005)).join()
        (exported,) = exporter.get_finished_spans()
    assert CPU_TIME_ATTRIBUTE not in exported.attributes
