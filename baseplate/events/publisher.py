"""The event publisher sidecar: events from a POSIX queue to the event collector.

Applications put serialized events on the POSIX message queue
``/events-NAME`` with an :class:`~baseplate.events.EventQueue`. This
process, one per host and queue, reads them back, batches them, and posts
each batch, gzipped and signed, to ``https://<collector.hostname>/v<version>``::

    python -m baseplate.events.publisher --queue-name NAME config.ini

It runs the parts every sidecar shares, which the trace publisher
(:mod:`baseplate.diagnostics.tracing.publisher`) documents, with the
collector's batch framing and requests: a reader thread batches, a sender
thread posts with :mod:`baseplate.retry`'s backoff. Unlike the
trace publisher it never drops a batch to make room: while the collector is
away it stops reading, and the events wait on the queue.

.. versionadded:: 0.31
   The original's sidecar on the shared publisher parts; the batches, the
   HTTP requests and the metrics it shares with the original are unchanged.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import hmac
import logging
import sys
import threading
import urllib.parse

from baseplate import config
from baseplate._sidecar.batching import JSON_ARRAY, Batch, Batcher, Framing
from baseplate._sidecar.command import SidecarCommand, positive_seconds
from baseplate._sidecar.loop import Publisher
from baseplate._sidecar.posting import HTTPPoster, check_backoff
from baseplate.events.queue import MAX_EVENT_SIZE, MAX_QUEUE_SIZE
from baseplate.message_queue import MessageQueue
from baseplate.metrics import BaseClient
from baseplate.retry import RetryPolicy

__all__ = [
    "FRAMING_BY_VERSION",
    "MAX_BATCH_AGE",
    "MAX_BATCH_SIZE",
    "MAX_RETRY_TIME",
    "POST_TIMEOUT",
    "RETRY_BACKOFF",
    "USER_AGENT",
    "V2_FRAMING",
    "CollectorPoster",
    "main",
    "sign_payload",
]

# Named after this module even when it runs as __main__.
logger = logging.getLogger("baseplate.events.publisher")

#: Seconds one attempt may wait to connect, and then for each read of the response.
POST_TIMEOUT = 3.0

#: The first pause, in seconds, after a failed attempt; it doubles after each further one.
RETRY_BACKOFF = 2.0

#: Seconds a batch is retried for, in all, before it is dropped.
MAX_RETRY_TIME = 5 * 60.0

#: How old, in seconds, the first event of a batch may get before the batch is sent.
MAX_BATCH_AGE = 1.0

#: The most bytes one batch (before compression) may hold, its framing included.
MAX_BATCH_SIZE = 500 * 1024

#: Sent with every POST.
USER_AGENT = "baseplate-event-publisher/1.0"

#: A v2 batch: the Thrift JSON of a struct whose field 1 is the list of the
#: (already Thrift JSON) events, ``{"1":{"lst":["rec",N,`` … ``]}}``.
V2_FRAMING = Framing(opening=lambda count: b'{"1":{"lst":["rec",%d,' % count, closing=b"]}}")

#: The batch framing for each ``collector.version``: v1 batches are JSON arrays.
FRAMING_BY_VERSION = {1: JSON_ARRAY, 2: V2_FRAMING}


def sign_payload(key_name: str, secret: bytes, payload: bytes) -> str:
    """The ``X-Signature`` header of a batch: ``key=<name>, mac=<hex HMAC-SHA256>``.

    The MAC is over the uncompressed batch, with the key's secret.

    >>> sign_payload("TestKey", b"hunter2", b'[{"a": 1},{"b": 2}]')
    'key=TestKey, mac=e033b65afe0db882b2fa87fb753b798b1d8efddc07e45d602b0ee1d9865c9e13'
    """
    mac = hmac.new(secret, payload, hashlib.sha256).hexdigest()
    return f"key={key_name}, mac={mac}"


class CollectorPoster(HTTPPoster):
    """Posts batches of events to the event collector.

    Each batch goes to ``https://<hostname>/v<version>`` as a gzip body
    (level 9) with the headers ``Date``, ``User-Agent:
    baseplate-event-publisher/1.0``, ``Content-Type: application/json``,
    ``Content-Encoding: gzip`` and ``X-Signature`` (:func:`sign_payload`).
    Server errors and IO errors are retried with exponential backoff (``2``
    s, then 4, 8…) for up to ``retry_budget`` seconds in all; any other
    non-2xx response is final. Metrics and logs are
    :class:`~baseplate.diagnostics.tracing.publisher.HTTPPoster`'s.

    :param hostname: The collector's host, with a port if not 443.
    :param version: The collector protocol, 1 (JSON events) or 2 (Thrift).
    :param key_name: The name of the signing key, which the collector knows.
    :param key_secret: The signing key's secret.
    :raises ValueError: ``hostname`` is not a host name, or a limit is not
        positive.
    """

    def __init__(
        self,
        hostname: str,
        version: int,
        key_name: str,
        key_secret: bytes,
        metrics: BaseClient,
        *,
        post_timeout: float = POST_TIMEOUT,
        retry_backoff: float = RETRY_BACKOFF,
        retry_budget: float = MAX_RETRY_TIME,
    ) -> None:
        _check_hostname(hostname)
        check_backoff(retry_backoff)
        if not retry_budget > 0:
            raise ValueError(f"retry_budget must be positive, not {retry_budget!r}")
        super().__init__(
            f"https://{hostname}/v{version}",
            metrics,
            user_agent=USER_AGENT,
            post_timeout=post_timeout,
            noun="events",
            log=logger,
        )
        self.key_name = key_name
        self.key_secret = key_secret
        self.retry_backoff = retry_backoff
        self.retry_budget = retry_budget

    def encode(self, batch: Batch) -> tuple[bytes, dict[str, str]]:
        """The gzipped batch and its headers, signed over the uncompressed batch."""
        headers = {
            "Date": email.utils.formatdate(usegmt=True),
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "X-Signature": sign_payload(self.key_name, self.key_secret, batch.payload),
        }
        return gzip.compress(batch.payload, compresslevel=9), headers

    def retry_policy(self, stop: threading.Event | None = None) -> RetryPolicy:
        """Backoff from ``retry_backoff`` within ``retry_budget``, ending early on ``stop``."""
        return RetryPolicy.new(budget=self.retry_budget, backoff=self.retry_backoff, stop=stop)


def _check_hostname(text: str) -> str:
    """A ``host`` or ``host:port`` the collector can be reached at."""
    parts = urllib.parse.urlsplit(f"https://{text}")
    try:
        parts.port  # noqa: B018  (parsing the port is the check)
    except ValueError:
        raise ValueError(f"not a host name, nor host:port: {text!r}") from None
    if not parts.hostname or parts.netloc != text:
        raise ValueError(f"not a host name, nor host:port: {text!r}")
    return text


def _version(text: str) -> int:
    version = config.Integer(text)
    if version not in FRAMING_BY_VERSION:
        raise ValueError(f"must be one of {sorted(FRAMING_BY_VERSION)}")
    return version


_CONFIG_SPEC: config.ConfigSpec = {
    "collector": {
        "hostname": _check_hostname,
        "version": config.Optional(_version, 1),
    },
    "key": {
        "name": config.String,
        "secret": config.Base64,
    },
    "post_timeout": config.Optional(positive_seconds, POST_TIMEOUT),
    "retry_backoff": config.Optional(positive_seconds, RETRY_BACKOFF),
    "retry_budget": config.Optional(positive_seconds, MAX_RETRY_TIME),
    "max_pending_batches": config.Optional(config.at_least(1), 20),
    "shutdown_timeout": config.Optional(positive_seconds, 5.0),
    "queue": {
        "max_messages": config.Optional(config.at_least(1), MAX_QUEUE_SIZE),
        "max_message_size": config.Optional(config.at_least(1), MAX_EVENT_SIZE),
    },
}
"""The keys of an ``[event-publisher:NAME]`` section (besides ``metrics.*``)."""


def _make_publisher(
    cfg: config.ConfigNamespace, metrics: BaseClient, queue: MessageQueue
) -> Publisher:
    poster = CollectorPoster(
        cfg.collector.hostname,
        cfg.collector.version,
        cfg.key.name,
        cfg.key.secret,
        metrics,
        post_timeout=cfg.post_timeout,
        retry_backoff=cfg.retry_backoff,
        retry_budget=cfg.retry_budget,
    )
    batcher = Batcher(MAX_BATCH_SIZE, MAX_BATCH_AGE, FRAMING_BY_VERSION[cfg.collector.version])
    return Publisher(
        queue,
        batcher,
        poster,
        metrics,
        max_pending_batches=cfg.max_pending_batches,
        wait_for_room=True,
        shutdown_timeout=cfg.shutdown_timeout,
    )


_COMMAND = SidecarCommand(
    module="baseplate.events.publisher",
    description="Read events from the POSIX queue /events-NAME and post them to the collector.",
    section="event-publisher",
    queue_prefix="/events-",
    config_spec=_CONFIG_SPEC,
    make_publisher=_make_publisher,
    log=logger,
)


#: Run the sidecar (``python -m baseplate.events.publisher``); returns the exit status.
main = _COMMAND.main


if __name__ == "__main__":
    sys.exit(main())
