"""Consuming messages from an AMQP (RabbitMQ) queue with `kombu <https://docs.celeryq.dev/projects/kombu/>`_.

:func:`consume` turns a function into a long-running consumer process: it
declares a queue, binds it to an exchange, and calls the function for each
message, inside a server span, acknowledging the message once the function
returns::

    from kombu import Connection, Exchange
    from baseplate import queue_consumer

    def process_links(context, msg_body, msg):
        print("processing %s" % msg_body)

    queue_consumer.consume(
        baseplate=make_baseplate(cfg, app_config),
        exchange=Exchange("reddit_exchange", "direct"),
        connection=Connection(
            hostname="amqp://guest:guest@reddit.local:5672",
            virtual_host="/",
        ),
        queue_name="process_links_q",
        routing_keys=["link_created", "link_deleted", "link_updated"],
        handler=process_links,
    )

This creates the queue ``process_links_q``, binds it with the routing keys
``link_created``, ``link_deleted`` and ``link_updated``, and feeds every
message routed to it to ``process_links``.

Underneath, a worker thread receives messages from the broker and puts them
in a bounded local queue, from which the consumer takes them: the broker's
network traffic goes on while a message is handled.
:class:`BaseKombuConsumer` is that machinery alone, usable without the rest
of Baseplate; :class:`KombuConsumer` adds a traced
:meth:`~KombuConsumer.get_message` and :meth:`~KombuConsumer.get_batch` for
consumers that build their own loop.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from threading import Thread
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from baseplate._extras import missing_extra
from baseplate.retry import RetryPolicy

try:
    from kombu.connection import Connection
    from kombu.entity import Exchange, Queue
    from kombu.message import Message
    from kombu.messaging import Consumer
    from kombu.mixins import ConsumerMixin
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.queue_consumer", "kombu", "amqp") from exc

if TYPE_CHECKING:
    from baseplate.core import Baseplate, ServerSpan, Span

__all__ = [
    "BaseKombuConsumer",
    "ConsumerContext",
    "ConsumerStoppedError",
    "KombuConsumer",
    "consume",
]

logger = logging.getLogger(__name__)

#: The seconds a wait lasts before the waiter looks whether it was asked to
#: stop: how long a stop can take to be noticed.
_STOP_CHECK_INTERVAL = 1.0
#: The longest :func:`consume` waits for the worker thread to end when it stops.
_WORKER_STOP_TIMEOUT = 10.0
#: The default bound of the local queue, in messages.
_DEFAULT_QUEUE_SIZE = 100

_ConsumerT = TypeVar("_ConsumerT", bound="BaseKombuConsumer")


class ConsumerStoppedError(Exception):
    """The consumer's worker thread has ended: no message will come any more.

    Raised by :meth:`BaseKombuConsumer.get_message` and
    :meth:`~BaseKombuConsumer.get_batch` (and :class:`KombuConsumer`'s)
    instead of waiting for ever, after :meth:`BaseKombuConsumer.stop` or when
    the worker failed; the failure, if any, is the ``__cause__``.

    .. versionadded:: 0.31
    """


class ConsumerContext:
    """The context object of one message in :func:`consume`: an attribute bag.

    Baseplate sets ``trace`` (the server span); context factories added with
    :meth:`~baseplate.core.Baseplate.add_to_context` add their own
    attributes, as for a request.
    """

    trace: ServerSpan

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {sorted(vars(self))}>"


def _describe_delivery(span: Span, message: Message) -> None:
    """Tag a ``kombu.get_message`` span with where the message came from."""
    info = message.delivery_info
    span.set_tag("routing_key", info.get("routing_key", ""))
    span.set_tag("consumer_tag", info.get("consumer_tag", ""))
    span.set_tag("delivery_tag", info.get("delivery_tag", ""))
    span.set_tag("exchange", info.get("exchange", ""))


def consume(
    baseplate: Baseplate,
    exchange: Exchange,
    connection: Connection,
    queue_name: str,
    routing_keys: Sequence[str],
    handler: Callable[[ConsumerContext, Any, Message], Any],
) -> None:
    """Create a long-running process to consume messages from a queue.

    A queue with name ``queue_name`` is created and bound to the
    ``routing_keys`` so messages published to the ``routing_keys`` are routed
    to the queue.

    Next, the process registers a consumer that receives messages from
    the queue and feeds them to the ``handler``.

    The ``handler`` function must take 3 arguments:

    * ``context``: a baseplate context
    * ``message_body``: the text body of the message
    * ``message``: :class:`kombu.message.Message`

    The consumer will automatically ``ack`` each message after the handler
    method exits. If there is an error in processing and the message must be
    retried the handler should raise an exception to crash the process. This
    will prevent the ``ack`` and the message will be re-queued at the head of
    the queue.

    A handler may also settle the message itself (``message.reject()``, for a
    message it can never handle): the consumer then leaves it as it is.

    Each message is one server span, named ``queue_name``, that starts once
    the message has arrived: a child span ``kombu.get_message`` tagged with
    the message's delivery information, then the handler, then the ``ack``.
    The metrics observer therefore times ``server.<queue_name>`` and counts
    its successes and failures, once per message.

    On SIGTERM the consumer takes no new message: the one being handled is
    finished and acknowledged, then the connection is closed, so that the
    messages received but not yet handled go back to the queue for another
    consumer, and the function returns. (The function installs its SIGTERM
    handler only when called from the main thread, and puts the previous
    one back when it returns.) Any other way out, an exception from the
    handler above all, also closes the connection before the exception goes
    on.

    :param baseplate: A baseplate instance for the service.
    :param exchange: The exchange to bind the queue to; declared if it does
        not exist.
    :param connection: The broker to connect to. The worker uses a clone of
        it, so the object itself is left unused.
    :param queue_name: The name of the queue.
    :param routing_keys: List of routing keys.
    :param handler: The handler method.

    .. versionchanged:: 0.31
       The server span starts when a message is there rather than when the
       wait for it begins, so ``server.<queue_name>`` times the handling
       alone; a message the handler acknowledged, rejected or requeued is
       not acknowledged again; and the function returns after a SIGTERM.
    """
    queues = [
        Queue(name=queue_name, exchange=exchange, routing_key=routing_key)  # type: ignore[no-untyped-call]
        for routing_key in routing_keys
    ]
    handler_name = getattr(handler, "__qualname__", None) or repr(handler)
    logger.info("registering %s as a handler for %r", handler_name, queues)
    consumer = KombuConsumer.new(connection, queues)
    stop_requested = False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # Only a flag: the loop below looks at it between messages.
        nonlocal stop_requested
        stop_requested = True

    # Signal handlers can only be set from the main thread.
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler: Any = None
    if on_main_thread:
        previous_handler = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        logger.info("waiting for messages")
        worker = consumer.worker
        while not stop_requested:
            message = worker.get_message(block=True, timeout=_STOP_CHECK_INTERVAL)
            if message is None:
                continue
            context = ConsumerContext()
            with baseplate.make_server_span(context, queue_name) as server_span:
                with server_span.make_child("kombu.get_message") as span:
                    span.set_tag("kind", "consumer")
                    _describe_delivery(span, message)
                handler(context, message.body, message)
                if not message.acknowledged:
                    message.ack()  # type: ignore[no-untyped-call]  # kombu's is unannotated
        logger.info("stopping on SIGTERM")
    finally:
        consumer.stop(timeout=_WORKER_STOP_TIMEOUT)
        if on_main_thread:
            # None: the handler was not set from Python; the default is what it was.
            restored = signal.SIG_DFL if previous_handler is None else previous_handler
            signal.signal(signal.SIGTERM, restored)


class _StopRequestedError(Exception):
    """Ends the worker's attempts to connect once it is asked to stop."""


class _ConsumerWorker(ConsumerMixin):
    """Receives messages on its own thread and puts them in ``work_queue``.

    The queue holds the received messages, and a ``None`` once the worker
    has ended, which every later waiter finds too.
    """

    def __init__(
        self,
        connection: Connection,
        queues: Sequence[Queue],
        work_queue: queue.Queue[Message | None],
    ) -> None:
        self.connection = connection
        self.queues = queues
        self.work_queue = work_queue
        #: The exception the worker ended with, if it failed.
        self.failure: Exception | None = None

    def get_consumers(
        self, consumer_class: Callable[..., Consumer], channel: Any
    ) -> list[Consumer]:
        """One consumer of every queue, handing each message over undecoded.

        ``consumer_class`` is :class:`kombu.Consumer` with the channel given.
        """
        return [consumer_class(queues=self.queues, on_message=self.on_message)]

    def on_message(self, message: Message) -> None:
        """Queue the message, waiting while the local queue is full."""
        while not self.should_stop:
            try:
                self.work_queue.put(message, timeout=_STOP_CHECK_INTERVAL)
                return
            except queue.Full:
                continue
        # Stopping: the message stays unacknowledged, and the broker gives it
        # to another consumer once this connection closes.

    @contextmanager
    def establish_connection(self) -> Iterator[Connection]:
        """Connect a clone of the connection, retrying until it works or a stop is asked.

        kombu's own version retries for ever: the callback it calls every
        second between attempts is what ends them once ``should_stop``
        is set.
        """
        with self.create_connection() as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(
                self.on_connection_error, self.connect_max_retries, callback=self._check_stop
            )
            yield connection

    def _check_stop(self) -> None:
        if self.should_stop:
            raise _StopRequestedError

    def run_until_stopped(self) -> None:
        """The worker thread: consume until asked to stop, then signal the end.

        kombu's loop reconnects after connection and channel errors; anything
        else ends the worker, and is logged here once and raised to the
        consumer when it next waits.
        """
        try:
            self.run()  # type: ignore[no-untyped-call]  # kombu's is unannotated
        except _StopRequestedError:
            pass
        except Exception as exc:
            self.failure = exc
            logger.exception("the queue consumer's worker failed and stopped")
        finally:
            # Messages still queued came over a connection that is now
            # closed: they cannot be acknowledged, and the broker has given
            # them back to the queue.
            while True:
                try:
                    self.work_queue.get_nowait()
                except queue.Empty:
                    break
            self.work_queue.put(None)

    def get_message(self, block: bool, timeout: float | None) -> Message | None:
        """Take the next message; None if there is none within ``timeout`` (or now).

        :raises ConsumerStoppedError: The worker has ended.
        """
        try:
            message = self.work_queue.get(block=block, timeout=timeout)
        except queue.Empty:
            return None
        if message is None:
            self.work_queue.put(None)  # for the next waiter
            reason = "" if self.failure is None else f" after an error: {self.failure!r}"
            raise ConsumerStoppedError(f"the queue consumer's worker has stopped{reason}") from (
                self.failure
            )
        return message


class BaseKombuConsumer:
    """Base object for consuming messages from a queue.

    A worker process accepts messages from the queue and puts them in a local
    work queue. The "real" consumer can then get messages with
    :meth:`~baseplate.queue_consumer.BaseKombuConsumer.get_message` or
    :meth:`~baseplate.queue_consumer.BaseKombuConsumer.get_batch`. It is
    that consumer's responsibility to ``ack`` or ``reject`` messages.

    Can be used directly, outside of standard baseplate context.

    The worker is a thread (a greenlet under gevent's monkey-patching) that
    keeps one connection to the broker, reconnecting after a failure. The
    broker may send it any number of messages ahead (no prefetch limit is
    set, as in the original); the local queue holds at most ``queue_size``
    of them, and the worker waits while it is full. Messages acknowledge
    over the worker's connection, so a message taken from a connection that
    has since been lost can no longer be acknowledged: the broker has already
    given it back to the queue.

    Make one with :meth:`new`; the constructor takes the worker that fills
    the local queue and the thread it runs on.
    """

    def __init__(self, worker: _ConsumerWorker, worker_thread: Thread) -> None:
        self.worker = worker
        self.worker_thread = worker_thread

    @classmethod
    def new(
        cls: type[_ConsumerT],
        connection: Connection,
        queues: Sequence[Queue],
        queue_size: int = _DEFAULT_QUEUE_SIZE,
    ) -> _ConsumerT:
        """Create and initialize a consumer.

        The queues are declared (with their exchanges and bindings) and
        consumed from as soon as the worker has connected, in the
        background.

        :param connection: The broker to connect to; the worker connects
            with a clone of it.
        :param queues: List of :class:`kombu.Queue` objects.
        :param queue_size: (Optional) The maximum number of messages to cache
            in the internal :class:`queue.Queue` worker queue. Defaults to
            100. For an infinite size (not recommended), use
            ``queue_size=0``.
        """
        work_queue: queue.Queue[Message | None] = queue.Queue(maxsize=queue_size)
        worker = _ConsumerWorker(connection, queues, work_queue)
        worker_thread = Thread(target=worker.run_until_stopped)
        worker_thread.name = "consumer message pump"
        worker_thread.daemon = True
        worker_thread.start()
        return cls(worker, worker_thread)

    def get_message(self) -> Message:
        """Return a single message, waiting for one as long as it takes.

        :raises ConsumerStoppedError: The worker has ended (see :meth:`BaseKombuConsumer.stop`).
        """
        batch = BaseKombuConsumer.get_batch(self, max_items=1, timeout=None)
        return batch[0]

    def get_batch(self, max_items: int, timeout: float | None) -> list[Message]:
        """Return a batch of messages.

        The batch is complete when it has ``max_items`` messages or
        ``timeout`` has passed, whichever comes first; with ``timeout`` 0 it
        is what the local queue holds at once, up to ``max_items``, possibly
        nothing.

        :param max_items: The maximum batch size.
        :param timeout: The maximum time to wait in seconds, or ``None``
            for no timeout.
        :raises ConsumerStoppedError: The worker has ended (see :meth:`BaseKombuConsumer.stop`).
        :raises ValueError: ``max_items`` is less than 1 or ``timeout`` is
            negative.

        .. versionchanged:: 0.31
           With ``timeout`` 0 the batch takes every message at hand, up to
           ``max_items``, rather than at most one.
        """
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, not {max_items!r}")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or at least 0 seconds, not {timeout!r}")
        block = timeout != 0
        batch = []
        policy = RetryPolicy.new(attempts=max_items, budget=timeout if block else None)
        for time_remaining in policy:
            message = self.worker.get_message(block=block, timeout=time_remaining)
            if message is None:
                break
            batch.append(message)
        return batch

    def stop(self, timeout: float | None = None) -> None:
        """Stop receiving messages, close the connection, and wait for the worker to end.

        Messages received but not yet taken, and those taken but not
        acknowledged, go back to the broker's queue for another consumer.
        Afterwards :meth:`get_message` and :meth:`get_batch` raise
        :exc:`ConsumerStoppedError`. The worker notices the request within
        about a second.

        :param timeout: The longest wait for the worker thread, in seconds;
            None to wait until it ends.

        .. versionadded:: 0.31
        """
        self.worker.should_stop = True
        self.worker_thread.join(timeout)


