"""Parsers for the ``[server:...]`` options that both servers take."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baseplate import config


def seconds(text: str) -> float:
    """A non-negative duration: a number of seconds (``30``) or a timespan (``30 seconds``)."""
    try:
        value = float(text)
    except ValueError:
        try:
            value = config.Timespan(text).total_seconds()
        except ValueError:
            raise ValueError("expected seconds, such as '30' or '30 seconds'") from None
    if not value >= 0:
        raise ValueError("must not be negative")
    return value


def positive_integer(text: str) -> int:
    """A whole number greater than zero."""
    value = config.Integer(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


COMMON_SPEC: dict[str, Any] = {
    "max_concurrency": config.Optional(positive_integer),
    "stop_timeout": config.Optional(seconds, default=0.0),
}


def parse_server_config(
    server_config: Mapping[str, str], extra_spec: Mapping[str, Any] | None = None
) -> config.ConfigNamespace:
    """Parse ``max_concurrency``, ``stop_timeout`` and the server's own options.

    Unknown options are ignored, as :func:`baseplate.config.parse_config` does.
    """
    return config.parse_config(server_config, {**COMMON_SPEC, **(extra_spec or {})})
