"""The trace publisher sidecar, against real POSIX queues and a local Zipkin stand-in.

The stand-in is a real HTTP server on 127.0.0.1 that records every request
and answers as scripted (a status per request, a delay, or not at all when
stopped). Metrics go to a real UDP socket.
"""

from __future__ import annotations

import collections
import contextlib
import json
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import posix_ipc
import pytest

from baseplate import config
from baseplate._ini import ConfigFileError
from baseplate._sidecar import batching, loop, posting
from baseplate.config import Endpoint
from baseplate.diagnostics.tracing import _publisher_cli
from baseplate.diagnostics.tracing.publisher import (
    Batcher,
    Delivery,
    MessageTooLargeError,
    Publisher,
    SpanBatch,
    ZipkinPoster,
)
from baseplate.message_queue import MessageQueue
from baseplate.metrics import make_client
from baseplate.retry import RetryPolicy
from baseplate.testing import StatsdCapture
from tests._helpers import fresh_queue_name, wait_until
from tests.http_standin import PostStandIn, Request
from tests.sidecars import (
    WAIT_SECONDS,
    MetricsLog,
    RunningPublisher,
    Sidecar,
    metric_lines,
)

# Queues count against the user's RLIMIT_MSGQUEUE, shared with other test runs,
# and must fit the default sysctl limits (10 messages of 8192 bytes): keep them small.
QUEUE_MAX_MESSAGES = 10
QUEUE_MAX_MESSAGE_SIZE = 1024

TRACE_PUBLISHER = "baseplate.diagnostics.tracing.publisher"


def span(n: int, padding: int = 0) -> bytes:
    """A message as the tracing observer writes it: one JSON object."""
    return json.dumps({"traceId": n, "id": n, "name": "x" * padding}).encode()


# --- the Zipkin stand-in ---------------------------------------------------------------


class ZipkinStandIn(PostStandIn):
    """A Zipkin v1 API stand-in: records requests, answers as scripted."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []
        self.statuses: collections.deque[int] = collections.deque()
        self.default_status = 202
        self.delay = 0.0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def receive(self, request: Request) -> int:
        with self._lock:
            self.requests.append(request)
            status = self.statuses.popleft() if self.statuses else self.default_status
        time.sleep(self.delay)
        return status

    def bodies(self) -> list[bytes]:
        with self._lock:
            return [request.body for request in self.requests]

    def wait_for(self, count: int) -> list[bytes]:
        wait_until(lambda: len(self.requests) >= count)
        return self.bodies()


@pytest.fixture
def zipkin() -> Iterator[ZipkinStandIn]:
    with ZipkinStandIn() as stand_in:
        yield stand_in


# --- queues, metrics, publishers ---------------------------------------------------------


@pytest.fixture
def queue_name() -> Iterator[str]:
    """A unique publisher queue name; the queue is /traces-<name>, unlinked afterwards."""
    with fresh_queue_name("/traces-") as name:
        yield name


@pytest.fixture
def span_queue(queue_name: str) -> Iterator[MessageQueue]:
    """The producer's end of /traces-<queue_name>, created small, as the app would."""
    with MessageQueue(f"/traces-{queue_name}", QUEUE_MAX_MESSAGES, QUEUE_MAX_MESSAGE_SIZE) as q:
        yield q


def queued(queue: MessageQueue) -> int:
    """How many messages wait on the queue (read through a second, inspecting handle)."""
    handle = posix_ipc.MessageQueue(queue.name)
    try:
        count: int = handle.current_messages
        return count
    finally:
        handle.close()


