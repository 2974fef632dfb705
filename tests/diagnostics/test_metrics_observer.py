"""The metrics observer on facade spans: exactly the lines the batch's API would write.

The observer writes a plain :class:`~baseplate.metrics.Batch` directly (see
:mod:`baseplate.diagnostics.metrics`) and drives any other batch through its
``timer`` and ``counter`` methods. Each scenario runs both ways (the
``client`` fixture: a plain client, and one whose batches are of a subclass)
against the same literal datagrams, with ``time.time`` frozen, so the two
cannot drift apart from each other or from what statsd has always been sent.
"""

from __future__ import annotations

import decimal
import logging
import math
import random
import struct
import types
from typing import Any
from unittest import mock

import pytest

from baseplate import metrics, metrics_client_from_config
from baseplate.core import Baseplate
from baseplate.diagnostics import metrics as observer_module
from baseplate.testing import reset_state


class SubclassBatch(metrics.Batch):
    """A batch of another class than Batch: the observer drives it through its API."""


class SubclassBatchClient(metrics.Client):
    def batch(self) -> metrics.Batch:
        return SubclassBatch(self.transport, self.namespace)


@pytest.fixture(params=["plain batch", "batch subclass"])
def make_client(request, statsd):
    def make(namespace: str = "svc") -> metrics.Client:
        transport = metrics_client_from_config(
            {"metrics.namespace": "unused", "metrics.endpoint": statsd.endpoint}
        ).transport
        if request.param == "batch subclass":
            return SubclassBatchClient(transport, namespace)
        return metrics.Client(transport, namespace)

    return make


@pytest.fixture
def client(make_client) -> metrics.Client:
    return make_client()


def baseplate_for(client: metrics.Client) -> Baseplate:
    baseplate = Baseplate()
    baseplate.configure_metrics(client)
    return baseplate


def context() -> Any:
    return types.SimpleNamespace()


def boom() -> None:
    raise ValueError("boom")


def test_the_observer_takes_the_short_cut_only_for_a_plain_batch(client, statsd):
    span = baseplate_for(client).make_server_span(context(), "handle")
    (observer,) = span.observers
    direct = type(client) is metrics.Client
    assert isinstance(observer, observer_module.MetricsServerSpanObserver) is direct
    assert isinstance(observer, observer_module.BatchApiServerSpanObserver) is not direct


def test_a_request_with_the_applications_own_metrics_interleaved(client, statsd, clock):
    baseplate = baseplate_for(client)
    ctx = context()
    with baseplate.make_server_span(ctx, "handle") as server:
        ctx.metrics.counter("app.first").increment()
        # Asked for before the span's own counter: it keeps this position.
        ctx.metrics.counter("clients.users.get.success").increment(2)
        with server.make_child("users.get") as child:
            child.set_tag("peer.service", "users")
            clock.now += 0.25
        ctx.metrics.timer("app.step").send(0.5)
        with pytest.raises(ValueError), server.make_child("db.query") as child:
            child.log("error.object", KeyError("k"))
            child.log("other", "ignored")
            clock.now += 0.0625
            boom()
        ctx.metrics.gauge("app.level").replace(3)
        with server.make_child("render", local=True, component_name="templates"):
            clock.now += 0.03125
        ctx.metrics.histogram("app.size").add_sample(512)
        ctx.metrics.counter("app.sampled").increment(sample_rate=0.5)
        ctx.metrics.counter("app.sampled").increment(3)
        with server.make_child("users.get"):
            clock.now += 0.125
        clock.now += 1

    assert statsd.received() == [
        b"\n".join(
            [
                b"svc.clients.users.get:250|ms",
                b"svc.app.step:500|ms",
                b"svc.clients.db.query:62.5|ms",
                b"svc.app.level:3|g",
                b"svc.templates.render:31.25|ms",
                b"svc.app.size:512|h",
                b"svc.clients.users.get:125|ms",
                b"svc.server.handle:1468.75|ms",
                b"svc.app.first:1|c",
                b"svc.clients.users.get.success:4|c",
                b"svc.errors.KeyError:1|c",
                b"svc.clients.db.query.failure:1|c",
                b"svc.app.sampled:1|c|@0.5",
                b"svc.app.sampled:3|c",
                b"svc.server.handle.success:1|c",
            ]
        )
    ]


