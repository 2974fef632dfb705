"""The trace publisher's poster: batches of spans to a Zipkin v1 API.

The attempts, retries, metrics and logs are every sidecar's
(:class:`baseplate._sidecar.posting.HTTPPoster`); what is Zipkin's is here:
where a batch goes, the ``User-Agent``, the check of the API URL and the
retry policy the ``[trace-publisher]`` keys describe.
:mod:`baseplate.diagnostics.tracing.publisher` documents this part.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse

from baseplate._sidecar.posting import HTTPPoster, check_backoff
from baseplate.metrics import BaseClient
from baseplate.retry import RetryPolicy

# The trace publisher, and the shared parts working for it, log through this
# logger, under its public module's name as in the original.
logger = logging.getLogger("baseplate.diagnostics.tracing.publisher")

#: Sent with every POST.
USER_AGENT = "baseplate-trace-publisher/1.0"


def parse_api_url(text: str) -> str:
    """Check that ``text`` is a Zipkin API base URL the poster can post to, and return it.

    :raises ValueError: It is not ``http://`` or ``https://`` with a host, or
        it has a query or a fragment.
    """
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL, such as http://zipkin:9411/api/v1")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return text


class ZipkinPoster(HTTPPoster):
    """Posts batches of spans to a Zipkin v1 API.

    Each batch goes to ``<api_url>/spans`` as the body of a POST with
    ``User-Agent: baseplate-trace-publisher/1.0`` and ``Content-Type:
    application/json``, each attempt on a new connection and limited to
    ``post_timeout`` seconds per connect or read. Server errors (5xx) and IO
    errors are retried, up to ``retry_limit`` attempts in all, sleeping
    ``retry_backoff``, then twice that, and so on, between them; any other
    non-2xx response is final. Metrics and logs are :class:`HTTPPoster`'s.

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
        try:
            parse_api_url(api_url)
        except ValueError as exc:
            raise ValueError(f"{api_url!r}: {exc}") from None
        if retry_limit < 1:
            raise ValueError(f"retry_limit must be at least 1, not {retry_limit!r}")
        check_backoff(retry_backoff)
        super().__init__(
            api_url.rstrip("/") + "/spans",
            metrics,
            user_agent=USER_AGENT,
            post_timeout=post_timeout,
            noun="spans",
            log=logger,
        )
        self.retry_limit = retry_limit
        self.retry_backoff = retry_backoff

    def retry_policy(self, stop: threading.Event | None = None) -> RetryPolicy:
        """The usual policy: ``retry_limit`` attempts with backoff, ending early on ``stop``.

        Setting ``stop`` cuts a pause short and prevents any further attempt,
        so that a publisher asked to stop is not held up by a long backoff.
        """
        return RetryPolicy.new(attempts=self.retry_limit, backoff=self.retry_backoff, stop=stop)
