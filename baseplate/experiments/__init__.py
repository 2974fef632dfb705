"""Experiments: which variant of an experiment a request gets, and bucketing events.

The experiment configs live in a JSON file that a sidecar (the experiment
config fetcher) keeps up to date on disk. Each request gets an
:class:`Experiments` object on its context that reads the file through a
:class:`~baseplate.file_watcher.FileWatcher`, so a new version of the file is
picked up at once, and that logs a bucketing event the first time a request
lands a user in a variant.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from baseplate import config
from baseplate.context import ContextFactory
from baseplate.core import NoAuthenticationError
from baseplate.events import DebugLogger, EventLogger
from baseplate.experiments._store import ParsedFile, Store
from baseplate.experiments.providers.base import Experiment
from baseplate.file_watcher import FileWatcher

if TYPE_CHECKING:
    from baseplate.core import Span, User

__all__ = [
    "EventType",
    "Experiments",
    "ExperimentsContextFactory",
    "experiments_client_from_config",
]

logger = logging.getLogger(__name__)

#: Where the experiment config fetcher writes the file.
DEFAULT_PATH: Final = "/var/local/experiments.json"


class EventType(enum.Enum):
    """The kinds of experiment event: a user was put in a variant, or shown it."""

    EXPOSE = "expose"
    BUCKET = "choose"


# What logs the events of an Experiments made without an event logger.
_DEBUG_LOGGER: Final = DebugLogger()
_MISSING: Final[Any] = object()


def _user_roles(user: User) -> list[str]:
    """The user's roles as an input: a sorted list, empty for a user who is not logged in."""
    try:
        return sorted(user.roles)
    except NoAuthenticationError:
        return []


class ExperimentsContextFactory(ContextFactory):
    """Experiment client context factory.

    This factory will attach a new :class:`Experiments` to an attribute on
    the :term:`context object`. The experiments of each version of the file
    are parsed once and shared by the requests of this factory.

    :param path: Path to the experiment config file.
    :param event_logger: The logger to use to log bucketing and exposure
        events. If not provided, a :class:`baseplate.events.DebugLogger` is
        used.
    :param timeout: How long, in seconds, to block instantiation waiting
        for the watched experiments file to become available (defaults to
        not blocking).
    """

    def __init__(
        self,
        path: str,
        event_logger: EventLogger | None = None,
        timeout: float | None = None,
    ) -> None:
        self._filewatcher: FileWatcher[Any] = FileWatcher(path, json.load, timeout=timeout)
        self._event_logger = event_logger
        self._store = Store()

    def make_object_for_context(self, name: str, span: Span | None) -> Experiments:
        experiments = Experiments(
            config_watcher=self._filewatcher,
            server_span=span,
            context_name=name,
            event_logger=self._event_logger,
        )
        experiments._store = self._store
        return experiments


