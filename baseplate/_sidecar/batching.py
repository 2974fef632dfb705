"""Batching for the sidecars: raw messages into framed batches of bounded size and age.

A sidecar that forwards a queue's messages sends them in batches, both to
spare the server a request per message and to keep each request under the
server's size limit. What wraps the messages differs from server to server
(a JSON array, or the event collector's Thrift list), so the framing is a
value the batcher is given. This part does no IO and reads no clock, so it is
tested, and can be reused, on its own; :mod:`baseplate.diagnostics.tracing.publisher`
documents it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: The default ``max_batch_size``: the most bytes one POST carries.
DEFAULT_MAX_BATCH_SIZE = 512000

#: How old, in seconds, the first message of a batch may get before the batch is sent.
MAX_BATCH_AGE = 1.0


class MessageTooLargeError(ValueError):
    """A message cannot fit in a batch even alone.

    :param size: The length of the message, in bytes.
    :param max_size: The most bytes a batch may hold.
    """

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(
            f"a {size}-byte message cannot fit a batch of at most {max_size} bytes"
            " (its framing included)"
        )
        self.size = size
        self.max_size = max_size


@dataclass(frozen=True)
class Framing:
    """How a batch wraps its messages: ``opening(count)``, the messages joined
    by ``separator``, then ``closing``.

    The opening may state how many messages follow, so its length can grow
    with the count; the batcher measures it for every message it adds.

    .. versionadded:: 0.31
    """

    opening: Callable[[int], bytes]
    """The bytes before the first message, given how many messages the batch holds."""

    closing: bytes
    """The bytes after the last message."""

    separator: bytes = b","
    """The bytes between two messages."""

    def overhead(self, count: int) -> int:
        """How many bytes the framing adds to ``count`` messages (at least one)."""
        return len(self.opening(count)) + len(self.closing) + (count - 1) * len(self.separator)


#: A JSON array: ``[`` + the messages joined by ``,`` + ``]``.
JSON_ARRAY = Framing(opening=lambda count: b"[", closing=b"]")


@dataclass(frozen=True)
class Batch:
    """A closed batch, ready to post."""

    payload: bytes
    """The framed messages; with the default framing, the JSON array ``[`` +
    the messages joined by ``,`` + ``]``."""

    count: int
    """How many messages it holds."""


class Batcher:
    """Groups raw records into framed batches of bounded size and age.

    A batch is closed when the next message would take it over ``max_size``
    bytes, its framing included (for the default, JSON arrays: two brackets
    and one comma between each pair of messages), so ``len(batch.payload) <=
    max_size`` always holds; or once its first message is ``max_age`` seconds
    old. Messages are joined as they are, without being parsed: with the
    default framing, producers put one JSON object per message.

    The batcher does no IO and reads no clock; callers pass ``now`` in
    whatever monotonic unit of seconds they like. It is not thread-safe.

    >>> batcher = Batcher(max_size=9, max_age=1.0)
    >>> batcher.add(b'"a"', now=0.0), batcher.add(b'"b"', now=0.1)
    (None, None)
    >>> batcher.add(b'"c"', now=0.2)  # 2 + 3 + 1 + 3 = 9 bytes; a third would need 13
    Batch(payload=b'["a","b"]', count=2)
    >>> batcher.take_if_due(now=1.2)
    Batch(payload=b'["c"]', count=1)

    :param framing: How batches wrap their messages.

    .. versionchanged:: 0.31
       ``framing``.
    """

    def __init__(
        self,
        max_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_age: float = MAX_BATCH_AGE,
        framing: Framing = JSON_ARRAY,
    ) -> None:
        if max_size < framing.overhead(1) + 1:
            raise ValueError(f"max_size must leave room for a message, not {max_size!r}")
        if not max_age > 0:
            raise ValueError(f"max_age must be a positive number of seconds, not {max_age!r}")
        self.max_size = max_size
        self.max_age = max_age
        self.framing = framing
        self._messages: list[bytes] = []
        self._content = 0  # the bytes of the messages alone
        self._started = 0.0

    def __len__(self) -> int:
        """How many messages the open batch holds."""
        return len(self._messages)

    @property
    def size(self) -> int:
        """The length the open batch would have if closed now (0 when empty)."""
        if not self._messages:
            return 0
        return self._content + self.framing.overhead(len(self._messages))

    def add(self, message: bytes, now: float) -> Batch | None:
        """Add ``message``, returning the batch it closed because it did not fit.

        :raises MessageTooLargeError: ``message`` cannot fit even a batch of
            its own; it is not added and the open batch is untouched.
        """
        if len(message) + self.framing.overhead(1) > self.max_size:
            raise MessageTooLargeError(len(message), self.max_size)
        closed = None
        count = len(self._messages)
        if count and (
            self._content + len(message) + self.framing.overhead(count + 1) > self.max_size
        ):
            closed = self._close()
        if not self._messages:
            self._started = now
        self._messages.append(message)
        self._content += len(message)
        return closed

    def take_if_due(self, now: float) -> Batch | None:
        """Close and return the open batch if its first message is ``max_age`` old."""
        if self._messages and now - self._started >= self.max_age:
            return self._close()
        return None

    def flush(self) -> Batch | None:
        """Close and return the open batch, whatever its age; None if it is empty."""
        return self._close() if self._messages else None

    def _close(self) -> Batch:
        framing, count = self.framing, len(self._messages)
        payload = framing.opening(count) + framing.separator.join(self._messages) + framing.closing
        batch = Batch(payload, count)
        self._messages = []
        self._content = 0
        return batch
