"""Posting for the sidecars: one batch to one URL, with retries, metrics and logs.

A sidecar's server may be slow, away or refusing; :class:`HTTPPoster` makes
the attempts a batch gets, tells a failure worth retrying (a 5xx, an IO
error) from a final one, and counts and logs each, so that every sidecar
reports its deliveries alike. A subclass says where a batch goes, how it is
encoded and how long to keep trying (the trace publisher's Zipkin poster,
the event publisher's collector poster). The pauses between attempts are
:class:`baseplate.retry.RetryPolicy`'s, the one backoff of the library;
:mod:`baseplate.diagnostics.tracing.publisher` documents this part.
"""

from __future__ import annotations

import enum
import http.client
import logging
import math
import threading
import urllib.parse

from baseplate._sidecar.batching import Batch
from baseplate.metrics import BaseClient
from baseplate.retry import RetryPolicy

logger = logging.getLogger(__name__)

#: The shortest timeout, in seconds, an attempt is given, even when the
#: retry policy's budget has less left.
SHORTEST_TIMEOUT = 0.05


def check_backoff(retry_backoff: float) -> float:
    """Check a poster's ``retry_backoff`` (the first pause after a failed attempt), and return it.

    A poster checks it when it is made, so that a sidecar given a bad value
    fails at start-up rather than at its first failed post, when its retry
    policy is built.

    :raises ValueError: It is not positive and finite (NaN included).
    """
    if not retry_backoff > 0 or math.isinf(retry_backoff):  # also rejects NaN
        raise ValueError(f"retry_backoff must be positive and finite, not {retry_backoff!r}")
    return retry_backoff


class Delivery(enum.Enum):
    """What became of a batch handed to :meth:`HTTPPoster.post`."""

    SENT = "sent"
    """The server accepted it (a 2xx response)."""

    REJECTED = "rejected"
    """The server refused it for good (a response that is neither 2xx nor 5xx)."""

    FAILED = "failed"
    """Every attempt the policy allowed met a 5xx or an IO error."""


class HTTPPoster:
    """Posts batches to one ``http`` or ``https`` URL, retrying what may succeed later.

    Each attempt is a POST of :meth:`encode`'s body and headers on a new
    connection, limited to ``post_timeout`` seconds per connect or read.
    Server errors (5xx) and IO errors are retried as long as the policy of
    :meth:`retry_policy` allows; any other non-2xx response is final.

    Metrics, under the client's namespace: a ``post`` timer for every
    attempt, counters ``error.http`` and ``error.io`` for every failed one,
    and ``sent``, increased by the number of messages, for every batch
    accepted. Failed attempts are logged at warning level.

    Subclasses say how a batch is sent by overriding :meth:`encode` and
    :meth:`retry_policy`; both are called from the sending thread only.
    Instances are safe to share between threads.

    :param url: Where every batch is posted.
    :param user_agent: The ``User-Agent`` of every request.
    :param noun: What the messages are, for the logs (``spans``, ``events``).
    :param log: Where the poster, and the loop that uses it, log: each
        sidecar passes its own logger, so that its logs are told apart by
        name; by default ``baseplate._sidecar.posting``.
    :raises ValueError: ``url`` is not an ``http`` or ``https`` URL, or
        ``post_timeout`` is not positive.

    .. versionadded:: 0.31
    """

    def __init__(
        self,
        url: str,
        metrics: BaseClient,
        *,
        user_agent: str,
        post_timeout: float = 3.0,
        noun: str = "messages",
        log: logging.Logger = logger,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, not {url!r}")
        if not post_timeout > 0:
            raise ValueError(f"post_timeout must be positive, not {post_timeout!r}")
        self.url = url
        self._connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._netloc = parts.netloc.rsplit("@", 1)[-1]  # credentials do not go in Host
        self._target = parts.path or "/"
        self.metrics = metrics
        self.user_agent = user_agent
        self.post_timeout = post_timeout
        self.noun = noun
        self.logger = log

    def encode(self, batch: Batch) -> tuple[bytes, dict[str, str]]:
        """The body and headers (besides ``User-Agent``) that carry ``batch``.

        Called once per batch; every attempt sends the same request. By
        default the body is the payload, as ``application/json``.
        """
        return batch.payload, {"Content-Type": "application/json"}

    def retry_policy(self, stop: threading.Event | None = None) -> RetryPolicy:
        """The attempts a batch gets; setting ``stop`` must end them early.

        Setting ``stop`` cuts a pause short and prevents any further attempt,
        so that a publisher asked to stop is not held up by a long backoff.
        By default: a single attempt.
        """
        return RetryPolicy.new(attempts=1)

    def post(self, batch: Batch, policy: RetryPolicy | None = None) -> Delivery:
        """Post ``batch``, attempting as often as ``policy`` allows.

        ``policy`` defaults to :meth:`retry_policy`. When it yields a time
        budget, an attempt's timeout is the smaller of that and
        ``post_timeout``, but at least ``SHORTEST_TIMEOUT`` (0.05 s). Never raises
        for a network or HTTP failure.
        """
        body, headers = self.encode(batch)
        headers = {"User-Agent": self.user_agent, **headers}
        for time_remaining in policy or self.retry_policy():
            timeout = self.post_timeout
            if time_remaining is not None:
                # A budget's last attempt may be left with nothing: zero would
                # make the socket non-blocking, so it gets the shortest wait.
                timeout = max(min(timeout, time_remaining), SHORTEST_TIMEOUT)
            try:
                with self.metrics.timer("post"):
                    status, reason, response_body = self._attempt(body, headers, timeout)
            except (OSError, http.client.HTTPException) as exc:
                self.metrics.counter("error.io").increment()
                self.logger.warning(
                    "posting %d %s to %s failed: %r", batch.count, self.noun, self.url, exc
                )
                continue
            if 200 <= status < 300:
                self.metrics.counter("sent").increment(batch.count)
                return Delivery.SENT
            self.metrics.counter("error.http").increment()
            self.logger.warning(
                "posting %d %s to %s failed: HTTP %d %s: %r",
                batch.count,
                self.noun,
                self.url,
                status,
                reason,
                response_body[:500],
            )
            if status < 500:
                return Delivery.REJECTED
        return Delivery.FAILED

    def _attempt(
        self, body: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, str, bytes]:
        connection = self._connection_class(self._netloc, timeout=timeout)
        try:
            connection.request("POST", self._target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.reason, response.read()
        finally:
            connection.close()
