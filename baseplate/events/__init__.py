"""Events for the data pipeline.

See :mod:`baseplate.events.queue` for building and queueing events, and
:mod:`baseplate.events.publisher` for the sidecar that sends them on.
"""

from baseplate.events.queue import (
    DebugLogger,
    Event,
    EventError,
    EventLogger,
    EventQueue,
    EventQueueFullError,
    EventTooLargeError,
    FieldKind,
    serialize_v1_event,
    serialize_v2_event,
)

__all__ = [
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
