"""Connections take turns: one that never waits yields to the event loop after a request."""

from __future__ import annotations

import gevent

from baseplate.server._turns import TurnTaker


def test_a_connection_that_never_waits_lets_the_others_run():
    turns = TurnTaker()
    turns.request_done()
    ran = []
    gevent.spawn(ran.append, "other connection")
    turns.request_done()  # the loop has not run since the previous request
    assert ran == ["other connection"]
    gevent.spawn(ran.append, "and again")
    turns.request_done()
    assert ran == ["other connection", "and again"]


def test_a_connection_that_waited_for_its_request_keeps_going():
    turns = TurnTaker()
    turns.request_done()
    gevent.sleep(0.001)  # waiting for the next request: the loop runs
    ran = []
    gevent.spawn(ran.append, "other connection")
    turns.request_done()
    assert ran == []
    gevent.sleep(0)
    assert ran == ["other connection"]
