"""Logging set-up for the commands: a default, or the INI file's own.

Every record gets ``trace_id`` and ``span_id`` (see
:mod:`baseplate.diagnostics.logging`), so formats in the INI file may use
them too.
"""

from __future__ import annotations

import configparser
import logging
import logging.config
import sys
from typing import TextIO

from baseplate.diagnostics.logging import _install_record_factory
from baseplate.server._config import ConfigFileError

DEFAULT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s [trace=%(trace)s] %(message)s"


class TraceFormatter(logging.Formatter):
    """A formatter offering ``%(trace)s``: the trace id, or ``-`` outside a trace."""

    def format(self, record: logging.LogRecord) -> str:
        record.trace = getattr(record, "trace_id", "") or "-"
        return super().format(record)


def configure_logging(
    parser: configparser.ConfigParser, path: str, *, debug: bool, stream: TextIO | None = None
) -> None:
    """Configure the standard logging system for a command.

    If the INI file has a ``[loggers]`` section, it is the configuration
    (:func:`logging.config.fileConfig`, keeping loggers that already exist);
    otherwise the root logger writes to ``stream`` (stdout by default) with
    :data:`DEFAULT_FORMAT`. The level is INFO, or DEBUG with ``debug``, which
    also lowers the root logger of an INI configuration to DEBUG.
    """
    _install_record_factory()
    if parser.has_section("loggers"):
        try:
            logging.config.fileConfig(path, disable_existing_loggers=False)
        except Exception as exc:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise ConfigFileError(
                path, f"bad logging configuration: {type(exc).__name__} {detail}".rstrip()
            ) from None
        if debug:
            logging.getLogger().setLevel(logging.DEBUG)
        return
    configure_default_logging(debug=debug, stream=stream)


def configure_default_logging(*, debug: bool, stream: TextIO | None = None) -> None:
    """The default configuration alone: the root logger to ``stream`` (stdout)."""
    _install_record_factory()
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(TraceFormatter(DEFAULT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
