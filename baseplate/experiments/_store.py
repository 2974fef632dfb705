"""Parsed experiments shared by every request that sees the same version of the file.

The original parsed each experiment again in every request that asked for
it. Here an experiment is parsed once per version of the file (the object
the file watcher returns for it) and the result is shared, so a request only
pays for a dictionary lookup and a clock read the first time it asks for an
experiment, and for nothing after that.

What an experiment config parses to depends on the time as well: before its
start and after its stop it is disabled. A parsed experiment is therefore
kept with the side of its start and stop times it was parsed on, and parsed
again when the clock crosses one of them.

A config that cannot be parsed makes its experiment invalid (``variant()``
returns None) and is logged once per version of the file; the other
experiments are unaffected.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

from baseplate.experiments.providers import _parse, _time_window
from baseplate.experiments.providers.base import Experiment
from bridge.failures import FailureLog

logger = logging.getLogger("baseplate.experiments")


class _Entry(NamedTuple):
    experiment: Experiment | None
    start: float
    stop: float
    side: int


def _side(now: float, start: float, stop: float) -> int:
    """Which side of an experiment's time window ``now`` is on: before, within, after."""
    if now < start:
        return 0
    if now <= stop:
        return 1
    return 2


def _timeless(experiment: Experiment | None) -> _Entry:
    return _Entry(experiment, -math.inf, math.inf, 1)


class ParsedFile:
    """The experiments of one version of the experiments file, each parsed on first use.

    :param data: The decoded file: experiment name to config. Anything but a
        JSON object holds no experiments (and is logged); None means the file
        could not be loaded.
    """

    def __init__(self, data: Any) -> None:
        self.data = data
        self._experiments: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        if data is not None and not isinstance(data, Mapping):
            logger.warning(
                "Could not load experiment config: expected a JSON object, not %s",
                type(data).__name__,
            )
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The names of the experiments in the file, valid or not."""
        return list(self._experiments)

    def get(self, name: str, now: float) -> Experiment | None:
        """The experiment ``name`` as of ``now``, None if it is missing or invalid."""
        entry = self._entries.get(name)
        if entry is None or _side(now, entry.start, entry.stop) != entry.side:
            with self._lock:
                # Another request may have parsed it meanwhile.
                entry = self._entries.get(name)
                if entry is None or _side(now, entry.start, entry.stop) != entry.side:
                    entry = self._parse(name, now)
                    self._entries[name] = entry
        return entry.experiment

    def _parse(self, name: str, now: float) -> _Entry:
        if name not in self._experiments:
            if self.data is not None:
                logger.warning("Experiment <%r> not found in experiment config", name)
            return _timeless(None)
        config = self._experiments[name]
        if not config:
            return _timeless(None)
        start, stop = _time_window(config)
        try:
            experiment: Experiment | None = _parse(config, now)
        except Exception as exc:
            logger.error("Invalid configuration for experiment %s: %r", name, exc)
            experiment = None
        return _Entry(experiment, start, stop, _side(now, start, stop))


class Store:
    """What the requests of one context factory share: the parsed file, and failure logs.

    Made with the factory, when the application starts, so that its locks are
    those of the concurrency model in force (gevent's, once it has patched
    the threading module).
    """

    def __init__(self) -> None:
        self._unavailable = ParsedFile(None)
        self._current = self._unavailable
        self.failures = FailureLog(logger)

    def parsed(self, data: Any) -> ParsedFile:
        """The parsed experiments of this version of the file."""
        current = self._current
        if current.data is not data:
            current = ParsedFile(data)
            self._current = current
        return current

    def unavailable(self, exc: Exception) -> ParsedFile:
        """No experiments, for a request that could not get the file."""
        self.failures.report("unavailable", f"Experiment config unavailable: {exc}")
        return self._unavailable
