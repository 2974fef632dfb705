"""Experiment providers, and the parser that picks one for each experiment config."""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from baseplate.experiments.providers.base import Experiment
from baseplate.experiments.providers.feature_flag import FeatureFlag
from baseplate.experiments.providers.forced_variant import ForcedVariantExperiment
from baseplate.experiments.providers.r2 import R2Experiment
from baseplate.experiments.providers.simple_experiment import SimpleExperiment

__all__ = ["ISO_DATE_FMT", "parse_experiment"]

logger = logging.getLogger(__name__)

#: The format of the deprecated ``expires`` date.
ISO_DATE_FMT: Final = "%Y-%m-%d"

legacy_type_class_map: Final[Mapping[str, type[R2Experiment]]] = {
    "r2": R2Experiment,
    "feature_flag": FeatureFlag,
}

simple_type_class_list: Final = frozenset(
    ["single_variant", "multi_variant", "feature_rollout", "range_variant"]
)

_EPOCH: Final = datetime(1970, 1, 1)


def parse_experiment(config: Mapping[str, Any]) -> Experiment:
    """Parse an experiment config dict and return an appropriate Experiment class.

    The config dict is expected to have the following values:

        * **id**: Integer experiment ID, should be unique for each experiment.
        * **name**: String experiment name, should be unique for each
          experiment.
        * **owner**: The group or individual that owns this experiment.
        * **version**: String to identify the specific version of the
          experiment.
        * **start_ts**: A float of seconds since the epoch of date and time
          when you want the experiment to start.  If an experiment has not been
          started yet, it is considered disabled.
        * **stop_ts**: A float of seconds since the epoch of date and time when
          you want the experiment to stop.  Once an experiment is stopped, it
          is considered disabled.
        * **type**: String specifying the type of experiment to run.  If this
          value is not recognized, the experiment will be considered disabled.
        * **experiment**: The experiment config dict for the specific type of
          experiment.  The format of this is determined by the specific
          experiment type.
        * **enabled**:  (Optional) If set to False, the experiment will be
          disabled and calls to experiment.variant will always return None and
          will not log bucketing events to the event pipeline. Defaults to
          True.
        * **global_override**: (Optional) If this is set, calls to
          experiment.variant will always return the override value and will not
          log bucketing events to the event pipeline.

    The experiment is parsed as it stands now: whether it is enabled depends
    on the current time.

    :param config: Configuration dict for the experiment you wish to run.
    :return: A subclass of :class:`~baseplate.experiments.providers.base.Experiment`
        for the given experiment type.
    :raises Exception: :exc:`TypeError`, :exc:`ValueError` or
        :exc:`KeyError` if the config is invalid.
    """
    return _parse(config, time.time())


def _timestamps(config: Mapping[str, Any], now: float) -> tuple[Any, Any, bool]:
    """The start and stop times of an experiment config, and whether they come from ``expires``."""
    start_ts = config.get("start_ts")
    stop_ts = config.get("stop_ts")
    if start_ts is not None and stop_ts is not None:
        return start_ts, stop_ts, False
    if "expires" not in config:
        raise ValueError(
            f"Invalid config for experiment {config.get('name')}, missing start_ts and/or stop_ts."
        )
    # The deprecated form: on from now until the start of the day it expires.
    expires = datetime.strptime(config["expires"], ISO_DATE_FMT)
    return now, (expires - _EPOCH).total_seconds(), True


def _time_window(config: Any) -> tuple[float, float]:
    """The times between which a config parses to the same experiment.

    A parsed experiment stays right while the current time stays on the same
    side of its start and of its stop (``start <= now <= stop`` being the
    enabled side). A config whose times cannot be read gives the whole
    timeline: it parses (or fails to) the same at any time.
    """
    try:
        start, stop, _ = _timestamps(config, -math.inf)
    except Exception:
        return -math.inf, math.inf
    if not isinstance(start, (int, float)) or not isinstance(stop, (int, float)):
        return -math.inf, math.inf
    return start, stop


def _parse(config: Mapping[str, Any], now: float) -> Experiment:
    """:func:`parse_experiment` as of the time ``now``."""
    experiment_type: Any = config.get("type")
    if experiment_type:
        experiment_type = experiment_type.lower()
    experiment_id = config.get("id")
    if not isinstance(experiment_id, int):
        raise TypeError("Integer id must be provided for experiment.")
    name: Any = config.get("name")
    owner: Any = config.get("owner")
    start_ts, stop_ts, from_expires = _timestamps(config, now)
    if from_expires:
        warnings.warn(
            f"The 'expires' field in experiment {name} is deprecated, you should "
            "use 'start_ts' and 'stop_ts'.",
            DeprecationWarning,
            stacklevel=3,
        )

    if "version" in config:
        version = config["version"]
    else:
        warnings.warn(
            f"The 'version' field is not in experiment {name}.  This field will be "
            "required in the future.",
            DeprecationWarning,
            stacklevel=3,
        )
        version = None

    enabled = config.get("enabled", True)
    if now < start_ts or now > stop_ts:
        enabled = False

    if not enabled and experiment_type in legacy_type_class_map:
        return ForcedVariantExperiment(None)

    experiment_config = config["experiment"]

    # The key's presence counts, not its value: a null override is an
    # override that always answers None.
    if "global_override" in config:
        return ForcedVariantExperiment(config["global_override"])

    if experiment_type in legacy_type_class_map:
        return legacy_type_class_map[experiment_type].from_dict(
            id=experiment_id, name=name, owner=owner, version=version, config=experiment_config
        )

    if experiment_type in simple_type_class_list:
        return SimpleExperiment.from_dict(
            id=experiment_id,
            name=name,
            owner=owner,
            start_ts=start_ts,
            stop_ts=stop_ts,
            enabled=enabled,
            config=experiment_config,
            variant_type=experiment_type,
        )

    logger.warning(
        "Found an experiment <%s:%s> with an unknown experiment type <%s> "
        "that is owned by <%s>. Please clean up.",
        experiment_id,
        name,
        experiment_type,
        owner,
    )
    return ForcedVariantExperiment(None)
