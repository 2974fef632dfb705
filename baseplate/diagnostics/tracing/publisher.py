"""The trace publisher sidecar: spans from a POSIX queue to a Zipkin v1 API.

Applications configured with ``tracing.queue_name = NAME`` put each finished
span, a Zipkin v1 JSON record, on the POSIX message queue ``/traces-NAME``.
This process reads them back, batches them into JSON arrays and posts the
batches to ``<zipkin_api_url>/spans``::

    python -m baseplate.diagnostics.tracing.publisher --queue-name NAME config.ini

Three parts, each usable and testable alone:

* :class:`Batcher` groups raw messages into batches by size and age; it does
  no IO and reads no clock.
* :class:`ZipkinPoster` posts one batch, retrying server errors and IO errors
  with exponential backoff.
* :class:`Publisher` runs the loop: the calling thread reads the queue and
  batches, a sender thread posts, and a bounded list of pending batches sits
  between them, so a slow or absent Zipkin never stops the queue from being
  drained.

Everything the publisher gives up on is logged and counted in a
``dropped.<reason>`` metric.

.. versionadded:: 0.31
   The original's sidecar, rebuilt around these three parts; the batching, the
   HTTP calls and the metrics it shares with the original are unchanged.
"""

from __future__ import annotations

import argparse
import collections
import configparser
import enum
import http.client
import logging
import math
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, TypeVar

from baseplate import config, metrics_client_from_config
from baseplate.message_queue import MessageQueue, MessageQueueError, TimedOutError
from baseplate.metrics import BaseClient
from baseplate.retry import RetryPolicy

__all__ = [
    "Batcher",
    "Delivery",
    "MessageTooLargeError",
    "Publisher",
    "SpanBatch",
    "ZipkinPoster",
    "main",
]

logger = logging.getLogger(__name__)

#: The largest message, in bytes, the publisher asks for when it creates the queue.
MAX_MESSAGE_SIZE = 102400

#: How many messages the publisher asks room for when it creates the queue.
MAX_QUEUE_SIZE = 10000

#: The default ``max_batch_size``: the most bytes one POST carries.
DEFAULT_MAX_BATCH_SIZE = 512000

#: How old, in seconds, the first span of a batch may get before the batch is sent.
MAX_BATCH_AGE = 1.0

#: How long, in seconds, one read of the queue waits before the loop looks around.
POLL_INTERVAL = 0.2

#: Sent with every POST.
USER_AGENT = "baseplate-trace-publisher/1.0"

_T = TypeVar("_T")


# --- batching ----------------------------------------------------------------


class MessageTooLargeError(ValueError):
    """A message cannot fit in a batch even alone.

    :param size: The length of the message, in bytes.
    :param max_size: The most bytes a batch may hold.
    """

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(
            f"a {size}-byte span cannot fit a batch of at most {max_size} bytes"
            " (2 of which are the brackets)"
        )
        self.size = size
        self.max_size = max_size


@dataclass(frozen=True)
class SpanBatch:
    """A closed batch, ready to post."""

    payload: bytes
    """The JSON array: ``[`` + the messages joined by ``,`` + ``]``."""

    count: int
    """How many spans (messages) it holds."""


