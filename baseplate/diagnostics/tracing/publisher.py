"""The trace publisher sidecar: spans from a POSIX queue to a Zipkin v1 API.

Applications configured with ``tracing.queue_name = NAME`` put each finished
span, a Zipkin v1 JSON record, on the POSIX message queue ``/traces-NAME``.
This process reads them back, batches them into JSON arrays and posts the
batches to ``<zipkin_api_url>/spans``::

    python -m baseplate.diagnostics.tracing.publisher --queue-name NAME config.ini

Three parts, each usable and testable alone, which every sidecar shares (the
event publisher runs them too); the trace publisher adds its Zipkin poster,
its configuration and its command line. This module is their public face and
the ``python -m`` entry point:

* :class:`Batcher` groups raw messages into batches by size and age; it does
  no IO and reads no clock.
* :class:`HTTPPoster` posts one batch, retrying server errors and IO errors
  with :mod:`baseplate.retry`'s exponential backoff; :class:`ZipkinPoster`
  is the trace publisher's.
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

import sys

from baseplate._sidecar.batching import (
    DEFAULT_MAX_BATCH_SIZE,
    JSON_ARRAY,
    MAX_BATCH_AGE,
    Batch,
    Batcher,
    Framing,
    MessageTooLargeError,
)
from baseplate._sidecar.loop import POLL_INTERVAL, Publisher
from baseplate._sidecar.posting import Delivery, HTTPPoster
from baseplate.diagnostics.tracing._publisher_cli import MAX_MESSAGE_SIZE, MAX_QUEUE_SIZE, main
from baseplate.diagnostics.tracing._publisher_http import USER_AGENT, ZipkinPoster

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "JSON_ARRAY",
    "MAX_BATCH_AGE",
    "MAX_MESSAGE_SIZE",
    "MAX_QUEUE_SIZE",
    "POLL_INTERVAL",
    "USER_AGENT",
    "Batch",
    "Batcher",
    "Delivery",
    "Framing",
    "HTTPPoster",
    "MessageTooLargeError",
    "Publisher",
    "SpanBatch",
    "ZipkinPoster",
    "main",
]

#: The trace publisher's name for :class:`Batch`: its batches hold spans.
SpanBatch = Batch

if __name__ == "__main__":
    sys.exit(main())