def test_a_failed_request_and_one_after_it(client, statsd, clock):
    baseplate = baseplate_for(client)
    with pytest.raises(ValueError), baseplate.make_server_span(context(), "handle"):
        clock.now += 0.25
        boom()
    with baseplate.make_server_span(context(), "handle") as server, server.make_child("c"):
        clock.now += 0.5

    assert statsd.received() == [
        b"svc.server.handle:250|ms\nsvc.server.handle.failure:1|c",
        b"svc.clients.c:500|ms\nsvc.server.handle:500|ms\n"
        b"svc.clients.c.success:1|c\nsvc.server.handle.success:1|c",
    ]


def test_a_flush_by_the_application_sends_what_came_before(client, statsd, clock):
    ctx = context()
    with baseplate_for(client).make_server_span(ctx, "handle") as server:
        with server.make_child("a"):
            clock.now += 0.25
        ctx.metrics.flush()
        with server.make_child("a"):
            clock.now += 0.5

    assert statsd.received() == [
        b"svc.clients.a:250|ms\nsvc.clients.a.success:1|c",
        # The counter was flushed to zero, not forgotten: it keeps its place.
        b"svc.clients.a:500|ms\nsvc.server.handle:750|ms\n"
        b"svc.clients.a.success:1|c\nsvc.server.handle.success:1|c",
    ]


def test_children_of_children_are_not_measured(client, statsd, clock):
    with baseplate_for(client).make_server_span(context(), "handle") as server:
        with server.make_child("outer") as child, child.make_child("inner"):
            clock.now += 0.25
        with (
            server.make_child("work", local=True, component_name="jobs") as local,
            local.make_child("inner.call"),
        ):
            clock.now += 0.25

    assert statsd.received() == [
        b"svc.clients.outer:250|ms\nsvc.jobs.work:250|ms\nsvc.server.handle:500|ms\n"
        b"svc.clients.outer.success:1|c\nsvc.server.handle.success:1|c"
    ]


@pytest.mark.parametrize(
    ("namespace", "server_name", "child_name", "expected"),
    [
        # The dots at the ends of each whole name are stripped, so a counter
        # is not its timer's name with ".success" appended.
        (
            "svc.",
            ".handle.",
            "peer.",
            b"svc.clients.peer:0|ms\nsvc.server..handle:0|ms\n"
            b"svc.clients.peer..success:1|c\nsvc.server..handle..success:1|c",
        ),
        (
            "",
            "",
            "",
            b"clients:0|ms\nserver:0|ms\nclients..success:1|c\nserver..success:1|c",
        ),
        # A % in a name stands for itself.
        (
            "s%s",
            "100%",
            "%g%%",
            b"s%s.clients.%g%%:0|ms\ns%s.server.100%:0|ms\n"
            b"s%s.clients.%g%%.success:1|c\ns%s.server.100%.success:1|c",
        ),
    ],
    ids=["dots at the ends", "empty", "percent signs"],
)
def test_odd_names(make_client, statsd, clock, namespace, server_name, child_name, expected):
    client = make_client(namespace)
    server = baseplate_for(client).make_server_span(context(), server_name)
    with server, server.make_child(child_name):
        pass

    assert statsd.received() == [expected]


def test_a_non_ascii_server_span_name_fails_the_request_as_before(client, statsd):
    # Making the metric raised, and on_server_span_created may raise: the
    # request cannot start. Its context has its batch all the same.
    ctx = context()
    with pytest.raises(UnicodeEncodeError):
        baseplate_for(client).make_server_span(ctx, "café")
    assert isinstance(ctx.metrics, metrics.Batch)
    assert statsd.received() == []


def test_a_non_ascii_child_name_loses_only_that_childs_metrics(client, statsd, clock, caplog):
    reset_state()  # the observer's failure is then the first of its kind, logged
    with baseplate_for(client).make_server_span(context(), "handle") as server:
        with server.make_child("café"):
            clock.now += 0.25
        with server.make_child("naïve", local=True, component_name="jobs"):
            clock.now += 0.25
        with server.make_child("ok") as child:
            child.log("error.object", type("Erreür", (Exception,), {})())
            clock.now += 0.25

    assert statsd.received() == [
        b"svc.clients.ok:250|ms\nsvc.server.handle:750|ms\n"
        b"svc.clients.ok.success:1|c\nsvc.server.handle.success:1|c"
    ]
    failures = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.exc_info[0] for record in failures if record.exc_info] == [
        UnicodeEncodeError,  # on_child_span_created, logged once for both children
        UnicodeEncodeError,  # on_log
    ]


