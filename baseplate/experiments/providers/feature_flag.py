"""Feature flags: r2-style experiments with the single variant "active"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baseplate.experiments.providers.r2 import R2Experiment


class FeatureFlag(R2Experiment):
    """An experiment with a single variant "active".

    .. deprecated:: 0.27
       Use SimpleExperiment with RolloutVariantSet instead.

    Does not log bucketing events to the event pipeline.  Use this type of
    experiment if you just want to control access to a feature but do not want
    to run an actual experiment.  Some examples for when you would want to use
    a FeatureFlag are:

    1. Slowly rolling out a new feature to a % of users
    2. Restricting a new feature to certain subreddits

    The config dict is :class:`~baseplate.experiments.providers.r2.R2Experiment`'s,
    whose docstring says what each key means (``variants``, and optionally
    ``targeting``, ``overrides``, ``bucket_val``, ``seed`` and
    ``newer_than``), except that ``variants`` may name only the variant
    "active": ``{"active": 1.5}`` turns the feature on for 1.5% of the
    targeted users.
    """

    @classmethod
    def from_dict(
        cls,
        id: int,
        name: str,
        owner: str,
        version: Any,
        config: Mapping[str, Any],
    ) -> FeatureFlag:
        """Parse the config dict and return a new FeatureFlag object.

        :raises ValueError: if a variant other than "active" is configured.
        """
        variants = config.get("variants", {})
        if set(variants) - {"active"}:
            raise ValueError(f"A feature flag has only the variant 'active', not {variants!r}")
        return super().from_dict(id=id, name=name, owner=owner, version=version, config=config)

    def should_log_bucketing(self) -> bool:
        return False
