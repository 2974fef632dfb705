"""Behaviour of baseplate.metrics beyond the reference vectors: transports,
failure handling, batching limits and configuration."""

from __future__ import annotations

import errno
import logging
import socket
import time

import pytest

from baseplate import config, metrics, metrics_client_from_config
from baseplate._state import state
from baseplate.config import ConfigurationError, EndpointConfiguration
from baseplate.testing import reset_state


def client_for(receiver, namespace="svc"):
    return metrics_client_from_config(
        {"metrics.namespace": namespace, "metrics.endpoint": receiver.endpoint}
    )


def unused_udp_endpoint() -> EndpointConfiguration:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()
    sock.close()
    return EndpointConfiguration(socket.AF_INET, address)


def test_each_client_metric_is_its_own_datagram(statsd):
    client = client_for(statsd)
    client.counter("a").increment()
    client.histogram("b").add_sample(3)
    client.gauge("c").replace(0.5)
    assert statsd.received() == [b"svc.a:1|c", b"svc.b:3|h", b"svc.c:0.5|g"]


def test_unix_socket_endpoint(unix_statsd):
    assert "/" in unix_statsd.endpoint
    client = client_for(unix_statsd)
    client.counter("over.unix").increment(2)
    assert unix_statsd.received() == [b"svc.over.unix:2|c"]


def test_timer_context_manager_reports_milliseconds(statsd, clock):
    client = client_for(statsd)
    with client.timer("work"):
        clock.now += 0.0009765625
    assert statsd.received() == [b"svc.work:0.976562|ms"]


def test_timer_measures_once(statsd, clock):
    # As in the original, a timer is started once and stopped once; starting
    # it again, or stopping it twice, is a mistake that raises.
    timer = client_for(statsd).timer("t")
    timer.start()
    with pytest.raises(RuntimeError, match=r"^timer 'svc.t' was already started$"):
        timer.start()
    clock.now += 1.0
    timer.stop()
    with pytest.raises(RuntimeError, match=r"^timer 'svc.t' was already stopped$"):
        timer.stop()
    with pytest.raises(RuntimeError, match="already started"):
        timer.start()
    assert statsd.received() == [b"svc.t:1000|ms"]


def test_timer_send_needs_no_start(statsd):
    timer = client_for(statsd).timer("t")
    timer.send(3.14)
    timer.send(0.5)
    assert statsd.received() == [b"svc.t:3140|ms", b"svc.t:500|ms"]


def test_timer_stopped_before_start_raises_and_sends_nothing(statsd):
    timer = client_for(statsd).timer("t")
    with pytest.raises(RuntimeError, match="before it was started"):
        timer.stop()
    assert statsd.received() == []


def test_non_ascii_name_is_rejected_when_the_metric_is_made(statsd):
    client = client_for(statsd)
    for factory in (client.counter, client.timer, client.gauge, client.histogram):
        with pytest.raises(UnicodeEncodeError):
            factory("caf\u00e9")
    with pytest.raises(UnicodeEncodeError):
        client.batch().counter("caf\u00e9")


def test_empty_namespace_adds_no_leading_dot(statsd):
    metrics.make_client("", config.Endpoint(statsd.endpoint)).counter("x").increment()
    assert statsd.received() == [b"x:1|c"]


def test_namespace_is_required_in_config(statsd):
    # metrics.namespace is a config.String, which rejects the empty string.
    with pytest.raises(ConfigurationError, match=r"^metrics.namespace: required but missing$"):
        metrics_client_from_config({"metrics.endpoint": statsd.endpoint})


def test_names_are_ascii_bytes_as_in_the_original():
    client = metrics.make_client("svc", None)
    assert client.namespace == b"svc"
    assert client.batch().namespace == b"svc"
    assert client.timer("a.b").name == b"svc.a.b"
    assert client.counter(".c.").name == b"svc.c"
    assert client.batch().counter("d").name == b"svc.d"
    with pytest.raises(UnicodeEncodeError):
        metrics.BaseClient(metrics.NullTransport(), "\u2603")


class Recorder:
    """A transport that keeps what it is sent."""

    def __init__(self):
        self.sent = []

    def send(self, serialized_metric):
        self.sent.append(serialized_metric)


def test_metrics_made_directly_take_bytes_or_text_names():
    transport = Recorder()
    metrics.Counter(transport, b"c").increment(2, sample_rate=0.5)
    metrics.Counter(transport, "c").decrement()
    metrics.Gauge(transport, b"g").replace(33)
    metrics.Histogram(transport, "h").add_sample(1.5)
    metrics.Timer(transport, b"t").send(3.14)
    assert transport.sent == [b"c:2|c|@0.5", b"c:-1|c", b"g:33|g", b"h:1.5|h", b"t:3140|ms"]


