"""Baseplate: a framework for Python services, built on OpenTelemetry.

This module holds the helpers that build Baseplate's clients from an
application's configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from baseplate import config
from baseplate.metrics import Client, make_client

logger = logging.getLogger(__name__)


def metrics_client_from_config(raw_config: Mapping[str, str]) -> Client:
    """Configure and return a metrics client.

    Reads ``metrics.namespace``, the root key of every metric name, and
    ``metrics.endpoint``, a ``host:port`` pair or a Unix socket path. An empty
    or missing endpoint gives a client that discards all metrics.
    """
    cfg = config.parse_config(
        raw_config,
        {
            "metrics": {
                "namespace": config.String,
                "endpoint": config.Optional(config.Endpoint),
            }
        },
    )
    if cfg.metrics.endpoint is None:
        logger.debug("metrics.endpoint is not set: metrics will be discarded")
    return make_client(cfg.metrics.namespace, cfg.metrics.endpoint)