@pytest.fixture
def metrics_log(statsd: StatsdCapture) -> MetricsLog:
    return MetricsLog(statsd)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class PublisherRig:
    """A producer's queue, the Zipkin stand-in and the metrics, and publishers started on them."""

    def __init__(self, queue: MessageQueue, zipkin: ZipkinStandIn, metrics: MetricsLog) -> None:
        self.queue = queue
        self.zipkin = zipkin
        self.metrics = metrics
        self.running: list[RunningPublisher] = []

    def start(
        self,
        *,
        max_size: int = 512000,
        max_age: float = 0.2,
        retry_limit: int = 10,
        retry_backoff: float = 0.01,
        post_timeout: float = 3.0,
        **options: object,
    ) -> RunningPublisher:
        """Start a publisher reading the queue; options go to the parts they configure."""
        metrics = make_client("tp", Endpoint(self.metrics.statsd.endpoint))
        consumer = MessageQueue(self.queue.name, QUEUE_MAX_MESSAGES, QUEUE_MAX_MESSAGE_SIZE)
        poster = ZipkinPoster(
            self.zipkin.url,
            metrics,
            post_timeout=post_timeout,
            retry_limit=retry_limit,
            retry_backoff=retry_backoff,
        )
        options.setdefault("poll_interval", 0.05)
        publisher = Publisher(
            consumer,
            Batcher(max_size, max_age),
            poster,
            metrics,
            **options,  # type: ignore[arg-type]
        )
        self.running.append(RunningPublisher(publisher))
        return self.running[-1]


@pytest.fixture
def rig(
    span_queue: MessageQueue, zipkin: ZipkinStandIn, metrics_log: MetricsLog
) -> Iterator[PublisherRig]:
    publishers = PublisherRig(span_queue, zipkin, metrics_log)
    yield publishers
    for run in publishers.running:
        if run.thread.is_alive():
            run.stop()
        run.publisher.queue.close()


# --- Batcher ---------------------------------------------------------------------------


def test_batch_is_a_json_array_of_the_raw_messages() -> None:
    batcher = Batcher()
    assert batcher.add(b'{"id": 1}', now=0) is None
    assert batcher.add(b'{"id":2}', now=0) is None

    batch = batcher.flush()

    assert batch == SpanBatch(b'[{"id": 1},{"id":2}]', 2)
    assert json.loads(batch.payload) == [{"id": 1}, {"id": 2}]
    assert len(batcher) == 0
    assert batcher.flush() is None


def test_size_counts_two_brackets_and_one_comma_between_messages() -> None:
    batcher = Batcher(max_size=13)
    batcher.add(b"aaa", now=0)
    assert batcher.size == 2 + 3
    batcher.add(b"bbb", now=0)
    assert batcher.size == 2 + 3 + 1 + 3
    batcher.add(b"ccc", now=0)
    assert batcher.size == 13  # exactly full: still one batch

    closed = batcher.add(b"d", now=0)  # 13 + 1 + 1 > 13

    assert closed == SpanBatch(b"[aaa,bbb,ccc]", 3)
    assert len(closed.payload) == 13
    assert batcher.flush() == SpanBatch(b"[d]", 1)


def test_one_byte_over_closes_the_batch() -> None:
    batcher = Batcher(max_size=12)
    batcher.add(b"aaa", now=0)
    batcher.add(b"bbb", now=0)

    assert batcher.add(b"ccc", now=0) == SpanBatch(b"[aaa,bbb]", 2)


def test_payloads_never_exceed_the_max_size() -> None:
    rng = random.Random(1234)
    batcher = Batcher(max_size=300)
    messages = [b"x" * rng.randint(1, 298) for _ in range(2000)]
    batches = [batcher.add(message, now=0) for message in messages]
    batches.append(batcher.flush())

    closed = [batch for batch in batches if batch is not None]
    assert all(len(batch.payload) <= 300 for batch in closed)
    assert b"".join(batch.payload for batch in closed) == b"".join(
        b"[" + b",".join(group) + b"]" for group in _regroup(messages, closed)
    )
    assert sum(batch.count for batch in closed) == len(messages)


def _regroup(messages: list[bytes], batches: list[SpanBatch]) -> Iterator[list[bytes]]:
    position = 0
    for batch in batches:
        yield messages[position : position + batch.count]
        position += batch.count


