"""Messages per second through ``queue_consumer.consume`` against a bare kombu consumer.

Three consumers take turns on the same queue of the RabbitMQ on 127.0.0.1:5672,
each in a process of its own, round after round, over the same number of
small messages published before each run:

* ``kombu``: a bare :class:`kombu.Consumer` acknowledging each message in its
  callback, on the thread that reads the socket;
* ``consume``: :func:`baseplate.queue_consumer.consume` with a
  :class:`~baseplate.core.Baseplate` that has no observer: the cost of the
  worker thread, the local queue and the span facade;
* ``consume+obs``: the same with full instrumentation: the metrics observer
  (one statsd datagram per message, to a UDP socket nobody reads), the
  logging observer, and tracing with ``tracing.exporter = none`` (every span
  created and recorded, none exported).

Every handler does nothing but count. A run is timed from the first message
handled to the last, so connecting is not counted; the figures are the
medians over the rounds, and the ratios are to the bare kombu consumer of the
same run. The broker keeps no message on disk (transient messages), so what
is measured is the consumer's side.

Run directly with ``--quick`` for a smaller, faster run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
ROUTING_KEY = "bench"
KINDS = ("kombu", "consume", "consume+obs")


def _kombu() -> Any:
    """kombu, whose functions are unannotated, typed as Any (imported late, in each process)."""
    return importlib.import_module("kombu")


# -- the consumers (in subprocesses) --------------------------------------------------


class _DoneError(Exception):
    """Ends ``consume`` at the last message, as a handler crashing would."""


def _consume_with_baseplate(queue_name: str, count: int, instrumented: bool) -> tuple[float, float]:
    kombu = _kombu()

    from baseplate import metrics_client_from_config, tracing_client_from_config
    from baseplate.core import Baseplate
    from baseplate.queue_consumer import consume

    baseplate = Baseplate()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    if instrumented:
        app_config = {
            "metrics.namespace": "bench",
            "metrics.endpoint": f"127.0.0.1:{sink.getsockname()[1]}",
            "tracing.service_name": "bench",
            "tracing.exporter": "none",
        }
        baseplate.configure_logging()
        baseplate.configure_metrics(metrics_client_from_config(app_config))
        baseplate.configure_tracing(tracing_client_from_config(app_config))
    handled = 0
    times = [0.0, 0.0]

    def handler(context: object, body: object, message: object) -> None:
        nonlocal handled
        handled += 1
        if handled == 1:
            times[0] = time.perf_counter()
        elif handled == count:
            times[1] = time.perf_counter()
            raise _DoneError

    try:
        consume(
            baseplate,
            exchange=kombu.Exchange(queue_name, "direct"),
            connection=kombu.Connection(BROKER_URL),
            queue_name=queue_name,
            routing_keys=[ROUTING_KEY],
            handler=handler,
        )
    except _DoneError:
        pass
    finally:
        sink.close()
    return times[0], times[1]


def _consume_with_kombu(queue_name: str, count: int) -> tuple[float, float]:
    kombu = _kombu()
    handled = 0
    times = [0.0, 0.0]

    def on_message(message: Any) -> None:
        nonlocal handled
        message.ack()
        handled += 1
        if handled == 1:
            times[0] = time.perf_counter()
        elif handled == count:
            times[1] = time.perf_counter()

    queue = kombu.Queue(queue_name, kombu.Exchange(queue_name, "direct"), ROUTING_KEY)
    with (
        kombu.Connection(BROKER_URL) as connection,
        kombu.Consumer(connection, queues=[queue], on_message=on_message),
    ):
        while handled < count:
            connection.drain_events(timeout=30)
    return times[0], times[1]


def worker(kind: str, queue_name: str, count: int) -> None:
    """Consume ``count`` messages one way; print the rate as JSON."""
    if kind == "kombu":
        first, last = _consume_with_kombu(queue_name, count)
    else:
        first, last = _consume_with_baseplate(queue_name, count, kind == "consume+obs")
    print(json.dumps({"messages_per_second": (count - 1) / (last - first)}))


# -- the benchmark --------------------------------------------------------------------


def _measure(kind: str, queue_name: str, count: int) -> float:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.consumer", "--worker", kind, queue_name, str(count)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind}: {done.stderr.strip().splitlines()[-1:]}")
    rate: float = json.loads(done.stdout.strip().splitlines()[-1])["messages_per_second"]
    return rate


def main(quick: bool = False) -> None:
    """Print the median rate of each consumer and its ratio to bare kombu's."""
    kombu = _kombu()
    count, rounds = (2000, 2) if quick else (10000, 3)
    print(
        f"queue consumer: {count} messages per run, {rounds} rounds in turn, "
        "RabbitMQ on 127.0.0.1 (medians)"
    )
    queue_name = f"bench-consumer-{uuid.uuid4().hex[:8]}"
    exchange = kombu.Exchange(queue_name, "direct")
    queue = kombu.Queue(queue_name, exchange, ROUTING_KEY)  # as consume declares it
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with kombu.Connection(BROKER_URL) as connection:
        channel = connection.default_channel
        bound = queue(channel)
        bound.declare()
        producer = kombu.Producer(channel, exchange=exchange)
        try:
            for round_number in range(rounds):
                order = KINDS if round_number % 2 == 0 else KINDS[::-1]
                for kind in order:
                    bound.purge()
                    for number in range(count):
                        producer.publish(
                            {"n": number}, routing_key=ROUTING_KEY, delivery_mode="transient"
                        )
                    while bound.queue_declare(passive=True).message_count < count:
                        time.sleep(0.05)
                    rates[kind].append(_measure(kind, queue_name, count))
        finally:
            bound.delete()
            exchange(channel).delete()
    bare = statistics.median(rates["kombu"])
    for kind in KINDS:
        rate = statistics.median(rates[kind])
        print(f"  {kind:<12} {rate:9.0f} messages/s   {rate / bare:6.1%} of kombu's")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds")
    parser.add_argument(
        "--worker", nargs=3, metavar=("KIND", "QUEUE", "COUNT"), help=argparse.SUPPRESS
    )
    arguments = parser.parse_args()
    if arguments.worker:
        kind, name, messages = arguments.worker
        worker(kind, name, int(messages))
    else:
        main(quick=arguments.quick)
