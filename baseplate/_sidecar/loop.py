"""The sidecars' run loop: a reader thread batching the queue, a sender thread posting.

A sidecar must keep reading its queue while its server is slow or away, or
the applications that write to the queue find it full; and it must bound
what it holds meanwhile. So reading and posting run in threads of their own,
with a bounded list of closed batches between them, and whatever is given up
is logged and counted in one place. :mod:`baseplate.diagnostics.tracing.publisher`
documents this part.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from baseplate._sidecar.batching import Batch, Batcher, MessageTooLargeError
from baseplate._sidecar.posting import Delivery, HTTPPoster
from baseplate.message_queue import MessageQueue, TimedOutError
from baseplate.metrics import BaseClient
from baseplate.retry import RetryPolicy

#: How long, in seconds, one read of the queue waits before the loop looks around.
POLL_INTERVAL = 0.2


class Publisher:
    """Reads messages from a queue, batches them and hands the batches to a poster.

    :meth:`run` reads the queue in the calling thread and posts from a sender
    thread of its own. Closed batches wait for the sender in a list of at most
    ``max_pending_batches`` (besides the one being posted); when a new batch
    would exceed that, the oldest waiting one is dropped. So reading never
    waits for the server, and a queue that stays drained keeps producers from
    dropping messages at their end instead. With ``wait_for_room`` the reader
    waits instead: it takes nothing off the queue while that many batches
    wait (so at most one more than that is ever held), and the messages stay
    on the queue, where they outlast a restart of the publisher, until the
    sender catches up; producers then find the queue full.

    A batch is dropped, logged at error level and counted in the metric
    ``dropped.<reason>`` (increased by its number of messages) when a message
    is too large for any batch (``too_large``) or empty (``empty``), the
    server refuses it (``rejected``), every attempt fails
    (``undeliverable``), the pending list overflows (``overflow``) or the
    publisher stops before it could be sent (``shutdown``).

    .. versionchanged:: 0.31
       Any :class:`HTTPPoster`, ``wait_for_room``, and empty messages dropped.

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
        poster: HTTPPoster,
        metrics: BaseClient,
        *,
        max_pending_batches: int = 20,
        wait_for_room: bool = False,
        shutdown_timeout: float = 5.0,
        poll_interval: float = POLL_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        if max_pending_batches < 1:
            raise ValueError(f"max_pending_batches must be at least 1, not {max_pending_batches}")
        self._stop = threading.Event() if stop is None else stop
        self.queue = queue
        self.batcher = batcher
        self.poster = poster
        self.metrics = metrics
        self.max_pending_batches = max_pending_batches
        self.wait_for_room = wait_for_room
        self.shutdown_timeout = shutdown_timeout
        self.poll_interval = poll_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._batch_ready = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._pending: collections.deque[Batch] = collections.deque()
        self._in_flight: Batch | None = None
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
        sender = threading.Thread(target=self._send_loop, name="publisher-sender")
        sender.daemon = True  # a post that hangs past the deadline must not hold up exit
        sender.start()
        try:
            self._read_loop()
        finally:
            self.stop()
            self._shut_down(sender)

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            if self.wait_for_room:
                with self._lock:
                    if len(self._pending) >= self.max_pending_batches:
                        self._room.wait(self.poll_interval)
                        continue
            try:
                message: bytes | None = self.queue.get(timeout=self.poll_interval)
            except TimedOutError:
                message = None
            now = self.clock()
            if message is not None and not message:
                self._drop(1, "empty", "an empty message holds no record")
            elif message is not None:
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

    def _enqueue(self, batch: Batch) -> None:
        with self._lock:
            self._pending.append(batch)
            overflow = []
            while not self.wait_for_room and len(self._pending) > self.max_pending_batches:
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
                self._room.notify()
            try:
                result = self.poster.post(batch, self.poster.retry_policy(self._stop))
            except Exception:  # a bug must not silence the sender for good
                self.poster.logger.exception("unexpected error posting a batch")
                result = Delivery.FAILED
            with self._lock:
                self._in_flight = None
                if self._abandoned:
                    return
                if result is Delivery.FAILED and self._stop.is_set():
                    self._pending.appendleft(batch)  # it gets its last try at shutdown
                    return
            self._settle(batch, result, "undeliverable")

    def _settle(self, batch: Batch, result: Delivery, failed_reason: str) -> None:
        if result is Delivery.REJECTED:
            self._drop(batch.count, "rejected", "the server refused the batch")
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
        self.poster.logger.info("stopping: %d batch(es) left to send", pending)
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
        self.poster.logger.error("dropped %d %s (%s): %s", count, self.poster.noun, reason, why)