def test_a_span_started_twice_is_timed_from_its_first_start(client, statsd, clock):
    with baseplate_for(client).make_server_span(context(), "handle") as server:
        child = server.make_child("c")
        child.start()
        clock.now += 0.25
        (observer,) = child.observers
        with pytest.raises(RuntimeError, match=r"^timer 'svc.clients.c' was already started$"):
            observer.on_start()
        clock.now += 0.25
        child.finish()

    assert statsd.received() == [
        b"svc.clients.c:500|ms\nsvc.server.handle:500|ms\n"
        b"svc.clients.c.success:1|c\nsvc.server.handle.success:1|c"
    ]


def test_a_span_finished_unstarted_records_nothing(client, statsd, clock):
    with baseplate_for(client).make_server_span(context(), "handle") as server:
        server.make_child("never.started").finish()
        idle = server.make_child("idle", local=True, component_name="jobs")
        (observer,) = idle.observers
        message = r"^timer 'svc.jobs.idle' was stopped before it was started$"
        with pytest.raises(RuntimeError, match=message):
            observer.on_finish(None)

    assert statsd.received() == [b"svc.server.handle:0|ms\nsvc.server.handle.success:1|c"]

    # As with the Timer it used to be: an unstarted request is not even flushed.
    ctx = context()
    baseplate_for(client).make_server_span(ctx, "handle").finish()
    assert statsd.received() == []
    ctx.metrics.flush()
    assert statsd.received() == []


class _Instant:
    """A time from a patched clock whose differences are not floats."""

    def __init__(self, seconds: str) -> None:
        self.seconds = decimal.Decimal(seconds)

    def __sub__(self, other: _Instant) -> _Seconds:
        return _Seconds(self.seconds - other.seconds)


class _Seconds:
    def __init__(self, value: decimal.Decimal) -> None:
        self.value = value

    def __mul__(self, factor: float) -> decimal.Decimal:
        return self.value * decimal.Decimal(repr(factor))


def test_a_duration_that_is_not_a_float_is_written_as_the_timer_writes_it(
    client, statsd, monkeypatch
):
    now = [_Instant("10")]
    monkeypatch.setattr("time.time", lambda: now[0])
    with baseplate_for(client).make_server_span(context(), "handle") as server:
        with server.make_child("c"):
            now[0] = _Instant("10.0001234567")
        now[0] = _Instant("10.5")

    # Decimal's "g" keeps every digit, unlike a float's.
    assert statsd.received() == [
        b"svc.clients.c:0.12345670000|ms\nsvc.server.handle:500.00|ms\n"
        b"svc.clients.c.success:1|c\nsvc.server.handle.success:1|c"
    ]


def test_a_stand_in_client_is_driven_through_its_api():
    # Applications' tests hand Baseplate mocks; the observer must not look
    # inside what they return.
    client = mock.Mock()
    ctx = context()
    server = baseplate_for(client).make_server_span(ctx, "handle")
    with server, server.make_child("c"):
        pass
    batch = client.batch.return_value
    assert ctx.metrics is batch
    batch.timer.assert_any_call("clients.c")
    batch.counter.assert_any_call("clients.c.success")
    batch.counter.assert_any_call("server.handle.success")
    batch.flush.assert_called_once_with()


# -- the name tables ---------------------------------------------------------------


def test_names_are_looked_up_once_per_span_name(monkeypatch, statsd, clock):
    client = metrics_client_from_config(
        {"metrics.namespace": "tables", "metrics.endpoint": statsd.endpoint}
    )
    made = []
    real_metric_name = observer_module._metric_name

    def counting_metric_name(namespace: bytes, name: str) -> bytes:
        made.append(name)
        return real_metric_name(namespace, name)

    monkeypatch.setattr(observer_module, "_name_tables", {})
    monkeypatch.setattr(observer_module, "_metric_name", counting_metric_name)
    baseplate = baseplate_for(client)
    for _ in range(3):
        with baseplate.make_server_span(context(), "handle") as server:
            with server.make_child("c"):
                pass
            with server.make_child("w", local=True, component_name="jobs"):
                pass

    assert made == [
        "server.handle",
        "server.handle.success",
        "server.handle.failure",
        "clients.c",
        "clients.c.success",
        "clients.c.failure",
        "jobs.w",
    ]
    assert len(statsd.received()) == 3


