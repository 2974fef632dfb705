"""Baseplate: a framework for Python services, built on OpenTelemetry.

This module holds the helpers that build Baseplate's clients from an
application's configuration, and exports what the original package root
did: :class:`~baseplate.core.Baseplate`, the :mod:`~baseplate.config`,
:mod:`~baseplate.metrics` and :mod:`~baseplate.diagnostics.tracing` modules,
and the deprecated ``make_*_client`` helpers.

``Baseplate`` and ``tracing`` load on first use: they bring in the
OpenTelemetry SDK, which a script that only parses configuration or sends
metrics never needs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from baseplate import config, metrics
from baseplate._importer import import_object
from baseplate.metrics import Client, make_client

if TYPE_CHECKING:
    from baseplate.core import Baseplate
    from baseplate.diagnostics import tracing
    from baseplate.diagnostics.sentry import SentryClient
    from baseplate.diagnostics.tracing import TracingClient

__all__ = [
    "Baseplate",
    "config",
    "error_reporter_from_config",
    "make_metrics_client",
    "make_tracing_client",
    "metrics",
    "metrics_client_from_config",
    "tracing",
    "tracing_client_from_config",
]

logger = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    """Load ``Baseplate`` and ``tracing`` when they are first asked for."""
    if name == "Baseplate":
        from baseplate.core import Baseplate

        return Baseplate
    if name == "tracing":
        from baseplate.diagnostics import tracing

        return tracing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _warn_deprecated(old: str, new: str) -> None:
    # stacklevel 3: the warning points at the application's call of ``old``.
    warnings.warn(f"{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3)


def metrics_client_from_config(raw_config: Mapping[str, str]) -> Client:
    """Configure and return a metrics client.

    Reads ``metrics.namespace``, the root key of every metric name, and
    ``metrics.endpoint``, a ``host:port`` pair or a Unix socket path. An empty
    or missing endpoint gives a client that discards all metrics.
    """
    spec: config.ConfigSpec = {
        "metrics": {
            "namespace": config.String,
            "endpoint": config.Optional(config.Endpoint),
        }
    }
    config.warn_unknown_keys(raw_config, spec, "metrics.")
    cfg = config.parse_config(raw_config, spec)
    if cfg.metrics.endpoint is None:
        logger.debug("metrics.endpoint is not set: metrics will be discarded")
    return make_client(cfg.metrics.namespace, cfg.metrics.endpoint)


def make_metrics_client(raw_config: Mapping[str, str]) -> Client:
    """The old name of :func:`metrics_client_from_config`.

    .. deprecated:: 0.22
       Emits a :class:`DeprecationWarning`; use :func:`metrics_client_from_config`.
    """
    _warn_deprecated("make_metrics_client", "metrics_client_from_config")
    return metrics_client_from_config(raw_config)


def tracing_client_from_config(
    raw_config: Mapping[str, str], log_if_unconfigured: bool = True
) -> TracingClient:
    """Configure and return a tracing client.

    ``tracing.service_name`` is required. The original's optional keys:
    ``tracing.endpoint`` (deprecated remote recorder, ``host:port``),
    ``tracing.queue_name`` (the sidecar's POSIX queue),
    ``tracing.max_span_queue_size``, ``tracing.num_span_workers``,
    ``tracing.span_batch_interval``, ``tracing.num_conns`` and
    ``tracing.sample_rate`` (``"37%"`` or a fraction; default 10%). New keys:
    ``tracing.exporter`` (``sidecar``, ``remote``, ``zipkin``, ``otlp``,
    ``log``, ``none``, or the name of an installed
    ``opentelemetry_traces_exporter`` entry point such as ``console`` or
    ``baseplate_sidecar``; by default what the keys above imply),
    ``tracing.zipkin.endpoint`` and ``tracing.otlp.endpoint`` (URLs), and
    ``tracing.tail.errors`` / ``tracing.tail.slower_than`` for tail sampling.
    With no destination, spans are logged at debug level, or dropped if
    ``log_if_unconfigured`` is false.
    """
    from baseplate.diagnostics import tracing

    spec: config.ConfigSpec = {
        "tracing": {
            "service_name": config.String,
            "endpoint": config.Optional(config.Endpoint),
            "queue_name": config.Optional(_span_queue_name),
            "max_span_queue_size": config.Optional(
                config.at_least(1), default=tracing.DEFAULT_MAX_SPAN_QUEUE_SIZE
            ),
            "num_span_workers": config.Optional(config.Integer, default=5),
            "span_batch_interval": config.Optional(
                _positive_timespan, default=tracing.DEFAULT_SPAN_BATCH_INTERVAL
            ),
            "num_conns": config.Optional(config.Integer, default=100),
            "sample_rate": config.Optional(
                config.Fallback(config.Percent, config.Float),
                default=tracing.DEFAULT_SAMPLE_RATE,
            ),
            "exporter": config.Optional(config.OneOf(**{name: name for name in tracing.EXPORTERS})),
            "zipkin": {"endpoint": config.Optional(_http_url)},
            "otlp": {"endpoint": config.Optional(_http_url)},
            "tail": {
                "errors": config.Optional(config.Boolean, default=False),
                "slower_than": config.Optional(config.Timespan),
            },
        }
    }
    config.warn_unknown_keys(raw_config, spec, "tracing.")
    cfg = config.parse_config(raw_config, spec)
    tracing_cfg = cfg.tracing
    if not tracing_cfg.service_name:
        raise config.ConfigurationError("tracing.service_name", "required but missing")
    if not 0.0 <= tracing_cfg.sample_rate <= 1.0:
        raise config.ConfigurationError(
            "tracing.sample_rate", f"{tracing_cfg.sample_rate!r} is not between 0 and 1"
        )
    return tracing.make_client(
        tracing_cfg.service_name,
        tracing_endpoint=tracing_cfg.endpoint,
        tracing_queue_name=tracing_cfg.queue_name,
        max_span_queue_size=tracing_cfg.max_span_queue_size,
        num_span_workers=tracing_cfg.num_span_workers,
        span_batch_interval=tracing_cfg.span_batch_interval.total_seconds(),
        num_conns=tracing_cfg.num_conns,
        sample_rate=tracing_cfg.sample_rate,
        log_if_unconfigured=log_if_unconfigured,
        exporter=tracing_cfg.exporter,
        zipkin_endpoint=tracing_cfg.zipkin.endpoint,
        otlp_endpoint=tracing_cfg.otlp.endpoint,
        tail_errors=tracing_cfg.tail.errors,
        tail_slower_than=tracing_cfg.tail.slower_than,
    )


def _span_queue_name(text: str) -> str:
    """A name ``/traces-<name>`` can be made of: checked before anything is created."""
    from bridge.export import span_queue_path

    span_queue_path(text)
    return text


def _http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host: checked now, not at the first export."""
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError("expected an http:// or https:// URL")
    return text


def _positive_timespan(text: str) -> timedelta:
    span = config.Timespan(text)
    if span <= timedelta(0):
        raise ValueError("must be longer than zero")
    return span


def make_tracing_client(
    raw_config: Mapping[str, str], log_if_unconfigured: bool = True
) -> TracingClient:
    """The old name of :func:`tracing_client_from_config`.

    .. deprecated:: 0.22
       Emits a :class:`DeprecationWarning`; use :func:`tracing_client_from_config`.
    """
    _warn_deprecated("make_tracing_client", "tracing_client_from_config")
    return tracing_client_from_config(raw_config, log_if_unconfigured)


def error_reporter_from_config(raw_config: Mapping[str, str], module_name: str) -> SentryClient:
    """Configure and return an error reporter.

    Reads ``sentry.dsn`` (blank or missing: events are discarded) and the
    optional ``sentry.site``, ``sentry.environment``, ``sentry.include_paths``,
    ``sentry.exclude_paths``, ``sentry.ignore_exceptions`` (fully qualified
    class names, ``*`` globs allowed), ``sentry.sample_rate`` (e.g. ``37%``)
    and ``sentry.processors`` (fully qualified names of callables or
    raven-style processor classes). The comma-delimited keys are lists.

    :param raw_config: The application configuration.
    :param module_name: ``__name__`` of the root module of the application;
        the git commit checked out where it lives becomes the release.

    .. versionchanged:: 0.31
       Returns a raven-compatible :class:`~baseplate.diagnostics.sentry.SentryClient`
       built on sentry-sdk instead of a ``raven.Client``.
    """
    from baseplate.diagnostics import sentry

    names = config.Optional(config.TupleOf(config.String), default=list[str]())
    spec: config.ConfigSpec = {
        "sentry": {
            "dsn": config.Optional(_sentry_dsn, default=""),
            "site": config.Optional(config.String),
            "environment": config.Optional(config.String),
            "include_paths": names,
            "exclude_paths": names,
            "ignore_exceptions": names,
            "sample_rate": config.Optional(config.Percent, default=1.0),
            "processors": config.Optional(config.TupleOf(import_object), default=[]),
        }
    }
    config.warn_unknown_keys(raw_config, spec, "sentry.")
    cfg = config.parse_config(raw_config, spec)
    sentry_cfg = cfg.sentry
    if not sentry_cfg.dsn:
        logger.debug("sentry.dsn is not set: error reports will be discarded")
    return sentry.make_client(
        sentry_cfg.dsn,
        site=sentry_cfg.site,
        environment=sentry_cfg.environment,
        module_name=module_name,
        include_paths=sentry_cfg.include_paths,
        exclude_paths=sentry_cfg.exclude_paths,
        ignore_exceptions=sentry_cfg.ignore_exceptions,
        sample_rate=sentry_cfg.sample_rate,
        processors=sentry_cfg.processors,
    )


def _sentry_dsn(text: str) -> str:
    """A DSN sentry-sdk accepts: checked at start-up, as sentry-sdk would reject it there
    with an error that does not name the key."""
    from sentry_sdk.utils import Dsn

    Dsn(text)  # raises BadDsn, a ValueError, saying what is wrong
    return text