def test_message_that_cannot_fit_alone_is_refused() -> None:
    batcher = Batcher(max_size=10)
    batcher.add(b"abc", now=0)

    assert batcher.add(b"x" * 8, now=0) == SpanBatch(b"[abc]", 1)  # 8 + 2 fits alone
    with pytest.raises(MessageTooLargeError) as info:
        batcher.add(b"x" * 9, now=0)

    assert (info.value.size, info.value.max_size) == (9, 10)
    assert batcher.flush() == SpanBatch(b"[" + b"x" * 8 + b"]", 1)  # untouched


def test_batch_is_due_when_its_first_message_is_max_age_old() -> None:
    batcher = Batcher(max_age=1.0)
    assert batcher.take_if_due(now=50.0) is None  # empty: never due

    batcher.add(b"1", now=10.0)
    batcher.add(b"2", now=10.9)
    assert batcher.take_if_due(now=10.99) is None

    assert batcher.take_if_due(now=11.0) == SpanBatch(b"[1,2]", 2)
    batcher.add(b"3", now=12.5)  # a new batch starts its own clock
    assert batcher.take_if_due(now=13.4) is None
    assert batcher.take_if_due(now=13.5) == SpanBatch(b"[3]", 1)


@pytest.mark.parametrize(("max_size", "max_age"), [(2, 1.0), (100, 0.0), (100, -1.0)])
def test_batcher_rejects_nonsense_limits(max_size: int, max_age: float) -> None:
    with pytest.raises(ValueError):
        Batcher(max_size, max_age)


# --- ZipkinPoster ----------------------------------------------------------------------


def make_poster(url: str, statsd: StatsdCapture, **options: float) -> ZipkinPoster:
    options.setdefault("retry_backoff", 0.01)
    return ZipkinPoster(url, make_client("tp", Endpoint(statsd.endpoint)), **options)  # type: ignore[arg-type]


BATCH = SpanBatch(b'[{"traceId": 1, "id": 1},{"traceId": 2, "id": 2}]', 2)


def test_post_sends_the_batch_as_the_original_did(
    zipkin: ZipkinStandIn, statsd: StatsdCapture
) -> None:
    poster = make_poster(zipkin.url, statsd)

    assert poster.post(BATCH) is Delivery.SENT

    [request] = zipkin.requests
    assert (request.method, request.path) == ("POST", "/api/v1/spans")
    assert request.headers["User-Agent"] == "baseplate-trace-publisher/1.0"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Content-Length"] == str(len(BATCH.payload))
    assert request.body == BATCH.payload
    lines = metric_lines(statsd)
    assert lines[-1] == "tp.sent:2|c"
    assert lines[0].startswith("tp.post:") and lines[0].endswith("|ms")
    assert len(lines) == 2


def test_trailing_slash_in_the_api_url_is_ignored(
    zipkin: ZipkinStandIn, statsd: StatsdCapture
) -> None:
    assert make_poster(zipkin.url + "/", statsd).post(BATCH) is Delivery.SENT
    assert zipkin.requests[0].path == "/api/v1/spans"


def test_server_errors_are_retried(zipkin: ZipkinStandIn, statsd: StatsdCapture) -> None:
    zipkin.statuses.extend([500, 503])

    assert make_poster(zipkin.url, statsd).post(BATCH) is Delivery.SENT

    assert zipkin.bodies() == [BATCH.payload] * 3
    lines = metric_lines(statsd)
    assert [line for line in lines if "|c" in line] == [
        "tp.error.http:1|c",
        "tp.error.http:1|c",
        "tp.sent:2|c",
    ]
    assert sum(line.startswith("tp.post:") for line in lines) == 3


def test_client_errors_are_final(zipkin: ZipkinStandIn, statsd: StatsdCapture) -> None:
    zipkin.statuses.append(400)

    assert make_poster(zipkin.url, statsd).post(BATCH) is Delivery.REJECTED

    assert len(zipkin.requests) == 1
    assert [line for line in metric_lines(statsd) if "|c" in line] == ["tp.error.http:1|c"]