class Batcher:
    """Groups raw span records into JSON arrays of bounded size and age.

    A batch is closed when the next message would take it over ``max_size``
    bytes, counting the two brackets and one comma between each pair of
    messages (so ``len(batch.payload) <= max_size`` always holds), or once its
    first message is ``max_age`` seconds old. Messages are joined as they are,
    without being parsed: producers put one JSON object per message.

    The batcher does no IO and reads no clock; callers pass ``now`` in
    whatever monotonic unit of seconds they like. It is not thread-safe.

    >>> batcher = Batcher(max_size=9, max_age=1.0)
    >>> batcher.add(b'"a"', now=0.0), batcher.add(b'"b"', now=0.1)
    (None, None)
    >>> batcher.add(b'"c"', now=0.2)  # 2 + 3 + 1 + 3 = 9 bytes; a third would need 13
    SpanBatch(payload=b'["a","b"]', count=2)
    >>> batcher.take_if_due(now=1.2)
    SpanBatch(payload=b'["c"]', count=1)
    """

    def __init__(
        self, max_size: int = DEFAULT_MAX_BATCH_SIZE, max_age: float = MAX_BATCH_AGE
    ) -> None:
        if max_size < 3:
            raise ValueError(f"max_size must leave room for a message, not {max_size!r}")
        if not max_age > 0:
            raise ValueError(f"max_age must be a positive number of seconds, not {max_age!r}")
        self.max_size = max_size
        self.max_age = max_age
        self._messages: list[bytes] = []
        self._size = 0
        self._started = 0.0

    def __len__(self) -> int:
        """How many messages the open batch holds."""
        return len(self._messages)

    @property
    def size(self) -> int:
        """The length the open batch would have if closed now (0 when empty)."""
        return self._size

    def add(self, message: bytes, now: float) -> SpanBatch | None:
        """Add ``message``, returning the batch it closed because it did not fit.

        :raises MessageTooLargeError: ``message`` is longer than
            ``max_size - 2``; it is not added and the open batch is untouched.
        """
        if len(message) + 2 > self.max_size:
            raise MessageTooLargeError(len(message), self.max_size)
        closed = None
        if self._messages and self._size + 1 + len(message) > self.max_size:
            closed = self._close()
        if self._messages:
            self._size += 1 + len(message)
        else:
            self._size = 2 + len(message)
            self._started = now
        self._messages.append(message)
        return closed

    def take_if_due(self, now: float) -> SpanBatch | None:
        """Close and return the open batch if its first message is ``max_age`` old."""
        if self._messages and now - self._started >= self.max_age:
            return self._close()
        return None

    def flush(self) -> SpanBatch | None:
        """Close and return the open batch, whatever its age; None if it is empty."""
        return self._close() if self._messages else None

    def _close(self) -> SpanBatch:
        batch = SpanBatch(b"[" + b",".join(self._messages) + b"]", len(self._messages))
        self._messages = []
        self._size = 0
        return batch


# --- posting -------------------------------------------------------------------


class Delivery(enum.Enum):
    """What became of a batch handed to :meth:`ZipkinPoster.post`."""

    SENT = "sent"
    """Zipkin accepted it (a 2xx response)."""

    REJECTED = "rejected"
    """Zipkin refused it for good (a response that is neither 2xx nor 5xx)."""

    FAILED = "failed"
    """Every attempt the policy allowed met a 5xx or an IO error."""


@dataclass(frozen=True)
class _StoppableBackoff(RetryPolicy):
    """Exponential backoff between the attempts of ``subpolicy``, cut short by ``stop``.

    Sleeps ``base * 2**(k - 1)`` seconds before attempt ``k`` (counting from
    zero), as :class:`~baseplate.retry.ExponentialBackoffRetryPolicy` does,
    but waits on an event instead of :func:`time.sleep`, so that a sidecar
    asked to stop ends its retries at once. Once ``stop`` is set no further
    attempt is yielded.
    """

    subpolicy: RetryPolicy
    base: float
    stop: threading.Event

    def yield_attempts(self) -> Iterator[float | None]:
        for attempt, remaining in enumerate(self.subpolicy):
            if attempt and self.stop.wait(self.base * 2 ** (attempt - 1)):
                return
            if self.stop.is_set():
                return
            yield remaining