def test_batch_counter_sums_per_sample_rate_until_flushed():
    transport = Recorder()
    counter = metrics.BatchCounter(transport, b"example")
    counter.increment()
    counter.increment(3)
    counter.increment(sample_rate=0.5)
    assert counter.packets == {1.0: 4, 0.5: 1}
    assert transport.sent == []
    counter.flush()
    assert transport.sent == [b"example:4|c", b"example:1|c|@0.5"]
    assert counter.packets == {}
    counter.flush()
    assert len(transport.sent) == 2


def test_batch_keeps_one_counter_per_name():
    batch = metrics.make_client("svc", None).batch()
    counter = batch.counter("some_counter")
    assert isinstance(counter, metrics.BatchCounter)
    assert batch.counter("some_counter") is counter
    assert batch.counters == {b"svc.some_counter": counter}


def test_batch_sends_through_a_buffered_transport():
    transport = Recorder()
    batch = metrics.Batch(transport, "svc")
    assert isinstance(batch.transport, metrics.BufferedTransport)
    assert batch.transport.transport is transport
    with batch:
        batch.counter("c").increment()
        batch.gauge("g").replace(1)
        assert transport.sent == []
    assert transport.sent == [b"svc.g:1|g\nsvc.c:1|c"]


def test_buffered_transport_sends_lines_together():
    transport = Recorder()
    buffered = metrics.BufferedTransport(transport)
    for line in (b"a", b"b", b"c"):
        buffered.send(line)
    assert buffered.buffer == [b"a", b"b", b"c"]
    buffered.flush()
    buffered.flush()
    assert transport.sent == [b"a\nb\nc"]
    assert buffered.buffer == []


def test_buffered_transport_logs_a_transport_error_once_then_counts_it(caplog):
    class Failing:
        def send(self, serialized_metric):
            raise OSError(errno.EMSGSIZE, "Message too long")

    reset_state()
    buffered = metrics.BufferedTransport(Failing())
    with caplog.at_level(logging.WARNING, logger="baseplate.metrics"):
        for _ in range(3):
            for _ in range(10000):
                buffered.send(b"a")
            buffered.flush()
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    expected = f"could not send a 19999-byte datagram: [Errno {errno.EMSGSIZE}] Message too long"
    assert expected in warning.message
    assert state.metrics_flush_failures.count((OSError, errno.EMSGSIZE)) == 3


def test_batch_flushes_at_end_of_with_block_even_on_error(statsd):
    client = client_for(statsd)
    with pytest.raises(KeyError), client.batch() as batch:
        batch.counter("before.error").increment()
        raise KeyError("boom")
    assert statsd.received() == [b"svc.before.error:1|c"]


def test_batch_flush_empties_the_batch(statsd):
    batch = client_for(statsd).batch()
    batch.counter("c").increment()
    batch.gauge("g").replace(1)
    batch.flush()
    batch.flush()
    batch.counter("c").increment(5)
    batch.flush()
    assert statsd.received() == [b"svc.g:1|g\nsvc.c:1|c", b"svc.c:5|c"]


def test_empty_batch_sends_nothing(statsd):
    client_for(statsd).batch().flush()
    assert statsd.received() == []


def test_batch_sends_nothing_before_flush(statsd):
    batch = client_for(statsd).batch()
    batch.histogram("h").add_sample(1)
    batch.counter("c").increment()
    assert statsd.received() == []


def test_large_batch_is_split_at_line_boundaries(statsd):
    batch = client_for(statsd).batch()
    lines = [f"svc.metric.{i:05d}:{i}|h".encode() for i in range(5000)]
    for i in range(5000):
        batch.histogram(f"metric.{i:05d}").add_sample(i)
    batch.flush()

    datagrams = statsd.received()
    assert len(datagrams) > 1
    assert all(len(d) <= metrics.MAX_DATAGRAM_BYTES for d in datagrams)
    assert b"\n".join(datagrams).split(b"\n") == lines


def test_refused_endpoint_is_counted_not_raised(caplog):
    client = metrics.make_client("svc", unused_udp_endpoint())
    with caplog.at_level(logging.DEBUG, logger="baseplate.metrics"):
        for _ in range(5):
            client.counter("nobody.listens").increment()
    # Linux reports the ICMP port-unreachable on the following send.
    assert client.transport.dropped_datagrams >= 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "the same failure is logged at warning level once"


