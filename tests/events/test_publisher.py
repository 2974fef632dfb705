"""The event publisher, through real POSIX queues to a local HTTPS collector stand-in.

Events are put with EventQueue, as an application does; the stand-in
(tests/events/collector.py) checks each POST's signature and gzip body and
decodes its batch; metrics go to a real UDP socket. The stand-in can answer
with scripted statuses and go down and come back on the same port.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import posix_ipc
import pytest

from baseplate import config
from baseplate.config import Endpoint
from baseplate.diagnostics.tracing.publisher import Batcher, MessageTooLargeError, SpanBatch
from baseplate.events import Event, EventQueue, EventQueueFullError, serialize_v2_event
from baseplate.events import publisher as event_publisher
from baseplate.events.publisher import (
    MAX_BATCH_SIZE,
    V2_FRAMING,
    CollectorPoster,
    sign_payload,
)
from baseplate.message_queue import MessageQueue
from baseplate.metrics import make_client
from baseplate.testing import StatsdCapture
from tests._helpers import fresh_queue_name, wait_until
from tests.events.collector import CollectorStandIn, make_certificate
from tests.events.v2_struct import VectorEvent
from tests.sidecars import WAIT_SECONDS, MetricsLog, RunningPublisher, Sidecar

# Queues count against the user's RLIMIT_MSGQUEUE, shared with other test runs,
# and must fit the default sysctl limits (10 messages of 8192 bytes).
QUEUE_MAX_MESSAGES = 10
QUEUE_MAX_MESSAGE_SIZE = 2048

KEY_NAME = "TestKey"
KEY_SECRET = b"hunter2"
EVENT_PUBLISHER = "baseplate.events.publisher"

#: The ``start`` fixture: starts an event publisher, its section's keys given as keywords.
Start = Callable[..., RunningPublisher]


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("collector"))


@pytest.fixture
def collector(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[CollectorStandIn]:
    # Clients in this process trust the stand-in's certificate, and only it.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with CollectorStandIn(*certificate, keys={KEY_NAME: KEY_SECRET}) as stand_in:
        yield stand_in


@pytest.fixture
def queue_name() -> Iterator[str]:
    with fresh_queue_name("/events-") as name:
        yield name


@pytest.fixture
def event_queue_path(queue_name: str) -> Iterator[str]:
    """``/events-<name>``, created small so that EventQueue opens it as it is."""
    path = f"/events-{queue_name}"
    with MessageQueue(path, QUEUE_MAX_MESSAGES, QUEUE_MAX_MESSAGE_SIZE):
        yield path


@pytest.fixture
def metrics(statsd: StatsdCapture) -> MetricsLog:
    return MetricsLog(statsd)


def section(collector: CollectorStandIn, statsd: StatsdCapture, **keys: str) -> dict[str, str]:
    """An ``[event-publisher:NAME]`` section for the stand-in, with quick retries."""
    return {
        "collector.hostname": collector.hostname,
        "key.name": KEY_NAME,
        "key.secret": base64.b64encode(KEY_SECRET).decode(),
        "metrics.namespace": "ep",
        "metrics.endpoint": statsd.endpoint,
        "retry_backoff": "0.05",
        "queue.max_messages": str(QUEUE_MAX_MESSAGES),
        "queue.max_message_size": str(QUEUE_MAX_MESSAGE_SIZE),
        **keys,
    }


@pytest.fixture
def start(
    event_queue_path: str, collector: CollectorStandIn, statsd: StatsdCapture
) -> Iterator[Start]:
    """Start event publishers, built from a section as the sidecar builds them, in threads."""
    running: list[RunningPublisher] = []

    def start_publisher(**keys: str) -> RunningPublisher:
        raw = section(collector, statsd, **keys)
        cfg = config.parse_config(raw, event_publisher._CONFIG_SPEC)
        queue = MessageQueue(event_queue_path, QUEUE_MAX_MESSAGES, QUEUE_MAX_MESSAGE_SIZE)
        metrics = make_client("ep", Endpoint(raw["metrics.endpoint"]))
        running.append(RunningPublisher(event_publisher._make_publisher(cfg, metrics, queue)))
        return running[-1]

    yield start_publisher
    for run in running:
        if run.thread.is_alive():
            run.stop()
        run.publisher.queue.close()


@pytest.fixture
def events(queue_name: str, event_queue_path: str) -> Iterator[EventQueue]:
    queue = EventQueue(queue_name)
    yield queue
    queue.queue.close()


def make_event(n: int, **fields: Any) -> Event:
    event = Event("topic", "type", id=f"event-{n}")
    event.set_field("n", n)
    for key, value in fields.items():
        event.set_field(key, value)
    return event


def ids(received: list[Any]) -> list[str]:
    return [event["uuid"] for event in received]


# --- signing, framing, requests ----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "mac"),
    [
        (
            b'[{"a": 1},{"b": 2}]',
            "e033b65afe0db882b2fa87fb753b798b1d8efddc07e45d602b0ee1d9865c9e13",
        ),
        (
            b'[{"example": "value"}]',
            "7c46d56b99cd4cb05e08238c1d4c10a2f330795e9d7327f17cc66fd206bf1179",
        ),
    ],
)
def test_signature_is_the_originals(payload: bytes, mac: str) -> None:
    assert sign_payload("TestKey", b"hunter2", payload) == f"key=TestKey, mac={mac}"


def test_v2_batches_are_a_thrift_json_list_of_the_events() -> None:
    batcher = Batcher(framing=V2_FRAMING)
    batcher.add(b"a", now=0.0)
    batcher.add(b"b", now=0.0)
    assert batcher.flush() == SpanBatch(b'{"1":{"lst":["rec",2,a,b]}}', 2)


def test_v2_batches_count_the_digits_of_their_length() -> None:
    # Ten one-byte events would fit if the count kept one digit; "10" takes one more.
    header = len(V2_FRAMING.opening(9))
    batcher = Batcher(max_size=header + 10 + 9 + 3, framing=V2_FRAMING)
    closed = [batcher.add(b"0", now=0.0) for _ in range(10)]
    assert closed[:9] == [None] * 9
    full = closed[9]
    assert full is not None
    assert full.count == 9
    assert len(full.payload) == header + 9 + 8 + 3
    assert json.loads(full.payload) == {"1": {"lst": ["rec", 9, *[0] * 9]}}
    alone = header + 3  # one event and the closing
    Batcher(max_size=alone + 5, framing=V2_FRAMING).add(b"y" * 5, now=0.0)
    with pytest.raises(MessageTooLargeError):
        Batcher(max_size=alone + 5, framing=V2_FRAMING).add(b"y" * 6, now=0.0)


def test_batches_never_exceed_the_collectors_limit() -> None:
    for framing in (event_publisher.FRAMING_BY_VERSION[1], V2_FRAMING):
        batcher = Batcher(MAX_BATCH_SIZE, framing=framing)
        sizes = []
        for n in range(2000):
            closed = batcher.add(b"e" * (300 + n % 700), now=0.0)
            if closed is not None:
                sizes.append(len(closed.payload))
        assert sizes
        assert max(sizes) <= MAX_BATCH_SIZE
        assert min(sizes) > MAX_BATCH_SIZE - 1000  # closed only when the next did not fit


def test_request_is_gzipped_and_signed_over_the_uncompressed_batch(statsd: StatsdCapture) -> None:
    poster = CollectorPoster(
        "collector.example.com", 2, "TestKey", b"hunter2", make_client("ep", None)
    )
    assert poster.url == "https://collector.example.com/v2"
    batch = SpanBatch(b'[{"example": "value"}]', 1)
    body, headers = poster.encode(batch)
    assert gzip.decompress(body) == batch.payload
    assert headers["X-Signature"] == sign_payload("TestKey", b"hunter2", batch.payload)
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Date"].endswith(" GMT")
    sent_at = email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
    assert abs(sent_at - time.time()) < 60


@pytest.mark.parametrize("hostname", ["", "https://collector", "host/path", "host:port"])
def test_poster_refuses_what_is_not_a_host(hostname: str) -> None:
    with pytest.raises(ValueError):
        CollectorPoster(hostname, 1, "k", b"s", make_client("ep", None))


def test_the_shared_parts_log_under_the_event_publishers_name() -> None:
    poster = CollectorPoster("c.example.com", 1, "k", b"s", make_client("ep", None))
    assert poster.logger.name == "baseplate.events.publisher"
    assert event_publisher._COMMAND.log is poster.logger


# --- configuration ---------------------------------------------------------------------


def parse(**keys: str) -> Any:
    raw = {"collector.hostname": "c.example.com", "key.name": "k", "key.secret": "aHVudGVyMg=="}
    return config.parse_config({**raw, **keys}, event_publisher._CONFIG_SPEC)


def test_config_defaults_are_the_originals() -> None:
    assert parse() == {
        "collector": {"hostname": "c.example.com", "version": 1},
        "key": {"name": "k", "secret": b"hunter2"},
        "post_timeout": 3.0,
        "retry_backoff": 2.0,
        "retry_budget": 300.0,
        "max_pending_batches": 20,
        "shutdown_timeout": 5.0,
        "queue": {"max_messages": 10000, "max_message_size": 102400},
    }


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("collector.version", "3"),
        ("collector.hostname", "c.example.com/v1"),
        ("key.secret", "not base64!"),
        ("key.name", ""),
        ("retry_budget", "0"),
        ("max_pending_batches", "0"),
    ],
)
def test_bad_values_name_their_key(key: str, text: str) -> None:
    with pytest.raises(config.ConfigurationError) as info:
        parse(**{key: text})
    assert info.value.key == key


# --- end to end, in process ------------------------------------------------------------


def test_events_reach_the_collector_signed_and_in_order(
    events: EventQueue, start: Start, collector: CollectorStandIn, metrics: MetricsLog
) -> None:
    start()
    put = [make_event(n, word="h\u00e9llo") for n in range(25)]
    for event in put:
        wait_until(lambda event=event: _put_when_room(events, event))
    wait_until(lambda: len(collector.events()) == 25)
    assert collector.events() == [json.loads(event.serialize()) for event in put]
    assert collector.refused == []
    post = collector.accepted[0]
    assert post.path == "/v1"
    assert post.headers["User-Agent"] == "baseplate-event-publisher/1.0"
    wait_until(lambda: metrics.count("ep.sent") == 25)
    assert "ep.post" in metrics.timers()
    assert metrics.dropped() == {}


def _put_when_room(queue: EventQueue, event: Event) -> bool:
    try:
        queue.put(event)
    except EventQueueFullError:
        return False
    return True


def test_v2_events_reach_the_collector_as_a_thrift_list(
    queue_name: str, event_queue_path: str, start: Start, collector: CollectorStandIn
) -> None:
    queue = EventQueue(queue_name, event_serializer=serialize_v2_event)
    try:
        start(**{"collector.version": "2"})
        for n in range(3):
            queue.put(VectorEvent(action=f"vote-{n}", client_timestamp=n))
    finally:
        queue.queue.close()
    wait_until(lambda: len(collector.events()) == 3)
    assert collector.accepted[0].path == "/v2"
    assert collector.events() == [
        serialize_v2_event(VectorEvent(action=f"vote-{n}", client_timestamp=n)) for n in range(3)
    ]


def test_collector_down_then_back_loses_nothing(
    events: EventQueue, start: Start, collector: CollectorStandIn, metrics: MetricsLog
) -> None:
    collector.stop()
    start(max_pending_batches="1")
    accepted = []
    n = 0
    deadline = time.monotonic() + WAIT_SECONDS
    # While the collector is away the publisher holds what it took (one batch
    # pending, one being retried), then leaves the rest on the queue until the
    # queue is full and producers are told so.
    while True:
        assert time.monotonic() < deadline, "the queue never filled up"
        try:
            events.put(make_event(n))
        except EventQueueFullError:
            if metrics.count("ep.error.io") >= 3:
                break
            time.sleep(0.1)
            continue
        accepted.append(f"event-{n}")
        n += 1
    assert len(accepted) > QUEUE_MAX_MESSAGES  # more than the queue alone held
    collector.start()
    wait_until(lambda: len(collector.events()) == len(accepted))
    time.sleep(0.3)  # nothing more, and nothing twice
    assert ids(collector.events()) == accepted
    assert metrics.dropped() == {}
    assert metrics.count("ep.sent") == len(accepted)


def test_server_errors_are_retried(
    events: EventQueue, start: Start, collector: CollectorStandIn, metrics: MetricsLog
) -> None:
    collector.statuses.extend([503, 500])
    start()
    for n in range(3):
        events.put(make_event(n))
    wait_until(lambda: len(collector.events()) == 3)
    assert ids(collector.events()) == ["event-0", "event-1", "event-2"]
    assert collector.attempts == 3
    wait_until(lambda: metrics.count("ep.sent") == 3)
    assert metrics.count("ep.error.http") == 2
    assert metrics.dropped() == {}


def test_client_errors_drop_the_batch_and_are_counted(
    events: EventQueue, start: Start, collector: CollectorStandIn, metrics: MetricsLog
) -> None:
    collector.statuses.append(413)
    start()
    for n in range(3):
        events.put(make_event(n))
    wait_until(lambda: metrics.count("ep.dropped.rejected") == 3)
    assert collector.attempts == 1
    assert metrics.count("ep.error.http") == 1
    # The publisher goes on with what comes next.
    events.put(make_event(3))
    wait_until(lambda: len(collector.events()) == 1)
    assert ids(collector.events()) == ["event-3"]


def test_a_wrong_key_is_refused_by_the_collector(
    events: EventQueue, start: Start, collector: CollectorStandIn, metrics: MetricsLog
) -> None:
    start(**{"key.secret": base64.b64encode(b"not the secret").decode()})
    events.put(make_event(0))
    wait_until(lambda: metrics.count("ep.dropped.rejected") == 1)
    assert collector.refused == ["signature mismatch"]
    assert collector.events() == []


def test_a_batch_undelivered_within_the_budget_is_dropped_and_counted(
    events: EventQueue, start: Start, collector: CollectorStandIn, metrics: MetricsLog
) -> None:
    collector.default_status = 502
    start(retry_budget="0.5")
    events.put(make_event(0))
    wait_until(lambda: metrics.count("ep.dropped.undeliverable") == 1)
    assert collector.attempts >= 2
    collector.default_status = 200
    events.put(make_event(1))
    wait_until(lambda: len(collector.events()) == 1)
    assert ids(collector.events()) == ["event-1"]


def test_an_empty_message_is_dropped_and_the_rest_delivered(
    event_queue_path: str,
    events: EventQueue,
    start: Start,
    collector: CollectorStandIn,
    metrics: MetricsLog,
) -> None:
    start()
    events.put(make_event(0))
    with MessageQueue(event_queue_path, QUEUE_MAX_MESSAGES, QUEUE_MAX_MESSAGE_SIZE) as raw:
        raw.put(b"")
    events.put(make_event(1))
    wait_until(lambda: len(collector.events()) == 2)
    assert ids(collector.events()) == ["event-0", "event-1"]
    assert metrics.count("ep.dropped.empty") == 1


# --- the command line -------------------------------------------------------------------


def ini(name: str, keys: dict[str, str]) -> str:
    lines = [f"[event-publisher:{name}]", *(f"{key} = {value}" for key, value in keys.items())]
    return "\n".join(lines) + "\n"


@pytest.fixture
def run_cli(
    tmp_path: Path, queue_name: str, certificate: tuple[Path, Path]
) -> Iterator[Callable[[dict[str, str]], Sidecar]]:
    """Start sidecars on the test's queue, each with a section of the keys given.

    They trust the stand-in's certificate, and only it.
    """
    started: list[Sidecar] = []

    def start_sidecar(keys: dict[str, str]) -> Sidecar:
        env = {"SSL_CERT_FILE": str(certificate[0])}
        started.append(
            Sidecar(EVENT_PUBLISHER, tmp_path, queue_name, ini(queue_name, keys), env=env)
        )
        return started[-1]

    yield start_sidecar
    for sidecar in started:
        sidecar.kill()


def test_cli_publishes_and_stops_on_sigterm(
    queue_name: str,
    collector: CollectorStandIn,
    statsd: StatsdCapture,
    run_cli: Callable[[dict[str, str]], Sidecar],
    metrics: MetricsLog,
) -> None:
    sidecar = run_cli(section(collector, statsd))
    sidecar.wait_until_ready()
    # The publisher creates the queue with the sizes of its section.
    assert _queue_exists(f"/events-{queue_name}")
    events = EventQueue(queue_name)
    try:
        for n in range(5):
            events.put(make_event(n))
    finally:
        events.queue.close()
    wait_until(lambda: len(collector.events()) == 5)
    assert sidecar.terminate() == 0, sidecar.log
    assert ids(collector.events()) == [f"event-{n}" for n in range(5)]
    assert "publishing events from /events-" in sidecar.log
    assert "stopped by SIGTERM" in sidecar.log
    assert metrics.count("ep.sent") == 5


def _queue_exists(path: str) -> bool:
    try:
        posix_ipc.MessageQueue(path).close()
    except posix_ipc.ExistentialError:
        return False
    return True


def test_cli_names_a_bad_key_and_exits_one(
    queue_name: str, run_cli: Callable[[dict[str, str]], Sidecar]
) -> None:
    sidecar = run_cli({"collector.hostname": "c.example.com", "key.name": "k", "key.secret": "!!"})
    assert sidecar.wait() == 1
    assert f"[event-publisher:{queue_name}] key.secret" in sidecar.log
