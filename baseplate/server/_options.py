"""Parsers for the ``[server:...]`` options that both servers take."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baseplate import config

COMMON_SPEC: dict[str, Any] = {
    "max_concurrency": config.Optional(config.at_least(1)),
    "stop_timeout": config.Optional(config.Seconds, default=0.0),
}

#: The runtime monitor's options (the original's keys and defaults), which
#: :mod:`baseplate.server.runtime_monitor` reads; every server section may have them.
MONITORING_SPEC: dict[str, Any] = {
    "monitoring": {
        "blocked_hub": config.Optional(config.Timespan, default=None),
        "concurrency": config.Optional(config.Boolean, default=True),
        "request_cost": config.Optional(config.Boolean, default=False),
        "gc": {
            "stats": config.Optional(config.Boolean, default=True),
            "timing": config.Optional(config.Boolean, default=False),
        },
    }
}


def parse_server_config(
    server_config: Mapping[str, str], extra_spec: Mapping[str, Any] | None = None
) -> config.ConfigNamespace:
    """Parse ``max_concurrency``, ``stop_timeout`` and the server's own options.

    Every option of the section is the server's, so each unknown one (a typo
    such as ``stop_timout`` would otherwise keep the default) is logged as a
    warning naming the closest known option. Options a
    :class:`~baseplate.server._config.SectionOptions` marks as inherited from
    ``[DEFAULT]`` are not the server's own and are not checked.
    """
    spec = {**COMMON_SPEC, **(extra_spec or {})}
    inherited: frozenset[str] = getattr(server_config, "inherited", frozenset())
    own_options = {key: value for key, value in server_config.items() if key not in inherited}
    config.warn_unknown_keys(own_options, {**spec, **MONITORING_SPEC}, "")
    return config.parse_config(server_config, spec)