def test_gives_up_after_retry_limit_attempts(zipkin: ZipkinStandIn, statsd: StatsdCapture) -> None:
    zipkin.default_status = 502

    assert make_poster(zipkin.url, statsd, retry_limit=4).post(BATCH) is Delivery.FAILED

    assert len(zipkin.requests) == 4
    assert metric_lines(statsd).count("tp.error.http:1|c") == 4


def test_connection_refused_is_retried_until_the_endpoint_is_back(
    zipkin: ZipkinStandIn, statsd: StatsdCapture
) -> None:
    zipkin.stop()
    poster = make_poster(zipkin.url, statsd, retry_limit=30, retry_backoff=0.02)
    result: list[Delivery] = []
    posting = threading.Thread(target=lambda: result.append(poster.post(BATCH)))
    posting.start()

    log = MetricsLog(statsd)
    wait_until(lambda: log.count("tp.error.io") >= 2)
    zipkin.start()
    posting.join(WAIT_SECONDS)

    assert result == [Delivery.SENT]
    assert zipkin.bodies() == [BATCH.payload]  # once
    assert log.count("tp.sent") == 2


def test_io_errors_are_counted_and_never_raised(statsd: StatsdCapture) -> None:
    with contextlib.closing(socket.socket()) as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nobody listens here
    poster = make_poster(f"http://127.0.0.1:{port}/api/v1", statsd, retry_limit=3)

    assert poster.post(BATCH) is Delivery.FAILED

    lines = metric_lines(statsd)
    assert lines.count("tp.error.io:1|c") == 3
    assert sum(line.startswith("tp.post:") for line in lines) == 3


def test_slow_responses_time_out_and_are_retried(
    zipkin: ZipkinStandIn, statsd: StatsdCapture
) -> None:
    zipkin.delay = 1.0
    poster = make_poster(zipkin.url, statsd, post_timeout=0.1, retry_limit=2)

    assert poster.post(BATCH) is Delivery.FAILED

    assert metric_lines(statsd).count("tp.error.io:1|c") == 2


def test_a_time_budget_caps_the_attempt_timeout(
    zipkin: ZipkinStandIn, statsd: StatsdCapture
) -> None:
    zipkin.delay = 2.0
    poster = make_poster(zipkin.url, statsd, post_timeout=30.0)

    assert poster.post(BATCH, RetryPolicy.new(attempts=1, budget=0.1)) is Delivery.FAILED
    assert metric_lines(statsd).count("tp.error.io:1|c") == 1


def test_stop_event_ends_the_backoff(zipkin: ZipkinStandIn, statsd: StatsdCapture) -> None:
    zipkin.default_status = 500
    poster = make_poster(zipkin.url, statsd, retry_backoff=60.0)
    stop = threading.Event()
    result: list[Delivery] = []
    posting = threading.Thread(
        target=lambda: result.append(poster.post(BATCH, poster.retry_policy(stop)))
    )
    posting.start()
    wait_until(lambda: len(zipkin.requests) == 1)

    stop.set()
    posting.join(WAIT_SECONDS)

    assert result == [Delivery.FAILED]
    assert len(zipkin.requests) == 1


@pytest.mark.parametrize(
    "url", ["zipkin:9411/api/v1", "ftp://zipkin/api/v1", "http:///api/v1", "http://z/a?x=1"]
)
def test_poster_rejects_urls_it_cannot_post_to(url: str) -> None:
    with pytest.raises(ValueError):
        ZipkinPoster(url, make_client("tp", None))


@pytest.mark.parametrize("backoff", [0.0, -1.0, float("inf"), float("nan")])
def test_poster_rejects_a_backoff_the_retry_policy_cannot_take(backoff: float) -> None:
    with pytest.raises(ValueError, match="retry_backoff must be positive and finite"):
        ZipkinPoster("http://z/api/v1", make_client("tp", None), retry_backoff=backoff)


# --- Publisher -------------------------------------------------------------------------


def test_publishes_what_the_queue_holds(rig: PublisherRig) -> None:
    for n in range(3):
        rig.queue.put(span(n))
    run = rig.start()

    assert rig.zipkin.wait_for(1) == [b"[" + b",".join(span(n) for n in range(3)) + b"]"]
    run.stop()


