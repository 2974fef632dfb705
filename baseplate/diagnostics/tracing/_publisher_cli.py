"""The trace publisher's configuration (its INI section) and command line.

Every sidecar starts, reads its section and stops alike
(:func:`baseplate._sidecar.command.run_sidecar`); what is the trace
publisher's is here: the keys of ``[trace-publisher:NAME]``, the queue
``/traces-NAME`` and how they build the publisher.
:mod:`baseplate.diagnostics.tracing.publisher` documents the options, and
runs :func:`main` when run with ``python -m``.
"""

from __future__ import annotations

from baseplate import config
from baseplate._sidecar.batching import DEFAULT_MAX_BATCH_SIZE, Batcher
from baseplate._sidecar.command import SidecarCommand, positive_seconds, read_section
from baseplate._sidecar.loop import Publisher
from baseplate.diagnostics.tracing._publisher_http import ZipkinPoster, logger, parse_api_url
from baseplate.message_queue import MessageQueue
from baseplate.metrics import BaseClient

#: The largest message, in bytes, the publisher asks for when it creates the queue.
MAX_MESSAGE_SIZE = 102400

#: How many messages the publisher asks room for when it creates the queue.
MAX_QUEUE_SIZE = 10000


_CONFIG_SPEC: config.ConfigSpec = {
    "zipkin_api_url": parse_api_url,
    "post_timeout": config.Optional(positive_seconds, 3.0),
    "max_batch_size": config.Optional(config.at_least(3), DEFAULT_MAX_BATCH_SIZE),
    "retry_limit": config.Optional(config.at_least(1), 10),
    "retry_backoff": config.Optional(positive_seconds, 0.1),
    "max_pending_batches": config.Optional(config.at_least(1), 20),
    "shutdown_timeout": config.Optional(positive_seconds, 5.0),
    "queue": {
        "max_messages": config.Optional(config.at_least(1), MAX_QUEUE_SIZE),
        "max_message_size": config.Optional(config.at_least(1), MAX_MESSAGE_SIZE),
    },
}
"""The keys of a ``[trace-publisher:NAME]`` section (besides ``metrics.*``)."""


def _read_section(path: str, queue_name: str) -> tuple[str, dict[str, str]]:
    """The ``[trace-publisher:NAME]`` section of the INI file, or ``[trace-publisher]``."""
    return read_section(path, "trace-publisher", queue_name)


def _make_trace_publisher(
    cfg: config.ConfigNamespace, metrics: BaseClient, queue: MessageQueue
) -> Publisher:
    poster = ZipkinPoster(
        cfg.zipkin_api_url,
        metrics,
        post_timeout=cfg.post_timeout,
        retry_limit=cfg.retry_limit,
        retry_backoff=cfg.retry_backoff,
    )
    return Publisher(
        queue,
        Batcher(cfg.max_batch_size),
        poster,
        metrics,
        max_pending_batches=cfg.max_pending_batches,
        shutdown_timeout=cfg.shutdown_timeout,
    )


_COMMAND = SidecarCommand(
    module="baseplate.diagnostics.tracing.publisher",
    description="Read spans from the POSIX queue /traces-NAME and post them to Zipkin.",
    section="trace-publisher",
    queue_prefix="/traces-",
    config_spec=_CONFIG_SPEC,
    make_publisher=_make_trace_publisher,
    log=logger,
)


#: Run the sidecar (``python -m baseplate.diagnostics.tracing.publisher``); returns the exit status.
main = _COMMAND.main
