"""``consume``: in this process, where its spans can be seen, and in consumer processes
(``baseplate-script``, with threads or under gevent), where a crash and a SIGTERM are real."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from kombu import Connection
from opentelemetry.trace import SpanKind, StatusCode

from baseplate.queue_consumer import ConsumerContext, consume
from tests._helpers import wait_until
from tests.context.amqp_broker import BROKER_URL
from tests.context.serving import make_baseplate, statsd_lines
from tests.queue_consumer.broker import ROUTING_KEYS
from tests.server import child_environ, command

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 30.0


class StopTestError(Exception):
    """Raised by a test's handler to end ``consume`` (the documented way out)."""


def run_consume(baseplate, test_queue, handler, routing_keys=ROUTING_KEYS):
    consume(
        baseplate,
        exchange=test_queue.exchange,
        connection=Connection(BROKER_URL),
        queue_name=test_queue.name,
        routing_keys=list(routing_keys),
        handler=handler,
    )


# -- in this process ------------------------------------------------------------------


def test_each_message_is_handled_in_its_own_server_span(test_queue, recorder, spans):
    baseplate = make_baseplate(recorder=recorder)
    test_queue.publish("first", "second")
    test_queue.publish("last", routing_key="things.deleted")
    seen = []

    def handler(context, body, message):
        assert isinstance(context, ConsumerContext)
        assert context.trace.name == test_queue.name
        assert not message.acknowledged  # acknowledged after the handler returns
        assert all(previous.acknowledged for _, previous in seen)
        seen.append((body, message))
        if body == "last":
            raise StopTestError(body)

    with pytest.raises(StopTestError):
        run_consume(baseplate, test_queue, handler)

    assert [body for body, _ in seen] == ["first", "second", "last"]
    assert [message.acknowledged for _, message in seen] == [True, True, False]
    test_queue.wait_for_ready_count(1)  # the message it failed on, back in the queue

    queue = test_queue.name
    ok = [
        (queue, "on_server_span_created"),
        (queue, "on_start"),
        (queue, "on_child_span_created", "kombu.get_message"),
        ("kombu.get_message", "on_start"),
    ]
    events = recorder.events
    assert events[: len(ok)] == ok
    server_finishes = [event for event in events if event[:2] == (queue, "on_finish")]
    assert [event[2] for event in server_finishes[:2]] == [None, None]
    failure = server_finishes[2][2]
    assert failure[0] is StopTestError
    assert str(failure[1]) == "last"

    finished = spans.get_finished_spans()
    assert [span.name for span in finished] == ["kombu.get_message", queue] * 3
    for child, server in zip(finished[::2], finished[1::2], strict=True):
        assert server.kind is SpanKind.SERVER
        assert server.parent is None
        assert child.parent.span_id == server.context.span_id
        assert child.attributes["kind"] == "consumer"
        assert child.attributes["exchange"] == queue
    assert finished[1].context.trace_id != finished[3].context.trace_id
    assert finished[4].attributes["routing_key"] == "things.deleted"
    assert finished[3].status.status_code is not StatusCode.ERROR
    assert finished[5].status.status_code is StatusCode.ERROR


def test_each_message_is_timed_and_counted(test_queue, statsd):
    baseplate = make_baseplate(statsd)
    test_queue.publish("ok", "ok", "fail")

    def handler(context, body, message):
        context.metrics.counter("handled").increment()
        if body == "fail":
            raise StopTestError

    with pytest.raises(StopTestError):
        run_consume(baseplate, test_queue, handler)

    timers = [re.sub(r":[\d.]+\|ms$", ":<ms>|ms", line) for line in statsd_lines(statsd)]
    server = f"svc.server.{test_queue.name}"
    assert Counter(timers) == {
        f"{server}:<ms>|ms": 3,
        f"{server}.success:1|c": 2,
        f"{server}.failure:1|c": 1,
        "svc.clients.kombu.get_message:<ms>|ms": 3,
        "svc.clients.kombu.get_message.success:1|c": 3,
        "svc.handled:1|c": 3,
    }


def test_a_message_the_handler_settled_itself_is_left_as_it_is(test_queue):
    test_queue.publish("poison", "fine", "last")
    seen = []

    def handler(context, body, message):
        seen.append(body)
        if body == "poison":
            message.reject()  # dropped: the queue has no dead-letter exchange
        elif body == "last":
            raise StopTestError

    with pytest.raises(StopTestError):
        run_consume(make_baseplate(), test_queue, handler)

    assert seen == ["poison", "fine", "last"]
    test_queue.wait_for_ready_count(1)
    assert test_queue.drain() == ["last"]


def test_sigterm_finishes_the_message_in_hand_then_returns(test_queue):
    baseplate = make_baseplate()
    bodies = [f"m{number}" for number in range(5)]
    test_queue.publish(*bodies)
    handled = []
    before = signal.getsignal(signal.SIGTERM)

    def handler(context, body, message):
        if body == "m1":
            os.kill(os.getpid(), signal.SIGTERM)
        handled.append(body)

    run_consume(baseplate, test_queue, handler)  # returns: no exception

    assert handled == ["m0", "m1"]
    assert signal.getsignal(signal.SIGTERM) is before
    test_queue.wait_for_ready_count(3)
    assert test_queue.drain() == ["m2", "m3", "m4"]