def test_batches_are_sent_when_their_first_span_is_a_second_old(rig: PublisherRig) -> None:
    clock = FakeClock()
    run = rig.start(max_age=1.0, clock=clock)
    batcher = run.publisher.batcher
    rig.queue.put(span(1))
    # In the batch, not just off the queue: the reader has read the clock for it.
    wait_until(lambda: len(batcher) == 1)
    clock.now += 0.5
    rig.queue.put(span(2))
    wait_until(lambda: len(batcher) == 2)
    time.sleep(0.2)  # several polls of the queue, all too early
    assert rig.zipkin.requests == []

    clock.now += 0.5

    assert rig.zipkin.wait_for(1) == [b"[" + span(1) + b"," + span(2) + b"]"]
    run.stop()


def test_full_batches_are_sent_at_once(rig: PublisherRig) -> None:
    messages = [span(n, padding=20) for n in range(6)]
    size = len(messages[0])
    clock = FakeClock()  # never advances: only size closes batches
    run = rig.start(max_size=2 + 3 * size + 2, clock=clock)
    for message in messages:
        rig.queue.put(message)

    bodies = rig.zipkin.wait_for(1)

    assert bodies == [b"[" + b",".join(messages[:3]) + b"]"]
    run.stop()  # the rest goes at shutdown
    assert rig.zipkin.bodies()[1] == b"[" + b",".join(messages[3:]) + b"]"


def test_span_too_large_for_a_batch_is_dropped_and_counted(rig: PublisherRig) -> None:
    run = rig.start(max_size=60)
    rig.queue.put(span(1, padding=100))
    rig.queue.put(span(2))

    assert rig.zipkin.wait_for(1) == [b"[" + span(2) + b"]"]
    assert rig.metrics.count("tp.dropped.too_large") == 1
    run.stop()


def test_rejected_batch_is_dropped_and_counted(rig: PublisherRig) -> None:
    rig.zipkin.statuses.append(400)
    rig.queue.put(span(1))
    rig.queue.put(span(2))
    run = rig.start()
    wait_until(lambda: rig.metrics.count("tp.dropped.rejected") == 2)

    rig.queue.put(span(3))

    assert rig.zipkin.wait_for(2)[1] == b"[" + span(3) + b"]"  # still publishing
    wait_until(lambda: rig.metrics.count("tp.sent") == 1)
    assert rig.metrics.count("tp.error.http") == 1
    run.stop()


def test_batch_that_exhausts_its_retries_is_dropped_and_counted(rig: PublisherRig) -> None:
    rig.zipkin.stop()
    run = rig.start(retry_limit=2)
    rig.queue.put(span(1))
    wait_until(lambda: rig.metrics.count("tp.dropped.undeliverable") == 1)
    assert rig.metrics.count("tp.error.io") == 2

    rig.zipkin.start()
    rig.queue.put(span(2))

    assert rig.zipkin.wait_for(1) == [b"[" + span(2) + b"]"]
    run.stop()


def test_endpoint_down_longer_than_the_bound_drops_the_oldest_batches(rig: PublisherRig) -> None:
    rig.zipkin.stop()
    messages = [span(n) for n in range(5)]
    # One span per batch; the first is retried while the others wait, two at most.
    run = rig.start(
        max_size=len(messages[0]) + 2, retry_limit=20, retry_backoff=0.01, max_pending_batches=2
    )
    rig.queue.put(messages[0])
    rig.queue.put(messages[1])  # closes the first batch
    wait_until(lambda: rig.metrics.count("tp.error.io") >= 1)  # now in flight
    for message in messages[2:]:
        rig.queue.put(message)
    wait_until(lambda: rig.metrics.count("tp.dropped.overflow") == 2)

    rig.zipkin.start()

    bodies = rig.zipkin.wait_for(3)
    assert bodies == [b"[" + messages[n] + b"]" for n in (0, 3, 4)]
    wait_until(lambda: rig.metrics.count("tp.sent") == 3)  # the responses, too
    assert rig.metrics.count("tp.dropped.undeliverable") == 0
    run.stop()
    assert len(rig.zipkin.requests) == 3


