"""The pool pool_from_config makes reports its gauges and leaked connections per request."""

from __future__ import annotations

import logging

import pytest

from baseplate.context.redis import RedisContextFactory, WatchedConnectionPool, pool_from_config
from tests.context.serving import make_baseplate, serve, statsd_lines


@pytest.fixture
def pool():
    pool = pool_from_config({"redis.url": "redis://127.0.0.1:6379/0", "redis.max_connections": "7"})
    yield pool
    pool.disconnect()


@pytest.fixture
def baseplate(pool, statsd):
    return make_baseplate(statsd, redis=RedisContextFactory(pool))


def test_the_pool_is_watched(pool):
    assert isinstance(pool, WatchedConnectionPool)


def test_a_request_reports_the_pool_gauges(baseplate, statsd, redis_key):
    serve(baseplate, lambda context: context.redis.set(redis_key, "x"))
    sent = statsd_lines(statsd)
    assert "svc.clients.redis.pool.size:7|g" in sent
    assert "svc.clients.redis.pool.in_use:0|g" in sent
    assert not [line for line in sent if "leaked" in line]


def subscribe_and_forget(context, channel):
    pubsub = context.redis.pubsub()
    pubsub.subscribe(channel)  # holds a connection until reset, which never comes
    return pubsub


def test_a_subscription_left_open_is_a_leak(baseplate, statsd, pool, caplog, redis_key):
    held = []
    with caplog.at_level(logging.WARNING, logger="baseplate.context.pool_watch"):
        server_span = serve(baseplate, lambda c: held.append(subscribe_and_forget(c, redis_key)))

    sent = statsd_lines(statsd)
    assert "svc.clients.redis.pool.leaked:1|c" in sent
    assert "svc.clients.redis.pool.in_use:1|g" in sent
    [warning] = caplog.records
    message = warning.getMessage()
    assert f"trace {server_span.trace_id}" in message
    assert "in subscribe_and_forget" in message
    assert "pubsub.subscribe(channel)" in message
    held[0].close()  # gives the connection back
    serve(baseplate, lambda context: context.redis.get(redis_key))
    assert "svc.clients.redis.pool.in_use:0|g" in statsd_lines(statsd)