def test_the_sigterm_handler_is_restored_after_a_crash(test_queue):
    before = signal.getsignal(signal.SIGTERM)
    during = []
    test_queue.publish("only")

    def handler(context, body, message):
        during.append(signal.getsignal(signal.SIGTERM))
        raise StopTestError

    with pytest.raises(StopTestError):
        run_consume(make_baseplate(), test_queue, handler)

    assert during[0] is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_consume_declares_and_binds_the_queue(test_queue):
    test_queue.publish("unrouted", routing_key="things.updated")  # not bound yet: dropped
    received = []

    def handler(context, body, message):
        received.append((body, message.delivery_info["routing_key"]))
        if body == "routed":
            raise StopTestError

    def publish_once_bound():
        wait_until(lambda: test_queue.consumer_count() == 1, "the consumer")
        test_queue.publish("routed", routing_key="things.updated")

    publisher = threading.Thread(target=publish_once_bound)
    publisher.start()
    with pytest.raises(StopTestError):
        run_consume(make_baseplate(), test_queue, handler, routing_keys=["things.updated"])
    publisher.join()

    assert received == [("routed", "things.updated")]


# -- in consumer processes ------------------------------------------------------------

RUNTIMES = {
    "threads": [command("baseplate-script")],
    "gevent": [sys.executable, "-m", "tests.queue_consumer.gevent_script"],
}

CONSUMER_INI = """\
[app:main]
amqp.hostname = {broker}
amqp.exchange_name = {name}
amqp.exchange_type = direct
consumer.queue_name = {name}
consumer.routing_keys = {routing_keys}
consumer.record = {record}
consumer.delay = {delay}
{extra}
metrics.namespace = svc
metrics.endpoint = {statsd}
"""


class ConsumerProcess:
    """A consumer process; its output goes to a file, its handled messages to another."""

    def __init__(self, runtime, directory, test_queue, statsd, delay=0.0, fail_on=None):
        directory.mkdir()
        self.record = directory / "handled.jsonl"
        self.record.touch()
        ini = directory / "consumer.ini"
        ini.write_text(
            CONSUMER_INI.format(
                broker=BROKER_URL,
                name=test_queue.name,
                routing_keys=", ".join(ROUTING_KEYS),
                record=self.record,
                delay=delay,
                extra=f"consumer.fail_on = {fail_on}" if fail_on else "",
                statsd=statsd.endpoint,
            )
        )
        self.output = directory / "output.txt"
        with open(self.output, "w") as output:
            self.process = subprocess.Popen(
                [*RUNTIMES[runtime], str(ini), "tests.queue_consumer.consumer_app:run"],
                cwd=ROOT,
                env=child_environ(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def handled(self):
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def wait_for_handled(self, count):
        return (
            wait_until(
                lambda: len(self.handled()) >= count or self.process.poll() is not None,
                f"{count} messages handled",
            )
            and self.handled()
        )

    def wait(self):
        return self.process.wait(STOP_TIMEOUT)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_consumer(test_queue, statsd, tmp_path):
    """``start_consumer(runtime, delay=..., fail_on=...)``: a consumer process of the test's
    queue, sending metrics to ``statsd``; killed, if still running, before the queue goes."""
    started = []

    def start(runtime, **options):
        directory = tmp_path / f"consumer-{len(started)}"
        consumer = ConsumerProcess(runtime, directory, test_queue, statsd, **options)
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        consumer.kill()


def bodies_of(handled):
    return [line["body"] for line in handled]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_consumer_process_handles_every_message_and_stops_on_sigterm(
    runtime, start_consumer, test_queue, statsd
):
    bodies = [f"m{number}" for number in range(5)]
    test_queue.publish(*bodies)
    consumer = start_consumer(runtime)

    assert bodies_of(consumer.wait_for_handled(5)) == bodies
    status = consumer.stop()

    output = consumer.output.read_text()
    assert status == 0, output
    assert output.splitlines()[-1] == "consume returned"
    assert "Traceback" not in output
    assert test_queue.ready_count() == 0
    lines = Counter(re.sub(r":[\d.]+\|ms$", ":<ms>|ms", line) for line in statsd_lines(statsd))
    assert lines[f"svc.server.{test_queue.name}.success:1|c"] == 5
    assert lines["svc.clients.kombu.get_message.success:1|c"] == 5


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_handler_exception_crashes_the_process_and_the_message_is_redelivered(
    runtime, start_consumer, test_queue, statsd
):
    bodies = [f"m{number}" for number in range(6)]
    test_queue.publish(*bodies)

    crashing = start_consumer(runtime, fail_on="m2")
    status = crashing.wait()

    output = crashing.output.read_text()
    assert status != 0, output
    assert "HandlerFailedError: m2" in output
    assert bodies_of(crashing.handled()) == ["m0", "m1"]
    assert f"svc.server.{test_queue.name}.failure:1|c" in statsd_lines(statsd)
    test_queue.wait_for_ready_count(4)  # the failed one and those received after it

    successor = start_consumer(runtime)
    handled = successor.wait_for_handled(4)
    assert successor.stop() == 0, successor.output.read_text()

    assert bodies_of(handled) == ["m2", "m3", "m4", "m5"]
    assert handled[0]["redelivered"] is True
    assert test_queue.ready_count() == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigterm_in_mid_stream_loses_no_message_and_handles_none_twice(
    runtime, start_consumer, test_queue
):
    bodies = [f"m{number:02}" for number in range(40)]
    test_queue.publish(*bodies)
    consumer = start_consumer(runtime, delay=0.05)
    consumer.wait_for_handled(5)

    status = consumer.stop()

    assert status == 0, consumer.output.read_text()
    handled = bodies_of(consumer.handled())
    assert len(handled) < len(bodies), "the consumer finished before the signal"
    # Every message handled was acknowledged (the one in hand too), and every
    # other one is back in the queue.
    test_queue.wait_for_ready_count(len(bodies) - len(handled))
    left = test_queue.drain()
    assert sorted(handled + left) == bodies