def test_stopping_sends_the_open_batch(rig: PublisherRig) -> None:
    run = rig.start(clock=FakeClock())  # nothing ever becomes due by age
    rig.queue.put(span(1))
    rig.queue.put(span(2))
    wait_until(lambda: queued(rig.queue) == 0)
    time.sleep(0.1)
    assert rig.zipkin.requests == []

    run.stop()

    assert rig.zipkin.bodies() == [b"[" + span(1) + b"," + span(2) + b"]"]


def test_stopping_while_the_endpoint_is_down_counts_what_is_lost(rig: PublisherRig) -> None:
    rig.zipkin.stop()
    run = rig.start(retry_backoff=60.0, max_size=len(span(1)) + 2)
    rig.queue.put(span(1))  # in flight, waiting out a long backoff
    rig.queue.put(span(2))  # pending
    rig.queue.put(span(3))  # open
    wait_until(lambda: rig.metrics.count("tp.error.io") >= 1 and queued(rig.queue) == 0)

    run.stop()  # interrupts the backoff; one last try each

    assert rig.metrics.count("tp.dropped.shutdown") == 3
    assert rig.metrics.count("tp.error.io") == 4


def test_stopping_leaves_unread_messages_on_the_queue(rig: PublisherRig) -> None:
    run = rig.start()
    run.stop()
    rig.queue.put(span(1))

    run = rig.start()

    assert rig.zipkin.wait_for(1) == [b"[" + span(1) + b"]"]
    run.stop()


def test_rejects_an_empty_pending_bound(span_queue: MessageQueue) -> None:
    metrics = make_client("tp", None)
    with pytest.raises(ValueError):
        Publisher(
            span_queue,
            Batcher(),
            ZipkinPoster("http://127.0.0.1:9/api/v1", metrics),
            metrics,
            max_pending_batches=0,
        )


# --- the command line ------------------------------------------------------------------


class Sidecars:
    """Sidecars for one queue name, configured for the Zipkin stand-in and the statsd capture."""

    def __init__(
        self, tmp_path: Path, queue_name: str, zipkin: ZipkinStandIn, metrics: MetricsLog
    ) -> None:
        self.tmp_path = tmp_path
        self.queue_name = queue_name
        self.zipkin = zipkin
        self.metrics = metrics
        self.started: list[Sidecar] = []

    def ini(self, **keys: str) -> str:
        """An INI file with the publisher's section for the queue, and ``keys`` in it."""
        lines = [
            f"[trace-publisher:{self.queue_name}]",
            f"zipkin_api_url = {self.zipkin.url}",
            "metrics.namespace = trace-publisher",
            f"metrics.endpoint = {self.metrics.statsd.endpoint}",
            *(f"{key} = {value}" for key, value in keys.items()),
        ]
        return "[app:main]\nfactory = nothing\n\n" + "\n".join(lines) + "\n"

    def start(self, ini: str, *extra: str) -> Sidecar:
        self.started.append(Sidecar(TRACE_PUBLISHER, self.tmp_path, self.queue_name, ini, *extra))
        return self.started[-1]


@pytest.fixture
def sidecars(
    tmp_path: Path, queue_name: str, zipkin: ZipkinStandIn, metrics_log: MetricsLog
) -> Iterator[Sidecars]:
    made = Sidecars(tmp_path, queue_name, zipkin, metrics_log)
    yield made
    for sidecar in made.started:
        sidecar.kill()


