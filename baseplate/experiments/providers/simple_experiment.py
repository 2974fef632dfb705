"""Simple experiments: a variant set, targeting, overrides and a time window."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from baseplate.experiments.providers._bucketing import BucketingExperiment
from baseplate.experiments.targeting.base import Targeting
from baseplate.experiments.targeting.tree_targeting import OverrideNode, create_targeting_tree
from baseplate.experiments.variant_sets.base import VariantSet
from baseplate.experiments.variant_sets.multi_variant_set import MultiVariantSet
from baseplate.experiments.variant_sets.range_variant_set import RangeVariantSet
from baseplate.experiments.variant_sets.rollout_variant_set import RolloutVariantSet
from baseplate.experiments.variant_sets.single_variant_set import SingleVariantSet

logger = logging.getLogger(__name__)

#: The variant set of each simple experiment type.
variant_type_map: Final[Mapping[str, Callable[..., VariantSet]]] = {
    "single_variant": SingleVariantSet,
    "multi_variant": MultiVariantSet,
    "feature_rollout": RolloutVariantSet,
    "range_variant": RangeVariantSet,
}

_Simple = TypeVar("_Simple", bound="SimpleExperiment")


def _generate_overrides(override_config: Any) -> list[dict[Any, Targeting]] | None:
    """Build the ordered overrides of an experiment.

    The config is a list of objects, each with a single key (the variant to
    assign) whose value is the targeting tree for that variant. A list keeps
    the order, so where trees overlap the first listed wins: each request
    checks the overrides in turn until one matches.

    An entry that is not such an object is skipped (and logged); the others
    stay active. An entry whose tree is invalid stays, but matches nothing.
    Several entries may assign the same variant.

    :return: A list of single-entry ``{variant: tree}`` dicts, or None if
        there are no overrides or the config is not a list.
    """
    if not override_config:
        return None
    if not isinstance(override_config, list):
        logger.error("Invalid override configuration. Skipping overrides.")
        return None
    overrides = []
    for entry in override_config:
        if not isinstance(entry, dict) or len(entry) > 1:
            logger.error(
                "Invalid override configuration. Not applying override. "
                "Expected dictionary with single entry: %s",
                entry,
            )
            continue
        for treatment, tree_config in entry.items():
            overrides.append({treatment: _generate_targeting(tree_config)})
    return overrides


def _generate_targeting(targeting_config: Any) -> Targeting:
    """Build the targeting tree of an experiment.

    No config targets everyone; a config that is not a valid tree targets
    no one (and is logged).
    """
    if targeting_config is None:
        return OverrideNode(True)
    try:
        return create_targeting_tree(targeting_config)
    except Exception as exc:
        logger.error("Unable to create targeting tree (%s). No targeting applied.", exc)
        return OverrideNode(False)


def _lowered_get(inputs: Mapping[str, Any], key: str) -> Any:
    """The input named ``key`` in any case, None if there is none.

    Where names differ only in case, the last given wins: the input a
    mapping with lower-cased names would hold.
    """
    found = None
    for name, value in inputs.items():
        if name == key or name.lower() == key:
            found = value
    return found


class SimpleExperiment(BucketingExperiment):
    """A basic experiment choosing from a set of variants.

    Simple experiments are meant to be used in conjunction with a
    :class:`~baseplate.experiments.variant_sets.base.VariantSet`. This class
    serves as the replacement for the legacy r2 and feature_flag providers.

    A call to ``variant()`` returns None outside the time window or when
    disabled, and when the bucketing input is missing or None; otherwise the
    first override whose tree matches the inputs decides, then the targeting
    tree must match, then the input's bucket picks the variant.

    :param id: The experiment id. This should be unique.
    :param name: The human-readable name of the experiment.
    :param owner: Who is responsible for this experiment.
    :param start_ts: When this experiment is due to start. Variant requests
        prior to this time will return None. Expects timestamp in seconds.
    :param stop_ts: When this experiment is due to end. Variant requests
        after this time will return None. Expects timestamp in seconds.
    :param config: The configuration for this experiment.
    :param experiment_version: Which version of this experiment is being
        used. This value should increment with each successive change to the
        experimental configuration.
    :param shuffle_version: Distinct from the experiment version, this value
        is used in constructing the default bucketing seed value (if not
        provided). When this value changes, rebucketing will occur.
    :param variant_set: The variants and how the buckets are shared among
        them.
    :param bucket_seed: If provided, the seed that decides which bucket a
        variant request lands in (``"{id}.{name}.{shuffle_version}"`` if
        not). Calls with the same seed give the same buckets.
    :param bucket_val: The name of the input to bucket by.
    :param targeting: Who the experiment applies to.
    :param overrides: Ordered single-entry ``{variant: targeting}`` dicts
        that force a variant, or None.
    :param enabled: Whether or not this experiment is enabled. Disabling an
        experiment means all variant calls will return None.
    :param log_bucketing: Whether or not to log bucketing events.
    :param num_buckets: How many available buckets there are for bucketing
        requests. This should match the num_buckets in the provided
        VariantSet. The default value is 1000, which provides a potential
        variant granularity of 0.1%.
    :raises ValueError: if ``experiment_version`` is missing, or
        ``num_buckets`` is not a positive number.
    """

    def __init__(
        self,
        id: int,
        name: str,
        owner: str,
        start_ts: float,
        stop_ts: float,
        config: Mapping[str, Any],
        experiment_version: Any,
        shuffle_version: Any,
        variant_set: VariantSet,
        bucket_seed: Any,
        bucket_val: str,
        targeting: Targeting,
        overrides: list[dict[Any, Targeting]] | None,
        enabled: bool = True,
        log_bucketing: bool = True,
        num_buckets: int = 1000,
    ) -> None:
        if not experiment_version:
            raise ValueError("Experiment version must be provided.")
        if not isinstance(num_buckets, (int, float)) or not num_buckets > 0:
            raise ValueError(f"num_buckets must be a positive number, not {num_buckets!r}")
        self.id = id
        self.name = name
        self.owner = owner
        self.num_buckets = num_buckets

        self.start_ts = start_ts
        self.stop_ts = stop_ts
        self.enabled = enabled

        self.bucket_val = bucket_val
        self.version = experiment_version
        self.shuffle_version = shuffle_version
        self.experiment_version = experiment_version

        self._log_bucketing = log_bucketing
        self._targeting = targeting
        self._overrides = overrides
        # The overrides flattened, in order, for variant().
        self._override_trees = tuple(
            (variant, tree) for entry in overrides or () for variant, tree in entry.items()
        )

        self.variant_set = variant_set

        self._seed = bucket_seed
        if self._seed is None:
            self._seed = f"{id}.{name}.{shuffle_version}"

    @classmethod
    def from_dict(
        cls: type[_Simple],
        id: int,
        name: str,
        owner: str,
        start_ts: float,
        stop_ts: float,
        config: Mapping[str, Any],
        variant_type: str,
        enabled: bool = True,
    ) -> _Simple:
        """Parse the "experiment" config dict of a simple experiment.

        :param variant_type: The experiment type, which names its variant
            set (``single_variant``, ``multi_variant``, ``feature_rollout``
            or ``range_variant``).
        :raises ValueError: if the type is unknown, or the config is invalid.
        """
        num_buckets = config.get("num_buckets", 1000)
        variant_set_type = variant_type_map.get(variant_type)
        if variant_set_type is None:
            raise ValueError(f"Invalid experiment type: {variant_type}")
        variant_set = variant_set_type(config.get("variants", []), num_buckets=num_buckets)

        return cls(
            id=id,
            name=name,
            owner=owner,
            start_ts=start_ts,
            stop_ts=stop_ts,
            enabled=enabled,
            config=config,
            experiment_version=config.get("experiment_version"),
            shuffle_version=config.get("shuffle_version"),
            variant_set=variant_set,
            bucket_seed=config.get("bucket_seed"),
            bucket_val=config.get("bucket_val", "user_id"),
            num_buckets=num_buckets,
            log_bucketing=config.get("log_bucketing", True),
            targeting=_generate_targeting(config.get("targeting")),
            overrides=_generate_overrides(config.get("overrides")),
        )

    @property
    def seed(self) -> Any:
        """The seed mixed into every bucket of this experiment."""
        return self._seed

    def should_log_bucketing(self) -> bool:
        """Whether or not this experiment should log bucketing events."""
        return bool(self._log_bucketing)

    def is_targeted(self, **kwargs: Any) -> bool:
        """Return if kwargs match targeting parameters for this experiment."""
        return self._targeting.evaluate(**kwargs)

    def get_override(self, **kwargs: Any) -> Any:
        """Return the variant the first override matching kwargs forces, or None."""
        return self._override_for(kwargs)

    def _override_for(self, inputs: Mapping[str, Any]) -> Any:
        for variant, tree in self._override_trees:
            if tree._matches(inputs):
                return variant
        return None

    def variant(self, **kwargs: Any) -> str | None:
        if not self._is_enabled():
            return None

        bucket_value = _lowered_get(kwargs, self.bucket_val)
        if bucket_value is None:
            logger.debug(
                "experiment %s: no %s given, no variant chosen", self.name, self.bucket_val
            )
            return None

        if self._override_trees:
            override = self._override_for(kwargs)
            if override:
                return override  # type: ignore[no-any-return]

        if not self._targeting._matches(kwargs):
            return None

        return self._choose_variant(self._calculate_bucket(bucket_value))

    def _is_enabled(self) -> bool:
        return bool(self.enabled) and self.start_ts <= time.time() < self.stop_ts

    def _choose_variant(self, bucket: int) -> str | None:
        return self.variant_set.choose_variant(bucket)
