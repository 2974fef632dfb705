"""The trace publisher's batching: raw span records into JSON arrays of bounded size and age.

This part does no IO and reads no clock, so it is tested, and can be reused,
on its own; :mod:`baseplate.diagnostics.tracing.publisher` documents it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The default ``max_batch_size``: the most bytes one POST carries.
DEFAULT_MAX_BATCH_SIZE = 512000

#: How old, in seconds, the first span of a batch may get before the batch is sent.
MAX_BATCH_AGE = 1.0


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