def test_the_name_tables_are_bounded(monkeypatch, statsd, clock):
    monkeypatch.setattr(observer_module, "NAME_TABLE_SIZE", 3)
    monkeypatch.setattr(observer_module, "NAMESPACE_TABLE_SIZE", 2)
    monkeypatch.setattr(observer_module, "_name_tables", {})
    tables = observer_module.name_tables(b"svc")
    client = metrics_client_from_config(
        {"metrics.namespace": "svc", "metrics.endpoint": statsd.endpoint}
    )
    baseplate = baseplate_for(client)
    sizes = []
    for i in range(10):
        with baseplate.make_server_span(context(), f"s{i}") as server:
            with server.make_child(f"c{i}"):
                pass
            with server.make_child(f"w{i}", local=True, component_name="jobs"):
                pass
        sizes.append((len(tables.server), len(tables.clients), len(tables.local)))

    assert max(max(size) for size in sizes) == 3
    assert sizes[3] == (1, 1, 1)  # emptied when full, then refilled
    received = statsd.received()
    assert received[9] == (
        b"svc.clients.c9:0|ms\nsvc.jobs.w9:0|ms\nsvc.server.s9:0|ms\n"
        b"svc.clients.c9.success:1|c\nsvc.server.s9.success:1|c"
    )

    for namespace in (b"a", b"b", b"c"):
        observer_module.name_tables(namespace)
    assert list(observer_module._name_tables) == [b"b", b"c"]
    assert observer_module.name_tables(b"a").namespace == b"a"


def test_a_local_span_is_named_from_the_text_of_its_parts(client, statsd, clock):
    # Components equal as keys but not as text stay apart; unhashable ones work.
    baseplate = baseplate_for(client)
    for component in (1, True, 1.0, ["jobs"]):
        server = baseplate.make_server_span(context(), "handle")
        with server, server.make_child("w", local=True, component_name=component):  # type: ignore[arg-type]
            clock.now += 0.25

    assert [datagram.split(b"\n")[0] for datagram in statsd.received()] == [
        b"svc.1.w:250|ms",
        b"svc.True.w:250|ms",
        b"svc.1.0.w:250|ms",
        b"svc.['jobs'].w:250|ms",
    ]


# -- number formatting ---------------------------------------------------------------


def _random_floats(count: int) -> list[float]:
    generator = random.Random(20240611)
    values = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1e16, 999999.5, 0.0001]
    for _ in range(count):
        values.append(struct.unpack("<d", generator.getrandbits(64).to_bytes(8, "little"))[0])
        values.append(generator.uniform(0, 10) * 10 ** generator.randint(-8, 8))
    return values


def test_a_timer_template_writes_a_float_as_the_timer_does():
    name = b"svc.clients.c"
    template = observer_module.timer_template(name)
    for value in _random_floats(20000):
        assert template % value == name + f":{value:g}|ms".encode()


@pytest.mark.parametrize("sample_rate", [1.0, 1, 0.5, 0.125, 2])
def test_a_counter_line_writes_numbers_as_it_always_did(sample_rate):
    def written_before(delta: object) -> bytes:
        if sample_rate == 1.0:
            return b"n" + f":{delta:g}|c".encode()
        return b"n" + f":{delta:g}|c|@{sample_rate:g}".encode()

    deltas: list[Any] = [*_random_floats(2000), *range(-1100, 1100), 2**53 + 1, 10**20]
    deltas += [True, decimal.Decimal("1.2345678"), decimal.Decimal("1.0")]
    for delta in deltas:
        assert metrics._counter_line(b"n", delta, sample_rate) == written_before(delta)
    with pytest.raises(OverflowError, match="int too large to convert to float"):
        metrics._counter_line(b"n", 10**400, sample_rate)


def test_a_batch_flushes_any_total_as_it_always_did(statsd):
    client = metrics_client_from_config(
        {"metrics.namespace": "svc", "metrics.endpoint": statsd.endpoint}
    )
    with client.batch() as batch:
        batch.counter("one").increment()
        batch.counter("float.one").increment(1.0)
        batch.counter("zero").increment(0)
        batch.counter("many").increment(1234567)
        batch.counter("decimal").increment(decimal.Decimal("1.0"))
        batch.counter("bool").increment(True)
        batch.counter("sampled").increment(2, sample_rate=0.25)

    assert statsd.received() == [
        b"svc.one:1|c\nsvc.float.one:1|c\nsvc.zero:0|c\nsvc.many:1.23457e+06|c\n"
        b"svc.decimal:1.0|c\nsvc.bool:1|c\nsvc.sampled:2|c|@0.25"
    ]
