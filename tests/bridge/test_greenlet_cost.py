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


def test_holder_in_names_a_request_that_held_the_thread_after_it_ended(tracker):
    tracker.keep_holders(0.02, 10.0)
    glets = {}
    held_now = []

    def request(label, seconds):
        glets[label] = greenlet.getcurrent()
        cost = tracker.begin(label)
        burn(seconds)
        held_now.append(tracker.holder_in(greenlet.getcurrent()))  # still holding it
        tracker.end(cost)

    gevent.spawn(request, "busy", 0.03).join()
    gevent.spawn(request, "quick", 0.0).join()
    assert held_now == ["busy", "quick"]  # the request it serves now, failing a holder
    assert tracker.label_of(glets["busy"]) is None  # it ended
    assert tracker.holder_in(glets["busy"]) == "busy"
    assert tracker.holder_in(glets["quick"]) is None  # it never held the thread


def test_holder_in_prefers_the_request_that_held_the_thread_in_a_reused_greenlet(tracker):
    tracker.keep_holders(0.02, 10.0)
    seen = []

    def connection():
        first = tracker.begin("busy")
        burn(0.03)
        tracker.end(first)
        gevent.sleep(0)  # waits for the next request on the connection
        second = tracker.begin("next")
        seen.append(tracker.label_of(greenlet.getcurrent()))
        seen.append(tracker.holder_in(greenlet.getcurrent()))
        tracker.end(second)

    gevent.spawn(connection).join()
    assert seen == ["next", "busy"]


def test_holders_are_forgotten_after_the_retention(tracker):
    tracker.keep_holders(0.01, 0.0)
    glets = []

    def request(label):
        glets.append(greenlet.getcurrent())
        cost = tracker.begin(label)
        burn(0.015)
        tracker.end(cost)

    gevent.spawn(request, "first").join()
    gevent.spawn(request, "second").join()  # ending it expires the first
    assert tracker.holder_in(glets[0]) is None
    assert list(tracker._held) == [glets[1]]


def test_uninstall_keeps_a_later_trace_function_working():
    calls = []
    tracker = GreenletCostTracker(gevent.get_hub())
    tracker.install()

    def later(event, args):
        calls.append(event)
        chained(event, args)

    chained = greenlet.settrace(later)  # as gevent's monitoring thread does
    try:
        tracker.uninstall()
        assert greenlet.gettrace() is later
        gevent.sleep(0)
        assert calls
        tracker.install()  # back in counting, without a second link in the chain
        assert greenlet.gettrace() is later
        assert gevent.spawn(tracker.begin, "r").get() is not None
    finally:
        greenlet.settrace(tracker._previous_trace)
        tracker._chained = False
        tracker.uninstall()


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