def test_cli_publishes_from_an_existing_small_queue(
    span_queue: MessageQueue, sidecars: Sidecars
) -> None:
    # The queue is far smaller than the 10000 x 102400 the publisher asks for.
    sidecar = sidecars.start(sidecars.ini())
    sidecar.wait_until_ready()
    for n in range(3):
        span_queue.put(span(n))

    assert sidecars.zipkin.wait_for(1) == [b"[" + b",".join(span(n) for n in range(3)) + b"]"]
    request = sidecars.zipkin.requests[0]
    assert (request.method, request.path) == ("POST", "/api/v1/spans")
    assert request.headers["User-Agent"] == "baseplate-trace-publisher/1.0"
    assert request.headers["Content-Type"] == "application/json"
    wait_until(lambda: sidecars.metrics.count("trace-publisher.sent") == 3)
    assert any(line.startswith("trace-publisher.post:") for line in sidecars.metrics.lines)
    assert sidecar.terminate() == 0


def test_cli_sigterm_flushes_then_exits_zero(span_queue: MessageQueue, sidecars: Sidecars) -> None:
    sidecar = sidecars.start(sidecars.ini())
    sidecar.wait_until_ready()
    span_queue.put(span(1))
    span_queue.put(span(2))
    wait_until(lambda: queued(span_queue) == 0)

    assert sidecar.terminate() == 0

    assert sidecars.zipkin.bodies() == [b"[" + span(1) + b"," + span(2) + b"]"]
    assert "SIGTERM" in sidecar.log


def test_cli_sigint_exits_zero(span_queue: MessageQueue, sidecars: Sidecars) -> None:
    sidecar = sidecars.start(sidecars.ini(), "--debug")
    sidecar.wait_until_ready()
    sidecar.process.send_signal(signal.SIGINT)

    assert sidecar.wait() == 0


def test_cli_restart_picks_up_messages_left_on_the_queue(
    span_queue: MessageQueue, sidecars: Sidecars
) -> None:
    ini = sidecars.ini()
    first = sidecars.start(ini)
    first.wait_until_ready()
    span_queue.put(span(1))
    sidecars.zipkin.wait_for(1)
    assert first.terminate() == 0

    for n in range(2, 5):  # nobody reads now
        span_queue.put(span(n))
    second = sidecars.start(ini)

    assert sidecars.zipkin.wait_for(2)[1] == b"[" + b",".join(span(n) for n in range(2, 5)) + b"]"
    assert second.terminate() == 0


def test_cli_falls_back_to_the_unnamed_section(
    span_queue: MessageQueue, sidecars: Sidecars
) -> None:
    ini = sidecars.ini().replace(f"[trace-publisher:{sidecars.queue_name}]", "[trace-publisher]")
    sidecar = sidecars.start(ini)
    sidecar.wait_until_ready()
    span_queue.put(span(1))

    assert sidecars.zipkin.wait_for(1) == [b"[" + span(1) + b"]"]
    assert sidecar.terminate() == 0


def test_cli_names_the_bad_key(sidecars: Sidecars) -> None:
    sidecar = sidecars.start(sidecars.ini(retry_limit="ten"))

    assert sidecar.wait() == 1
    assert (
        f"[trace-publisher:{sidecars.queue_name}] retry_limit: invalid value 'ten'" in sidecar.log
    )


def test_cli_needs_a_section(sidecars: Sidecars) -> None:
    sidecar = sidecars.start("[trace-publisher:another]\nzipkin_api_url = http://z/api/v1\n")

    assert sidecar.wait() == 1
    assert f"no [trace-publisher:{sidecars.queue_name}] section" in sidecar.log


def test_cli_explains_a_queue_it_cannot_create(sidecars: Sidecars) -> None:
    # More messages than Linux allows anyone (HARD_MSGMAX is 65536), root included.
    ini = sidecars.ini(**{"queue.max_messages": "100000"})
    sidecar = sidecars.start(ini)

    assert sidecar.wait() == 1
    assert f"cannot open queue /traces-{sidecars.queue_name}" in sidecar.log
    assert "/proc/sys/fs/mqueue/msg_max" in sidecar.log
    assert "queue.max_messages=100000" in sidecar.log
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.unlink_message_queue(f"/traces-{sidecars.queue_name}")


# --- configuration ---------------------------------------------------------------------


