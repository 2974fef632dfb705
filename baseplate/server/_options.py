"""Parsers for the ``[server:...]`` options that both servers take."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baseplate import config

COMMON_SPEC: dict[str, Any] = {
    "max_concurrency": config.Optional(config.at_least(1)),
    "stop_timeout": config.Optional(config.Seconds, default=0.0),
}


def parse_server_config(
    server_config: Mapping[str, str], extra_spec: Mapping[str, Any] | None = None
) -> config.ConfigNamespace:
    """Parse ``max_concurrency``, ``stop_timeout`` and the server's own options.

    Unknown options are ignored, as :func:`baseplate.config.parse_config` does.
    """
    return config.parse_config(server_config, {**COMMON_SPEC, **(extra_spec or {})})
