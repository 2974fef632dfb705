"""The sidecars' command line: an INI section, a queue, a publisher run until a signal.

Every sidecar is started the same way (``python -m MODULE --queue-name NAME
config.ini``), reads its ``[<section>:NAME]`` section as every Baseplate INI
file is read, creates its queue with the sizes that section gives, and stops
cleanly on SIGTERM or SIGINT; so that all of them behave and fail alike, each
describes itself in a :class:`SidecarCommand`, whose :meth:`~SidecarCommand.main`
is the module's ``main``, as in the trace and event publishers;
:mod:`baseplate.diagnostics.tracing.publisher` documents the options.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from baseplate import config, metrics_client_from_config
from baseplate._ini import ConfigFileError, read_config, section_options
from baseplate._sidecar.loop import Publisher
from baseplate.message_queue import MessageQueue, MessageQueueError
from baseplate.metrics import BaseClient


def positive_seconds(text: str) -> float:
    """A duration a sidecar can wait for: more than zero, and finite."""
    value = config.Seconds(text)
    if value == 0 or math.isinf(value):
        raise ValueError("must be a positive duration")
    return value


@dataclass(frozen=True)
class SidecarCommand:
    """What sets one sidecar apart: its names, its section, its parts.

    .. versionadded:: 0.31
    """

    module: str
    """The module run with ``python -m``."""

    description: str
    """One line for ``--help``."""

    section: str
    """The INI section's prefix: ``[<section>:NAME]``, else ``[<section>]``."""

    queue_prefix: str
    """The queue read for ``--queue-name NAME`` is ``<queue_prefix>NAME``."""

    config_spec: config.ConfigSpec
    """The section's keys besides ``metrics.*``; it must have ``queue.max_messages``
    and ``queue.max_message_size``, the sizes the queue is created with."""

    make_publisher: Callable[[config.ConfigNamespace, BaseClient, MessageQueue], Publisher]
    """Builds the publisher from the parsed section, the metrics client and the open queue."""

    log: logging.Logger
    """Where the command logs."""

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Run the sidecar: read its section, open its queue, publish until a signal.

        ``argv`` is the command line after the program's name (by default
        the process's: ``[--queue-name NAME] [--debug] config.ini``). Returns
        the exit status: 0 after a stop by SIGTERM or SIGINT, 1 when it
        cannot start (bad configuration, a queue it cannot open).

        Each sidecar module offers this, bound to its command, as its
        ``main``, so that every sidecar starts, stops and fails alike.
        """
        return run_sidecar(self, argv)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""How every sidecar's log lines look on standard error."""


def configure_logging(debug: bool) -> None:
    """Log to standard error, at debug level with ``--debug``, else at info level."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format=LOG_FORMAT)


def stop_on_signals(stop: Callable[[], None]) -> list[str]:
    """Call ``stop`` on SIGTERM or SIGINT; the list returned receives the signals' names."""
    received: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # No logging here: writing to stderr from a signal handler can collide
        # with a write the main thread was in the middle of.
        received.append(signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return received


def read_section(path: str, prefix: str, queue_name: str) -> tuple[str, dict[str, str]]:
    """The ``[<prefix>:NAME]`` section of the INI file, or ``[<prefix>]``, and its name.

    :raises ConfigFileError: The file cannot be read or parsed, or has neither section.
    """
    parser = read_config(path)
    for section in (f"{prefix}:{queue_name}", prefix):
        if parser.has_section(section):
            return section, section_options(parser, path, section)
    raise ConfigFileError(
        path, f"no [{prefix}:{queue_name}] section (nor a [{prefix}] section to fall back on)"
    )


def _build_arg_parser(command: SidecarCommand) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {command.module}", description=command.description
    )
    parser.add_argument(
        "config_file",
        help=f"an INI file with a [{command.section}:NAME] (or [{command.section}]) section",
    )
    parser.add_argument(
        "--queue-name",
        default="main",
        metavar="NAME",
        help=f"read {command.queue_prefix}NAME, configured by [{command.section}:NAME]"
        " (default: %(default)s)",
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    return parser


def run_sidecar(command: SidecarCommand, argv: Sequence[str] | None = None) -> int:
    """Run a sidecar's command line.

    Returns the exit status: 0 after a stop by SIGTERM or SIGINT, 1 when it
    cannot start (bad configuration, a queue it cannot open).

    .. versionadded:: 0.31
    """
    args = _build_arg_parser(command).parse_args(argv)
    log = command.log
    configure_logging(args.debug)
    try:
        section, raw_config = read_section(args.config_file, command.section, args.queue_name)
    except ConfigFileError as exc:
        log.error("%s", exc)
        return 1
    try:
        cfg = config.parse_config(raw_config, command.config_spec)
        metrics = metrics_client_from_config(raw_config)
    except config.ConfigurationError as exc:
        log.error("[%s] %s", section, exc)
        return 1

    queue_path = command.queue_prefix + args.queue_name
    try:
        queue = MessageQueue(queue_path, cfg.queue.max_messages, cfg.queue.max_message_size)
    except MessageQueueError as exc:
        log.error(
            "cannot open queue %s: %s. The queue is created with queue.max_messages=%d and"
            " queue.max_message_size=%d unless it already exists: raise the system's limits"
            " (/proc/sys/fs/mqueue/msg_max and msgsize_max, `ulimit -q`), set lower values"
            " for those keys in [%s], or start the application first so that it creates"
            " the queue",
            queue_path,
            exc,
            cfg.queue.max_messages,
            cfg.queue.max_message_size,
            section,
        )
        return 1

    with queue:
        publisher = command.make_publisher(cfg, metrics, queue)
        received = stop_on_signals(publisher.stop)
        log.info(
            "publishing %s from %s to %s", publisher.poster.noun, queue_path, publisher.poster.url
        )
        publisher.run()
    log.info("stopped by %s", received[0] if received else "request")
    return 0
