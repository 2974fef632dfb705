"""bridge.greenlet_cost: each greenlet's running time charged to its own request."""

from __future__ import annotations

import time

import gevent
import greenlet
import pytest

from bridge.greenlet_cost import (
    CPU_TIME_ATTRIBUTE,
    LONGEST_RUN_ATTRIBUTE,
    YIELDS_ATTRIBUTE,
    GreenletCostTracker,
)


def burn(seconds):
    """Use ``seconds`` of this thread's CPU time without yielding."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.fixture
def tracker():
    tracker = GreenletCostTracker(gevent.get_hub())
    tracker.install()
    yield tracker
    tracker.uninstall()


def test_only_the_greenlets_own_running_time_is_counted(tracker):
    costs = {}

    def request(name, first, second):
        cost = tracker.begin(name)
        burn(first)
        gevent.sleep(0)
        burn(second)
        gevent.sleep(0.02)
        tracker.end(cost)
        costs[name] = cost

    gevent.joinall(
        [
            gevent.spawn(request, "a", 0.02, 0.01),
            gevent.spawn(request, "b", 0.04, 0.0),
        ]
    )

    a, b = costs["a"], costs["b"]
    assert a.cpu_time == pytest.approx(0.03, abs=0.008)
    assert b.cpu_time == pytest.approx(0.04, abs=0.008)
    assert a.yields == b.yields == 2
    # wall-clock time: at least the CPU time of the longer stretch
    assert a.longest_run >= 0.02
    assert b.longest_run >= 0.04
    assert a.attributes() == {
        CPU_TIME_ATTRIBUTE: a.cpu_time * 1000,
        YIELDS_ATTRIBUTE: 2,
        LONGEST_RUN_ATTRIBUTE: a.longest_run * 1000,
    }


def test_sleeping_costs_no_cpu_time(tracker):
    def request():
        cost = tracker.begin("sleeper")
        gevent.sleep(0.05)
        tracker.end(cost)
        return cost

    cost = gevent.spawn(request).get()
    assert cost.cpu_time < 0.005
    assert cost.longest_run < 0.005
    assert cost.yields == 1


def test_nothing_is_counted_after_end_or_outside_the_hubs_greenlets(tracker):
    def request():
        cost = tracker.begin("r")
        tracker.end(cost)
        assert tracker.label_of(greenlet.getcurrent()) is None
        burn(0.02)
        gevent.sleep(0)
        return cost

    cost = gevent.spawn(request).get()
    assert cost.cpu_time < 0.005
    assert cost.yields == 0
    # the test's own greenlet is not one the hub runs: its figures would be wrong
    assert tracker.begin("main") is None


def test_label_of_names_the_request_a_greenlet_serves(tracker):
    seen = []

    def request():
        cost = tracker.begin(1234)
        seen.append(tracker.label_of(greenlet.getcurrent()))
        tracker.end(cost)

    gevent.spawn(request).join()
    assert seen == [1234]
    assert tracker.label_of(object()) is None


def test_the_previous_trace_function_keeps_being_called_and_is_put_back():
    calls = []

    def previous(event, args):
        calls.append(event)

    old = greenlet.settrace(previous)
    try:
        tracker = GreenletCostTracker(gevent.get_hub())
        tracker.install()
        gevent.sleep(0)
        assert calls
        assert greenlet.gettrace() == tracker._on_switch
        tracker.uninstall()
        assert greenlet.gettrace() is previous
    finally:
        greenlet.settrace(old)


def test_begin_does_nothing_until_installed():
    tracker = GreenletCostTracker(gevent.get_hub())
    assert gevent.spawn(tracker.begin, "r").get() is None