def test_full_receiver_drops_instead_of_blocking(tmp_path):
    path = str(tmp_path / "slow.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    receiver.bind(path)
    try:
        client = metrics.make_client("svc", EndpointConfiguration(socket.AF_UNIX, path))
        for _ in range(10_000):  # never read: the receiver's queue fills up
            client.gauge("g").replace(1)
        assert client.transport.dropped_datagrams > 0
    finally:
        receiver.close()


def test_oversized_datagram_is_dropped_and_counted(statsd):
    client = client_for(statsd)
    client.counter("x" * (metrics.MAX_DATAGRAM_BYTES + 1)).increment()
    client.counter("after").increment()
    assert client.transport.dropped_datagrams == 1
    assert statsd.received() == [b"svc.after:1|c"]


def test_missing_unix_socket_reconnects_once_it_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "RECONNECT_INTERVAL_SECONDS", 0.0)
    path = str(tmp_path / "late.sock")
    client = metrics.make_client("svc", EndpointConfiguration(socket.AF_UNIX, path))
    client.counter("lost").increment()
    assert client.transport.dropped_datagrams == 1

    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    try:
        client.counter("arrives").increment()
        assert receiver.recv(1024) == b"svc.arrives:1|c"
    finally:
        receiver.close()


def test_a_slow_name_lookup_never_holds_up_a_send(statsd, monkeypatch):
    """statsd named by host, DNS down at start and slow later: sends never wait for it."""
    monkeypatch.setattr(metrics, "RECONNECT_INTERVAL_SECONDS", 0.0)
    host, port = statsd.endpoint.rsplit(":", 1)
    lookups: list[float] = []

    def dns(name, *args, **kwargs):
        lookups.append(time.monotonic())
        if len(lookups) == 1:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        time.sleep(1.0)  # answers, but slowly
        return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", (host, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", dns)
    endpoint = EndpointConfiguration(socket.AF_INET, ("statsd.internal", int(port)))
    client = metrics.make_client("svc", endpoint)
    slowest = 0.0
    arrived: list[bytes] = []
    deadline = time.monotonic() + 10
    while not arrived and time.monotonic() < deadline:
        started = time.monotonic()
        client.counter("late").increment()
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.05)
        arrived = statsd.received()
    assert arrived == [b"svc.late:1|c"]
    assert slowest < 0.5, f"a send waited {slowest:.2f} s for DNS"
    assert client.transport.dropped_datagrams >= 1  # sent while the name was unknown
    assert len(lookups) == 2  # one failed lookup at start, one in the background
    client.counter("kept").increment()
    assert b"svc.kept:1|c" in statsd.received()


def test_reconnect_waits_for_the_interval(tmp_path):
    path = str(tmp_path / "late.sock")
    client = metrics.make_client("svc", EndpointConfiguration(socket.AF_UNIX, path))
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    try:
        client.counter("too.soon").increment()
        assert client.transport.dropped_datagrams == 1
    finally:
        receiver.close()


def test_no_endpoint_discards(caplog):
    client = metrics.make_client("svc", None)
    assert isinstance(client.transport, metrics.NullTransport)
    with caplog.at_level(logging.DEBUG, logger="baseplate.metrics"):
        client.counter("x").increment()
        with client.batch() as batch:
            batch.counter("y").increment()
    assert [r.getMessage() for r in caplog.records] == [
        "metrics not sent (no endpoint configured): b'svc.x:1|c'",
        "metrics not sent (no endpoint configured): b'svc.y:1|c'",
    ]


@pytest.mark.parametrize("raw", [{"metrics.endpoint": ""}, {}])
def test_config_without_endpoint_discards(raw):
    client = metrics_client_from_config({"metrics.namespace": "svc", **raw})
    assert isinstance(client.transport, metrics.NullTransport)
    assert client.namespace == b"svc"


def test_config_with_bad_endpoint_names_the_key():
    with pytest.raises(ConfigurationError) as info:
        metrics_client_from_config({"metrics.namespace": "svc", "metrics.endpoint": "nope"})
    assert info.value.key == "metrics.endpoint"
    assert "nope" in str(info.value)


def test_config_endpoint_is_parsed_like_config_endpoint(statsd):
    client = client_for(statsd)
    assert client.transport.endpoint == config.Endpoint(statsd.endpoint)


def test_endpoint_gives_a_raw_transport(statsd):
    # RawTransport is the original's name for the socket transport.
    client = metrics.make_client("svc", config.Endpoint(statsd.endpoint))
    assert isinstance(client.transport, metrics.RawTransport)