class ZipkinPoster:
    """Posts batches of spans to a Zipkin v1 API.

    Each batch goes to ``<api_url>/spans`` as the body of a POST with
    ``User-Agent: baseplate-trace-publisher/1.0`` and ``Content-Type:
    application/json``, each attempt on a new connection and limited to
    ``post_timeout`` seconds per connect or read. Server errors (5xx) and IO
    errors are retried, up to ``retry_limit`` attempts in all, sleeping
    ``retry_backoff``, then twice that, and so on, between them; any other
    non-2xx response is final.

    Metrics, under the client's namespace: a ``post`` timer for every
    attempt, counters ``error.http`` and ``error.io`` for every failed one,
    and ``sent``, increased by the number of spans, for every batch
    accepted. Failed attempts are logged at warning level.

    Instances are safe to share between threads.

    :param api_url: The Zipkin API's base URL, such as
        ``http://zipkin:9411/api/v1``.
    :raises ValueError: ``api_url`` is not an ``http`` or ``https`` URL, or a
        limit is not positive.
    """

    def __init__(
        self,
        api_url: str,
        metrics: BaseClient,
        *,
        post_timeout: float = 3.0,
        retry_limit: int = 10,
        retry_backoff: float = 0.1,
    ) -> None:
        self.url = api_url.rstrip("/") + "/spans"
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, not {api_url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"the URL must not have a query or fragment: {api_url!r}")
        if not post_timeout > 0:
            raise ValueError(f"post_timeout must be positive, not {post_timeout!r}")
        if retry_limit < 1:
            raise ValueError(f"retry_limit must be at least 1, not {retry_limit!r}")
        if not retry_backoff > 0:
            raise ValueError(f"retry_backoff must be positive, not {retry_backoff!r}")
        self._connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._netloc = parts.netloc.rsplit("@", 1)[-1]  # credentials do not go in Host
        self._target = parts.path
        self.metrics = metrics
        self.post_timeout = post_timeout
        self.retry_limit = retry_limit
        self.retry_backoff = retry_backoff

    def retry_policy(self, stop: threading.Event | None = None) -> RetryPolicy:
        """The usual policy: ``retry_limit`` attempts with backoff, ending early on ``stop``."""
        return _StoppableBackoff(
            RetryPolicy.new(attempts=self.retry_limit),
            self.retry_backoff,
            threading.Event() if stop is None else stop,
        )

    def post(self, batch: SpanBatch, policy: RetryPolicy | None = None) -> Delivery:
        """Post ``batch``, attempting as often as ``policy`` allows.

        ``policy`` defaults to :meth:`retry_policy`. When it yields a time
        budget, an attempt's timeout is the smaller of that and
        ``post_timeout``. Never raises for a network or HTTP failure.
        """
        for time_remaining in policy or self.retry_policy():
            timeout = self.post_timeout
            if time_remaining is not None:
                timeout = min(timeout, time_remaining)
            try:
                with self.metrics.timer("post"):
                    status, reason, body = self._attempt(batch.payload, timeout)
            except (OSError, http.client.HTTPException) as exc:
                self.metrics.counter("error.io").increment()
                logger.warning("posting %d spans to %s failed: %r", batch.count, self.url, exc)
                continue
            if 200 <= status < 300:
                self.metrics.counter("sent").increment(batch.count)
                return Delivery.SENT
            self.metrics.counter("error.http").increment()
            logger.warning(
                "posting %d spans to %s failed: HTTP %d %s: %r",
                batch.count,
                self.url,
                status,
                reason,
                body[:500],
            )
            if status < 500:
                return Delivery.REJECTED
        return Delivery.FAILED

    def _attempt(self, payload: bytes, timeout: float) -> tuple[int, str, bytes]:
        connection = self._connection_class(self._netloc, timeout=timeout)
        try:
            connection.request(
                "POST",
                self._target,
                body=payload,
                headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            return response.status, response.reason, response.read()
        finally:
            connection.close()


# --- the loop ----------------------------------------------------------------


class Publisher:
    """Reads spans from a queue, batches them and hands the batches to a poster.

    :meth:`run` reads the queue in the calling thread and posts from a sender
    thread of its own. Closed batches wait for the sender in a list of at most
    ``max_pending_batches`` (besides the one being posted); when a new batch
    would exceed that, the oldest waiting one is dropped. So reading never
    waits for Zipkin, and a queue that stays drained keeps producers from
    dropping spans at their end instead.

    A batch is dropped, logged at error level and counted in the metric
    ``dropped.<reason>`` (increased by its number of spans) when a span is
    too large for any batch (``too_large``), Zipkin refuses it
    (``rejected``), every attempt fails (``undeliverable``), the pending list
    overflows (``overflow``) or the publisher stops before it could be sent
    (``shutdown``).

    :param clock: Monotonic seconds, used for the age of batches.
    :param stop: Setting it makes :meth:`run` stop; :meth:`stop` sets it.
    :param poll_interval: How long one read of the queue waits for a message.
    :param shutdown_timeout: When stopping, how long to spend sending what is
        still pending, one attempt per batch.
    """

    def __init__(
        self,
        queue: MessageQueue,
        batcher: Batcher,
        poster: ZipkinPoster,
        metrics: BaseClient,
        *,
        max_pending_batches: int = 20,
        shutdown_timeout: float = 5.0,
        poll_interval: float = POLL_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        if max_pending_batches < 1:
            raise ValueError(f"max_pending_batches must be at least 1, not {max_pending_batches}")
        self.queue = queue
        self.batcher = batcher
        self.poster = poster
        self.metrics = metrics
        self.max_pending_batches = max_pending_batches
        self.shutdown_timeout = shutdown_timeout
        self.poll_interval = poll_interval
        self.clock = clock
        self._stop = threading.Event() if stop is None else stop
        self._lock = threading.Lock()
        self._batch_ready = threading.Condition(self._lock)
        self._pending: collections.deque[SpanBatch] = collections.deque()
        self._in_flight: SpanBatch | None = None
        self._abandoned = False  # the sender's work was given up for lost at exit

    def stop(self) -> None:
        """Ask :meth:`run` to stop; safe to call from a signal handler."""
        if not self._stop.is_set():
            self._stop.set()

    def run(self) -> None:
        """Publish until stopped, then try once to send what is pending, and return.

        Messages still on the queue when it stops stay there for the next
        run. An error reading the queue stops the publisher the same way and
        is then raised.
        """
        sender = threading.Thread(target=self._send_loop, name="trace-publisher-sender")
        sender.daemon = True  # a post that hangs past the deadline must not hold up exit
        sender.start()
        try:
            self._read_loop()
        finally:
            self.stop()
            self._shut_down(sender)

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                message: bytes | None = self.queue.get(timeout=self.poll_interval)
            except TimedOutError:
                message = None
            now = self.clock()
            if message is not None:
                try:
                    closed = self.batcher.add(message, now)
                except MessageTooLargeError as exc:
                    self._drop(1, "too_large", str(exc))
                    closed = None
                if closed is not None:
                    self._enqueue(closed)
            due = self.batcher.take_if_due(now)
            if due is not None:
                self._enqueue(due)

    def _enqueue(self, batch: SpanBatch) -> None:
        with self._lock:
            self._pending.append(batch)
            overflow = []
            while len(self._pending) > self.max_pending_batches:
                overflow.append(self._pending.popleft())
            self._batch_ready.notify()
        for oldest in overflow:
            self._drop(
                oldest.count,
                "overflow",
                f"more than {self.max_pending_batches} batches are waiting to be sent",
            )

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if not self._pending:
                    self._batch_ready.wait(self.poll_interval)
                if not self._pending or self._stop.is_set():
                    continue
                batch = self._in_flight = self._pending.popleft()
            try:
                result = self.poster.post(batch, self.poster.retry_policy(self._stop))
            except Exception:  # a bug must not silence the sender for good
                logger.exception("unexpected error posting a batch")
                result = Delivery.FAILED
            with self._lock:
                self._in_flight = None
                if self._abandoned:
                    return
                if result is Delivery.FAILED and self._stop.is_set():
                    self._pending.appendleft(batch)  # it gets its last try at shutdown
                    return
            self._settle(batch, result, "undeliverable")

    def _settle(self, batch: SpanBatch, result: Delivery, failed_reason: str) -> None:
        if result is Delivery.REJECTED:
            self._drop(batch.count, "rejected", "Zipkin refused the batch")
        elif result is Delivery.FAILED:
            self._drop(batch.count, failed_reason, "no attempt to send it succeeded")

    def _shut_down(self, sender: threading.Thread) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        last = self.batcher.flush()
        if last is not None:
            self._enqueue(last)
        sender.join(max(0.0, deadline - time.monotonic()))
        if sender.is_alive():
            with self._lock:
                self._abandoned = True
                stuck = [self._in_flight] if self._in_flight is not None else []
            for batch in stuck:
                self._drop(batch.count, "shutdown", "it was still being posted at the deadline")
        with self._lock:
            pending = len(self._pending)
        logger.info("stopping: %d batch(es) left to send", pending)
        while True:
            with self._lock:
                if not self._pending:
                    break
                batch = self._pending.popleft()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._drop(batch.count, "shutdown", "the shutdown deadline passed")
                continue
            result = self.poster.post(batch, RetryPolicy.new(attempts=1, budget=remaining))
            self._settle(batch, result, "shutdown")

    def _drop(self, count: int, reason: str, why: str) -> None:
        self.metrics.counter(f"dropped.{reason}").increment(count)
        logger.error("dropped %d span(s) (%s): %s", count, reason, why)


# --- the command line ----------------------------------------------------------


def _seconds(text: str) -> float:
    """A positive duration: a number of seconds (``3``, ``0.5``) or a Timespan."""
    try:
        value = float(text)
    except ValueError:
        value = config.Timespan(text).total_seconds()
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a positive duration")
    return value


def _http_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL, such as http://zipkin:9411/api/v1")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return text


def _default(parser: Callable[[str], _T], default: _T) -> Callable[[str], _T]:
    return config.Optional(parser, default)


_CONFIG_SPEC: config.ConfigSpec = {
    "zipkin_api_url": _http_url,
    "post_timeout": _default(_seconds, 3.0),
    "max_batch_size": _default(config.at_least(3), DEFAULT_MAX_BATCH_SIZE),
    "retry_limit": _default(config.at_least(1), 10),
    "retry_backoff": _default(_seconds, 0.1),
    "max_pending_batches": _default(config.at_least(1), 20),
    "shutdown_timeout": _default(_seconds, 5.0),
    "queue": {
        "max_messages": _default(config.at_least(1), MAX_QUEUE_SIZE),
        "max_message_size": _default(config.at_least(1), MAX_MESSAGE_SIZE),
    },
}
"""The keys of a ``[trace-publisher:NAME]`` section (besides ``metrics.*``)."""


def _read_section(config_file: IO[str], queue_name: str) -> tuple[str, dict[str, str]]:
    parser = configparser.RawConfigParser()
    parser.read_file(config_file)
    for section in (f"trace-publisher:{queue_name}", "trace-publisher"):
        if parser.has_section(section):
            return section, dict(parser.items(section))
    raise LookupError(
        f"{config_file.name}: no [trace-publisher:{queue_name}] section"
        " (nor a [trace-publisher] section to fall back on)"
    )


def _build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m baseplate.diagnostics.tracing.publisher",
        description="Read spans from the POSIX queue /traces-NAME and post them to Zipkin.",
    )
    parser.add_argument(
        "config_file",
        type=argparse.FileType("r"),
        help="an INI file with a [trace-publisher:NAME] (or [trace-publisher]) section",
    )
    parser.add_argument(
        "--queue-name",
        default="main",
        metavar="NAME",
        help="read /traces-NAME, configured by [trace-publisher:NAME] (default: %(default)s)",
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sidecar (``python -m baseplate.diagnostics.tracing.publisher``).

    Returns the exit status: 0 after a stop by SIGTERM or SIGINT, 1 when it
    cannot start (bad configuration, a queue it cannot open).
    """
    args = _build_arg_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with args.config_file:
        try:
            section, raw_config = _read_section(args.config_file, args.queue_name)
        except (LookupError, configparser.Error) as exc:
            logger.error("%s", exc)
            return 1
    try:
        cfg = config.parse_config(raw_config, _CONFIG_SPEC)
        metrics = metrics_client_from_config(raw_config)
    except config.ConfigurationError as exc:
        logger.error("[%s] %s", section, exc)
        return 1

    queue_path = f"/traces-{args.queue_name}"
    try:
        queue = MessageQueue(queue_path, cfg.queue.max_messages, cfg.queue.max_message_size)
    except MessageQueueError as exc:
        logger.error(
            "cannot open queue %s: %s. The queue is created with queue.max_messages=%d and"
            " queue.max_message_size=%d unless it already exists: raise the system's limits"
            " (/proc/sys/fs/mqueue/msg_max and msgsize_max, `ulimit -q`), set lower values"
            " for those keys in [%s], or start the application first so that it creates"
            " the queue",
            queue_path,
            exc,
            cfg.queue.max_messages,
            cfg.queue.max_message_size,
            section,
        )
        return 1

    poster = ZipkinPoster(
        cfg.zipkin_api_url,
        metrics,
        post_timeout=cfg.post_timeout,
        retry_limit=cfg.retry_limit,
        retry_backoff=cfg.retry_backoff,
    )
    publisher = Publisher(
        queue,
        Batcher(cfg.max_batch_size),
        poster,
        metrics,
        max_pending_batches=cfg.max_pending_batches,
        shutdown_timeout=cfg.shutdown_timeout,
    )

    received: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # No logging here: writing to stderr from a signal handler can collide
        # with a write the main thread was in the middle of.
        received.append(signal.Signals(signum).name)
        publisher.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logger.info("publishing spans from %s to %s", queue_path, poster.url)
    with queue:
        publisher.run()
    logger.info("stopped by %s", received[0] if received else "request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