class Experiments:
    """Access to experiments with automatic refresh when changed.

    This experiments client allows access to the experiments cached on disk
    by the experiment config fetcher daemon. It will automatically reload
    the cache when changed. This client also handles logging bucketing events
    to the event pipeline when it is determined that the request is part of an
    active variant.

    One object serves one request: it looks at the file once, on first use,
    and answers from that version for the rest of the request. Nothing it
    does raises into the request: an unavailable file, a missing or invalid
    experiment, an experiment that fails while choosing, and an event logger
    that fails are logged (once, then counted), and the answer is None.

    :param config_watcher: The watcher of the experiments file (its data is
        the decoded JSON).
    :param server_span: The span of the request, passed to the event logger.
    :param context_name: The name of the context attribute.
    :param event_logger: What logs the events; if not given, a
        :class:`baseplate.events.DebugLogger`.
    """

    def __init__(
        self,
        config_watcher: FileWatcher[Any],
        server_span: Span | None,
        context_name: str,
        event_logger: EventLogger | None = None,
    ) -> None:
        self._config_watcher = config_watcher
        self._span = server_span
        self._context_name = context_name
        self._event_logger: EventLogger = event_logger or _DEBUG_LOGGER
        self._already_bucketed: set[str] = set()
        self._experiment_cache: dict[str, Experiment | None] = {}
        self._parsed: ParsedFile | None = None
        # The store of the context factory; one of its own when made directly.
        self._store: Store | None = None

    def _shared(self) -> Store:
        store = self._store
        if store is None:
            store = self._store = Store()
        return store

    def _file(self) -> ParsedFile:
        """This request's version of the file."""
        parsed = self._parsed
        if parsed is None:
            store = self._shared()
            try:
                parsed = store.parsed(self._config_watcher.get_data())
            except Exception as exc:  # never loaded, or a watcher that fails
                parsed = store.unavailable(exc)
            self._parsed = parsed
        return parsed

    def _get_experiment(self, name: str) -> Experiment | None:
        experiment = self._experiment_cache.get(name, _MISSING)
        if experiment is _MISSING:
            experiment = self._file().get(name, time.time())
            self._experiment_cache[name] = experiment
        return experiment  # type: ignore[no-any-return]

    def get_all_experiment_names(self) -> list[str]:
        """Return a list of all valid experiment names from the configuration file.

        An experiment is listed if and only if :meth:`is_valid_experiment`
        is true for it; an unavailable file lists none.

        :return: List of all valid experiment names.
        """
        return [name for name in self._file().names() if self._get_experiment(name) is not None]

    def is_valid_experiment(self, name: str) -> bool:
        """Return true if the provided experiment name is a valid experiment.

        :param name: Name of the experiment you want to check.
        :return: Whether or not a particular experiment is valid.
        """
        return self._get_experiment(name) is not None

    def variant(
        self,
        name: str,
        user: User | None = None,
        bucketing_event_override: bool | None = None,
        **kwargs: Any,
    ) -> str | None:
        r"""Return which variant, if any, is active.

        If a variant is active, a bucketing event will be logged to the event
        pipeline unless any one of the following conditions are met:

        1. bucketing_event_override is set to False.
        2. The experiment specified by "name" explicitly disables bucketing
           events.
        3. We have already logged a bucketing event for the value specified by
           experiment.get_unique_id(\*\*kwargs) within the current
           request.

        Since checking the status an experiment will fire a bucketing event, it
        is best to only check the variant when you are making the decision that
        will expose the experiment to the user.  If you absolutely must check
        the status of an experiment before you are sure that the experiment
        will be exposed to the user, you can use `bucketing_event_override` to
        disabled bucketing events for that check.

        :param name: Name of the experiment you want to run.
        :param user: (Optional) User object for the user you want to check
            the experiment variant for. If you set user, the experiment
            parameters for that user ("user_id", "logged_in", and
            "user_roles") will be extracted and added to the inputs to the
            call to Experiment.variant. The user's event_fields will also be
            extracted and added to the bucketing event if one is logged. It
            is recommended that you provide a value for user rather than
            setting the user parameters manually in kwargs.
        :param bucketing_event_override: (Optional) Set if you need to
            override the default behavior for sending bucketing events.  This
            parameter should be set sparingly as it breaks the assumption that
            you will fire a bucketing event when you first check the state of
            an experiment.  If set to False, will never send a bucketing event.
            If set to None, no override will be applied.  Set to None by
            default.  Note that setting bucketing_event_override to True has no
            effect, it will behave the same as when it is set to None.
        :param kwargs: Arguments that will be passed to experiment.variant to
            determine bucketing, targeting, and overrides. These values will
            also be passed to the logger.
        :return: Variant name if a variant is active, None otherwise.

        .. versionchanged:: 0.31
           ``user`` adds ``user_roles`` (a sorted list of the user's roles,
           empty when not logged in) to the inputs, as documented; the
           original added only the user's event fields.
        """
        experiment = self._get_experiment(name)
        if experiment is None:
            return None

        inputs = kwargs
        variant_inputs = inputs
        if user is not None:
            inputs.update(user.event_fields())
            variant_inputs = {**inputs, "user_roles": _user_roles(user)}

        try:
            variant = experiment.variant(**variant_inputs)
        except Exception as exc:
            self._shared().failures.report(
                f"variant {name}",
                f"Experiment {name} failed to choose a variant: {exc!r}",
                exc_info=True,
            )
            return None

        if variant is None or bucketing_event_override is False:
            return variant
        if not experiment.should_log_bucketing():
            return variant
        bucketing_id = experiment.get_unique_id(**inputs)
        if not bucketing_id or bucketing_id in self._already_bucketed:
            return variant
        if self._log(EventType.BUCKET, experiment, variant, inputs):
            self._already_bucketed.add(bucketing_id)
        return variant

    def expose(
        self, experiment_name: str, variant_name: str, user: User | None = None, **kwargs: Any
    ) -> None:
        """Log an event to indicate that a user has been exposed to an experimental treatment.

        :param experiment_name: Name of the experiment that was exposed.
        :param variant_name: Name of the variant that was exposed.
        :param user: (Optional) User object for the user you want to check
            the experiment variant for. If unset, it is expected that user_id
            and logged_in values will be set in the kwargs
        :param kwargs: Additional arguments that will be passed to logger.
        """
        experiment = self._get_experiment(experiment_name)
        if experiment is None:
            return
        if user is not None:
            kwargs.update(user.event_fields())
        self._log(EventType.EXPOSE, experiment, variant_name, kwargs)

    def _log(
        self,
        event_type: EventType,
        experiment: Experiment,
        variant: str | None,
        inputs: Mapping[str, Any],
    ) -> bool:
        """Hand an event to the event logger; False (and logged) if it fails."""
        try:
            self._event_logger.log(
                experiment=experiment,
                variant=variant,
                user_id=inputs.get("user_id"),
                logged_in=inputs.get("logged_in"),
                cookie_created_timestamp=inputs.get("cookie_created_timestamp"),
                app_name=inputs.get("app_name"),
                event_type=event_type,
                inputs=inputs,
                span=self._span,
            )
        except Exception as exc:
            self._shared().failures.report(
                "event logger", f"Experiment events could not be logged: {exc!r}"
            )
            return False
        return True


def experiments_client_from_config(
    app_config: Mapping[str, str],
    event_logger: EventLogger | None,
    prefix: str = "experiments.",
) -> ExperimentsContextFactory:
    """Configure and return an :class:`ExperimentsContextFactory` object.

    The keys useful to :func:`experiments_client_from_config` are prefixed
    with ``prefix``, ``experiments.`` unless told otherwise:

    ``path``
        The path to the experiment config file generated by the experiment
        config fetcher daemon; ``/var/local/experiments.json`` if not set.
    ``timeout`` (optional)
        How long to wait, when the factory is made, for the file at ``path``
        to exist (a timespan such as ``30 seconds``); by default it does not
        wait.

    :param app_config: The application configuration which should have
        settings for the experiments client.
    :param event_logger: The EventLogger to be used to log bucketing events.
    :param prefix: The prefix of the keys to read, ending in a dot.
    :raises ValueError: ``prefix`` does not end with a dot.
    """
    if not prefix.endswith("."):
        raise ValueError(f"prefix must end with a dot, not {prefix!r}")
    parser = config.SpecParser(
        {
            "path": config.Optional(config.String, default=DEFAULT_PATH),
            "timeout": config.Optional(config.Timespan),
        }
    )
    options = parser.parse(prefix[:-1], app_config)
    timeout = options.timeout.total_seconds() if options.timeout else None
    return ExperimentsContextFactory(options.path, event_logger, timeout=timeout)
