"""Events for the data pipeline: building them, serializing them, queueing them.

An application builds an event (a v1 :class:`Event`, or a Thrift struct from
the event schemas for v2), and puts it on an :class:`EventQueue`: the POSIX
message queue ``/events-<name>`` on the same host. The event publisher
sidecar (:mod:`baseplate.events.publisher`) reads that queue, batches the
events and posts them to the event collector.

Putting an event never waits: the request path pays for one serialization
and one non-blocking ``mq_send``. When the publisher falls behind and the
queue fills up, :meth:`~baseplate.events.EventQueue.put` raises
:exc:`~baseplate.events.EventQueueFullError` at once, so the application
decides what losing that event means.

Every format here is byte for byte the original Baseplate's, so the same
collector accepts events from either.
"""

from __future__ import annotations

import calendar
import datetime
import enum
import json
import logging
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from thrift import TSerialization
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory

from baseplate.context import ContextFactory
from baseplate.core import Span
from baseplate.message_queue import MessageQueue, MessageTooLargeError, TimedOutError

__all__ = [
    "MAX_EVENT_SIZE",
    "MAX_QUEUE_SIZE",
    "DebugLogger",
    "Event",
    "EventError",
    "EventLogger",
    "EventQueue",
    "EventQueueFullError",
    "EventTooLargeError",
    "FieldKind",
    "serialize_v1_event",
    "serialize_v2_event",
]

#: The largest serialized event, in bytes (characters for a v1 event), that
#: :meth:`~baseplate.events.EventQueue.put` accepts; also the queue's
#: ``max_message_size``.
MAX_EVENT_SIZE = 102400

#: How many events the queue holds (its ``max_messages``) before
#: :meth:`~baseplate.events.EventQueue.put` raises
#: :exc:`~baseplate.events.EventQueueFullError`.
MAX_QUEUE_SIZE = 10000


class FieldKind(enum.Enum):
    """Field kinds."""

    NORMAL = None
    """For fields normal fields with no hashing/indexing requirements."""

    OBFUSCATED = "obfuscated_data"
    """For fields containing sensitive information like IP addresses that must
    be treated with care."""

    HIGH_CARDINALITY = "interana_excluded"
    """For fields that should not be indexed due to high cardinality
    (e.g. not used in Interana)"""


class Event:
    """An event.

    :param topic: The event's topic, which routes it in the pipeline.
    :param event_type: What happened.
    :param timestamp: When it happened, in UTC: a naive :class:`~datetime.datetime`
        is taken as UTC. Only whole seconds are kept, as in the original.
        The default is now, to the millisecond.
    :param id: A unique id for the event, sent as ``str(id)``; a new
        :func:`uuid.uuid4` by default.
    :raises ValueError: ``timestamp`` is aware and not in UTC.
    """

    def __init__(
        self,
        topic: str,
        event_type: str,
        timestamp: datetime.datetime | None = None,
        id: Any = None,
    ) -> None:
        self.topic = topic
        self.event_type = event_type
        #: Milliseconds since the epoch: a float when taken from the clock.
        self.timestamp: float
        if timestamp is not None:
            offset = timestamp.utcoffset()
            if offset is not None and offset.total_seconds() != 0:
                raise ValueError("Timestamps must be in UTC")
            self.timestamp = calendar.timegm(timestamp.timetuple()) * 1000
        else:
            self.timestamp = time.time() * 1000
        self.id = id or uuid.uuid4()
        # Values in the order their keys were first set; the kinds of the
        # fields that are not NORMAL, so an event of plain fields serializes
        # its values as they are.
        self._values: dict[str, Any] = {}
        self._kinds: dict[str, FieldKind] = {}

    def get_field(self, key: str) -> Any:
        """Get the value of a field in the event.

        If the field is not present, :py:data:`None` is returned.

        :param key: The name of the field.
        """
        return self._values.get(key)

    def set_field(
        self,
        key: str,
        value: Any,
        obfuscate: bool = False,
        kind: FieldKind = FieldKind.NORMAL,
    ) -> None:
        """Set the value for a field in the event.

        ``None`` and ``""`` are not sent (the collector treats a missing
        field the same), so setting them changes nothing, not even an earlier
        value; ``0``, ``False`` and ``[]`` are kept. Setting a field again
        replaces its value and kind, and keeps its place.

        :param key: The name of the field.
        :param value: The value to set the field to. Should be JSON
            serializable.
        :param obfuscate: Deprecated: the same as
            ``kind=FieldKind.OBFUSCATED``.
        :param kind: The kind the field is. Used to determine what section of
            the payload the field belongs in when serialized.
        """
        if value is None or (isinstance(value, str) and not value):
            return
        if obfuscate:
            warnings.warn(
                "Passing obfuscate to set_field is deprecated in favor of passing"
                " kind=FieldKind.OBFUSCATED",
                DeprecationWarning,
                stacklevel=2,
            )
            kind = FieldKind.OBFUSCATED
        self._values[key] = value
        if kind is FieldKind.NORMAL:
            self._kinds.pop(key, None)
        else:
            self._kinds[key] = kind

    def _payload(self) -> dict[str, Any]:
        """The payload object: NORMAL fields at the top, the others in their sections.

        A section sits where the first field of its kind does.
        """
        if not self._kinds:
            return self._values
        payload: dict[str, Any] = {}
        for key, value in self._values.items():
            kind = self._kinds.get(key)
            if kind is None:
                payload[key] = value
            else:
                payload.setdefault(kind.value, {})[key] = value
        return payload

    def serialize(self) -> str:
        """The event as v1 JSON; see :func:`serialize_v1_event`."""
        return json.dumps(
            {
                "event_topic": self.topic,
                "event_type": self.event_type,
                "event_ts": int(self.timestamp),
                "uuid": str(self.id),
                "payload": self._payload(),
            }
        )