def parse_section(**keys: str) -> dict[str, object]:
    raw = {"zipkin_api_url": "http://zipkin:9411/api/v1", **keys}
    return config.parse_config(raw, _publisher_cli._CONFIG_SPEC)


def test_config_defaults() -> None:
    assert parse_section() == {
        "zipkin_api_url": "http://zipkin:9411/api/v1",
        "post_timeout": 3.0,
        "max_batch_size": 512000,
        "retry_limit": 10,
        "retry_backoff": 0.1,
        "max_pending_batches": 20,
        "shutdown_timeout": 5.0,
        "queue": {"max_messages": 10000, "max_message_size": 102400},
    }


@pytest.mark.parametrize(
    ("text", "seconds"), [("3", 3.0), ("0.5", 0.5), ("250 milliseconds", 0.25)]
)
def test_durations_are_seconds_or_timespans(text: str, seconds: float) -> None:
    assert parse_section(post_timeout=text)["post_timeout"] == seconds


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("post_timeout", "0"),
        ("post_timeout", "inf"),
        ("shutdown_timeout", "soon"),
        ("max_batch_size", "2"),
        ("retry_limit", "0"),
        ("max_pending_batches", "1.5"),
        ("queue.max_messages", "-1"),
        ("zipkin_api_url", "zipkin:9411"),
    ],
)
def test_bad_values_name_their_key(key: str, text: str) -> None:
    with pytest.raises(config.ConfigurationError) as info:
        parse_section(**{key: text})
    assert info.value.key == key


def test_bad_durations_say_why() -> None:
    with pytest.raises(config.ConfigurationError, match="must be a positive duration"):
        parse_section(retry_backoff="0 seconds")
    with pytest.raises(config.ConfigurationError, match="expected seconds, such as '30'"):
        parse_section(shutdown_timeout="soon")


def test_section_is_read_as_every_ini_file_is(tmp_path: Path) -> None:
    path = tmp_path / "publisher.ini"
    path.write_text(
        "[DEFAULT]\nmetrics.namespace = tp\n\n"
        "[trace-publisher]\nZipkin_API_URL = http://z/api/v1\nrate = 5%\n"
    )
    section, raw = _publisher_cli._read_section(str(path), "main")
    assert section == "trace-publisher"
    assert raw == {"metrics.namespace": "tp", "zipkin_api_url": "http://z/api/v1", "rate": "5%"}


def test_unreadable_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.ini")
    with pytest.raises(ConfigFileError) as info:
        _publisher_cli._read_section(path, "main")
    assert str(info.value).startswith(f"{path}: cannot read the file")


def test_the_split_module_still_offers_every_name() -> None:
    from baseplate.diagnostics.tracing import publisher

    assert (publisher.MAX_MESSAGE_SIZE, publisher.MAX_QUEUE_SIZE) == (102400, 10000)
    assert (publisher.DEFAULT_MAX_BATCH_SIZE, publisher.MAX_BATCH_AGE) == (512000, 1.0)
    assert publisher.POLL_INTERVAL == 0.2
    assert publisher.USER_AGENT == "baseplate-trace-publisher/1.0"
    assert publisher.main is _publisher_cli.main
    # The shared parts are every sidecar's, offered here under their old names.
    assert publisher.SpanBatch is publisher.Batch is batching.Batch
    assert publisher.Batcher is batching.Batcher
    assert publisher.HTTPPoster is posting.HTTPPoster
    assert publisher.Publisher is loop.Publisher
    assert all(hasattr(publisher, name) for name in publisher.__all__)


def test_the_shared_parts_log_under_the_trace_publishers_name() -> None:
    poster = ZipkinPoster("http://z/api/v1", make_client("tp", None))
    assert poster.logger.name == "baseplate.diagnostics.tracing.publisher"
    assert _publisher_cli._COMMAND.log is poster.logger


def test_zipkin_api_url_is_required() -> None:
    with pytest.raises(config.ConfigurationError, match="zipkin_api_url: required"):
        config.parse_config({}, _publisher_cli._CONFIG_SPEC)