class KombuConsumer(BaseKombuConsumer):
    """Consumer for use in baseplate.

    The :meth:`~baseplate.queue_consumer.KombuConsumer.get_message` and
    :meth:`~baseplate.queue_consumer.KombuConsumer.get_batch` methods will
    automatically record diagnostic information: each is a child span of
    the given server span, tagged ``kind = consumer``, which the metrics
    observer times as ``clients.kombu.get_message`` or
    ``clients.kombu.get_batch``. The span covers the wait.
    """

    def get_message(self, server_span: ServerSpan) -> Message:  # type: ignore[override]
        """Return a single message.

        The span ``kombu.get_message`` is also tagged with the message's
        ``routing_key``, ``consumer_tag``, ``delivery_tag`` and ``exchange``.

        :param server_span: The span of the work the message is for.
        :raises ConsumerStoppedError: The worker has ended (see :meth:`BaseKombuConsumer.stop`).
        """
        with server_span.make_child("kombu.get_message") as span:
            span.set_tag("kind", "consumer")
            message = BaseKombuConsumer.get_message(self)
            _describe_delivery(span, message)
            return message

    def get_batch(  # type: ignore[override]
        self, server_span: ServerSpan, max_items: int, timeout: float | None
    ) -> list[Message]:
        """Return a batch of messages.

        The span ``kombu.get_batch`` is also tagged with the ``message_count``.

        :param server_span: The span of the work the batch is for.
        :param max_items: The maximum batch size.
        :param timeout: The maximum time to wait in seconds, or ``None``
            for no timeout.
        :raises ConsumerStoppedError: The worker has ended (see :meth:`BaseKombuConsumer.stop`).
        :raises ValueError: ``max_items`` is less than 1 or ``timeout`` is
            negative.
        """
        with server_span.make_child("kombu.get_batch") as span:
            span.set_tag("kind", "consumer")
            messages = BaseKombuConsumer.get_batch(self, max_items, timeout)
            span.set_tag("message_count", len(messages))
            return messages