class EventError(Exception):
    """Base class for event related exceptions."""


class EventTooLargeError(EventError):
    """Raised when a serialized event is too large to send.

    :param size: The length of the serialized event.
    """

    def __init__(self, size: int) -> None:
        super().__init__(f"Event is too large to send ({size} bytes)")
        #: The length of the serialized event.
        self.size = size


class EventQueueFullError(EventError):
    """Raised when the queue of events is full.

    This usually indicates that the event publisher is having trouble talking
    to the event collector.
    """

    def __init__(self) -> None:
        super().__init__("The event queue is full.")


def serialize_v1_event(event: Event) -> str:
    """Serialize an Event object for the V1 event protocol.

    The result is :func:`json.dumps` with its default settings (so non-ASCII
    text is ``\\u`` escaped) of ``event_topic``, ``event_type``,
    ``event_ts`` (integer milliseconds), ``uuid`` and ``payload``, in that
    order.

    :param event: An event object.
    """
    return event.serialize()


_V2_PROTOCOL_FACTORY = TJSONProtocolFactory()


def serialize_v2_event(event: Any) -> bytes:
    """Serialize a Thrift struct to bytes for the V2 event protocol.

    The encoding is Thrift's JSON protocol (``TJSONProtocol``), which the
    publisher wraps, event by event, in the list the collector expects.

    :param event: A Thrift struct from the event schemas.
    """
    serialized: bytes = TSerialization.serialize(event, _V2_PROTOCOL_FACTORY)
    return serialized


class EventLogger:
    """Somewhere to log events, such as the experiments' bucketing events.

    Implementations take the event's fields as keyword arguments; what they
    do with them (put an event on a queue, log a line) is theirs to decide.
    They must not raise into the request that logs.
    """

    def log(self, **kwargs: Any) -> None:
        """Log an event made of ``kwargs``."""
        raise NotImplementedError


class DebugLogger(EventLogger):
    """An :class:`EventLogger` that writes each event to the debug log, for development."""

    def __init__(self) -> None:
        self.logger = logging.getLogger(__name__)

    def log(self, **kwargs: Any) -> None:
        """Write the event's fields at debug level."""
        self.logger.debug("Would send event: %s", kwargs)


class EventQueue(ContextFactory):
    """A queue to transfer events to the publisher.

    The queue is the POSIX message queue ``/events-<name>``, created with
    room for :data:`~baseplate.events.queue.MAX_QUEUE_SIZE` events of up to
    :data:`~baseplate.events.queue.MAX_EVENT_SIZE` bytes if it does not
    exist yet. Creating it with those sizes needs the system's
    ``fs.mqueue`` limits raised; a queue that already exists (made by the
    publisher, or by an operator with smaller sizes) is opened as it is.

    :param name: The name of the event queue to send to. This specifies
        which publisher should send the events which can be useful for routing
        to different event pipelines (prod/test/v2 etc.).
    :param event_serializer: A callable that takes an event object
        and returns serialized bytes ready to send on the wire. See below for
        options.
    :raises baseplate.message_queue.MessageQueueError: the queue cannot be
        opened (:exc:`~baseplate.message_queue.InvalidParametersError` names
        the system limit to raise).
    """

    def __init__(
        self,
        name: str,
        event_serializer: Callable[[Any], str | bytes] = serialize_v1_event,
    ) -> None:
        self.queue = MessageQueue(
            "/events-" + name, max_messages=MAX_QUEUE_SIZE, max_message_size=MAX_EVENT_SIZE
        )
        self.serialize_event = event_serializer

    def put(self, event: Any) -> None:
        """Add an event to the queue.

        The queue is local to the server this code is run on. The event
        publisher on the server will take these events and send them to the
        collector. This never waits for room on the queue.

        :param event: The event to send. The type of event object passed in
            depends on the selected ``event_serializer``.
        :raises EventTooLargeError: The serialized event is too large: over
            :data:`~baseplate.events.queue.MAX_EVENT_SIZE`, or over the
            ``max_message_size`` of a queue that was created smaller.
        :raises EventQueueFullError: The queue is full. Events are
            not being published fast enough.
        """
        serialized = self.serialize_event(event)
        if len(serialized) > MAX_EVENT_SIZE:
            raise EventTooLargeError(len(serialized))
        try:
            self.queue.put(serialized, timeout=0)
        except TimedOutError:
            raise EventQueueFullError from None
        except MessageTooLargeError as exc:
            raise EventTooLargeError(exc.size) from None

    def make_object_for_context(self, name: str, span: Span) -> EventQueue:
        """The queue itself: it is safe to share between requests."""
        return self
