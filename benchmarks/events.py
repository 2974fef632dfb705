"""``EventQueue.put`` throughput, beside the original 0.30.9's, in the same run.

A worker process opens an :class:`~baseplate.events.EventQueue` on a real
POSIX queue and times three ways of putting an event:

``v1``
    a schemaless :class:`~baseplate.events.Event` with five fields (one of
    them obfuscated), serialized and sent on every put;
``v2``
    a Thrift struct through :func:`~baseplate.events.serialize_v2_event`;
``full``
    a v1 put onto a full queue, which raises
    :exc:`~baseplate.events.EventQueueFullError`: what each request pays
    while the publisher is behind.

The queue is made beforehand with the system's default limits (10 messages
of 8192 bytes; the original's sizes need raised ``fs.mqueue`` limits), and
the worker drains it between rounds of ten puts, outside the timed part.

The worker uses only the documented API, so the same script runs against
this project and against the original Baseplate installed in a venv of its
own (``pip install baseplate==0.30.9.post0 gevent thrift posix_ipc``), given
with ``--original PYTHON``. The implementations take turns, round by round,
and medians are reported: machines are noisy.
"""

from __future__ import annotations

import contextlib
import os

import posix_ipc

from benchmarks._compare import ORIGINAL, Medians, command_line, interpreters, run_worker

WORKER = r"""
import json, sys, time

import posix_ipc
from thrift.Thrift import TType

from baseplate.events import Event, EventQueue, EventQueueFullError, FieldKind, serialize_v2_event

queue_name, puts = sys.argv[1], int(sys.argv[2])
reader = posix_ipc.MessageQueue("/events-" + queue_name)
room = reader.max_messages


class V2Event:
    thrift_spec = (
        None,
        (1, TType.STRING, "action", "UTF8", None),
        (2, TType.I64, "client_timestamp", None, None),
        (3, TType.STRING, "uuid", "UTF8", None),
    )

    def __init__(self, action, client_timestamp, uuid):
        self.action, self.client_timestamp, self.uuid = action, client_timestamp, uuid

    def write(self, oprot):
        oprot.writeStruct(self, self.thrift_spec)


def v1_event():
    event = Event("bench_topic", "bench_type")
    event.set_field("user_id", "t2_abcdef")
    event.set_field("subreddit", "baseplate")
    event.set_field("vote", 1)
    event.set_field("ip", "10.0.0.1", kind=FieldKind.OBFUSCATED)
    event.set_field("user_agent", "bench/1.0", kind=FieldKind.HIGH_CARDINALITY)
    return event


def drain():
    while True:
        try:
            reader.receive(0)
        except posix_ipc.BusyError:
            return


def put_rate(queue, event):
    # Rounds of as many puts as the queue has room for, drained untimed.
    for _ in range(room):
        queue.put(event)
    drain()
    spent, done = 0.0, 0
    while done < puts:
        started = time.perf_counter()
        for _ in range(room):
            queue.put(event)
        spent += time.perf_counter() - started
        done += room
        drain()
    return done / spent


def full_rate(queue, event):
    drain()
    for _ in range(room):
        queue.put(event)
    started = time.perf_counter()
    for _ in range(puts):
        try:
            queue.put(event)
        except EventQueueFullError:
            pass
    rate = puts / (time.perf_counter() - started)
    drain()
    return rate


v1 = EventQueue(queue_name)
v2 = EventQueue(queue_name, event_serializer=serialize_v2_event)
v2_event = V2Event("vote", 1500000000123, "3a1b5c2e-1111-4a4a-8b8b-0123456789ab")
print(json.dumps({
    "v1": put_rate(v1, v1_event()),
    "v2": put_rate(v2, v2_event),
    "full": full_rate(v1, v1_event()),
}))
"""

CASES = ("v1", "v2", "full")


def main(quick: bool = False, original: str | None = None) -> None:
    """Print puts per second for each case and implementation, and their ratio."""
    puts, rounds = (20000, 3) if quick else (100000, 5)
    pythons = interpreters(original)
    queue_name = f"bench-{os.getpid()}"
    # The system's default limits, which any machine allows.
    queue = posix_ipc.MessageQueue(
        f"/events-{queue_name}", posix_ipc.O_CREX, max_messages=10, max_message_size=8192
    )
    rates = Medians()
    try:
        for _ in range(rounds):
            for name, python in pythons.items():
                for case, rate in run_worker(python, WORKER, queue_name, str(puts)).items():
                    rates.add(case, name, rate)
    finally:
        queue.close()
        with contextlib.suppress(posix_ipc.ExistentialError):
            queue.unlink()
    print(f"EventQueue.put throughput (median of {rounds} rounds x {puts} puts)")
    print(f"{'case':<6} {'implementation':<18} {'puts/s':>10} {'vs original':>12}")
    for case in CASES:
        for name in pythons:
            rate = rates.median(case, name)
            ratio = ""
            if original:
                ratio = f"{rate / rates.median(case, ORIGINAL):.2f}x"
            print(f"{case:<6} {name:<18} {rate:>10.0f} {ratio:>12}")


if __name__ == "__main__":
    command_line(main, __doc__.splitlines()[0], quick="puts")
