"""Legacy, r2-style experiments."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from baseplate.experiments._membership import Values
from baseplate.experiments.providers._bucketing import BucketingExperiment

logger = logging.getLogger(__name__)

_CASE_SENSITIVE = "__case_sensitive__"

_R2 = TypeVar("_R2", bound="R2Experiment")


def _fold(value: Any, case_sensitive: bool) -> Any:
    """A targeting or override value as it is compared: strings lower-cased unless told not to."""
    if case_sensitive or not isinstance(value, str):
        return value
    return value.lower()


def _as_list(value: Any) -> list[Any] | tuple[Any, ...]:
    return value if isinstance(value, (list, tuple)) else [value]


class R2Experiment(BucketingExperiment):
    """A "legacy", r2-style experiment.

    .. deprecated:: 0.27
       Use SimpleExperiment with SingleVariantSet or MultiVariantSet instead.

    Should log bucketing events to the event pipeline.

    Note that this style of experiment caps the size of your variants such
    that:

    .. code-block:: python

        def max_variant_size(variant_size, num_variants):
            return max(variant_size, (1/num_variants) * 100)

    The config dict is expected to have the following values:

        * **variants**: dict mapping variant names to their sizes. Variant
          sizes are expressed as numeric percentages rather than a fraction of
          1 (that is, 1.5 means 1.5%, not 150%).
        * **targeting**: (Optional) dict that maps the names of targeting
          parameters to lists of valid values.  When determining the variant
          of an experiment, the targeting parameters you want to use are passed
          in as keyword arguments to the call to experiment.variant.
        * **overrides**: (Optional) dict that maps override parameters to
          dictionaries mapping values to the variant name you want to override
          the variant to. When determining the variant of an experiment, the
          override parameters you want to use are passed in as keyword
          arguments to the call to experiment.variant.
        * **bucket_val**: (Optional) Name of the parameter you want to use for
          bucketing.  This value must be passed to the call to
          experiment.variant as a keyword argument.  Defaults to "user_id".
        * **seed**: (Optional) Overrides the seed for this experiment.  If this
          is not set, `name` is used as the seed.
        * **newer_than**: (Optional) The earliest time that a bucketing
          resource can have been created by in UTC epoch seconds.  If set, you
          must pass the time, in UTC epoch seconds, when the resource that you
          are bucketing was created to the call to experiment.variant as the
          "user_created" parameter. For example, if you are bucketing based on
          user_id, user_created would be set to the time when a User account
          was created or when an LoID cookie was generated.

    An experiment without targeting never gives a variant (but overrides
    still apply). Targeting and override parameter names, and their string
    values, are compared case-insensitively unless the parameter is listed in
    the ``__case_sensitive__`` list of ``targeting`` or ``overrides``.

    :raises TypeError: if ``targeting`` or ``overrides`` is not shaped as
        above, or a variant size is not a number.
    """

    def __init__(
        self,
        id: int,
        name: str,
        owner: str,
        variants: Mapping[str, float],
        seed: Any = None,
        bucket_val: str = "user_id",
        targeting: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        newer_than: Any = None,
        version: Any = None,
    ) -> None:
        targeting = dict(targeting or {})
        overrides = dict(overrides or {})
        self._case_sensitive_overrides = frozenset(
            param.lower() for param in overrides.pop(_CASE_SENSITIVE, [])
        )
        self._case_sensitive_targeting = frozenset(
            param.lower() for param in targeting.pop(_CASE_SENSITIVE, [])
        )
        self.targeting: dict[str, list[Any]] = {}
        for param, allowed in targeting.items():
            if not isinstance(param, str) or not isinstance(allowed, list):
                raise TypeError(f"targeting {param!r} must map to a list, not {allowed!r}")
            # Even when the values are case sensitive, the parameter name is not.
            key = param.lower()
            sensitive = key in self._case_sensitive_targeting
            self.targeting[key] = [_fold(value, sensitive) for value in allowed]
        self.overrides: dict[str, dict[Any, Any]] = {}
        for param, mapping in overrides.items():
            if not isinstance(param, str) or not isinstance(mapping, dict):
                raise TypeError(f"override {param!r} must map to an object, not {mapping!r}")
            key = param.lower()
            sensitive = key in self._case_sensitive_overrides
            self.overrides[key] = {_fold(value, sensitive): v for value, v in mapping.items()}
        self.id = id
        self.name = name
        self.owner = owner
        self.seed = seed if seed else name
        self.num_buckets = 1000
        self.variants = variants
        self.bucket_val = bucket_val
        self.newer_than = newer_than
        self.version = version

        # What variant() consults, worked out once.
        self._targeting_checks = tuple(
            (key, Values(allowed), key in self._case_sensitive_targeting)
            for key, allowed in self.targeting.items()
        )
        self._variant_names = sorted(variants)
        self._bucket_limits = self._limits()

    def _limits(self) -> dict[str, int]:
        """Each variant's bucket limit; logs, once, the variants above their cap.

        Variant percentages are numeric percentages (1.5 means 1.5%), so at
        100 buckets buckets and percents map one to one; with more buckets
        each percent covers more of them.
        """
        count = len(self.variants)
        bucket_multiplier = self.num_buckets / 100
        limits = {}
        for name, percent in self.variants.items():
            if not isinstance(percent, (int, float)):
                raise TypeError(f"variant {name!r} size must be a number, not {percent!r}")
            if percent / 100.0 > 1.0 / count:
                logger.warning(
                    "Variant %s exceeds allowable percentage (%.2f > %.2f)",
                    name,
                    percent / 100.0,
                    1.0 / count,
                )
            limits[name] = int(percent * count * bucket_multiplier)
        return limits

    @classmethod
    def from_dict(
        cls: type[_R2],
        id: int,
        name: str,
        owner: str,
        version: Any,
        config: Mapping[str, Any],
    ) -> _R2:
        """Parse the config dict and return a new R2Experiment object.

        :param id: The id of the experiment from the base config.
        :param name: The name of the experiment from the base config.
        :param owner: The owner of the experiment from the base config.
        :param version: The version of the experiment from the base config.
        :param config: The "experiment" config dict from the base config.
        """
        return cls(
            id=id,
            name=name,
            owner=owner,
            version=version,
            variants=config["variants"],
            targeting=config.get("targeting"),
            overrides=config.get("overrides"),
            seed=config.get("seed"),
            bucket_val=config.get("bucket_val", "user_id"),
            newer_than=config.get("newer_than"),
        )

    def should_log_bucketing(self) -> bool:
        return True

    def variant(self, **kwargs: Any) -> str | None:
        lower_kwargs = {key.lower(): value for key, value in kwargs.items()}

        override = self._check_overrides(lower_kwargs)
        if override is not None and self._is_variant(override):
            return override  # type: ignore[no-any-return]

        bucket_value = lower_kwargs.get(self.bucket_val)
        if bucket_value is None:
            logger.debug(
                "experiment %s: no %s given, no variant chosen", self.name, self.bucket_val
            )
            return None

        if not self._is_enabled(lower_kwargs):
            return None

        return self._choose_variant(self._calculate_bucket(bucket_value))

    def _is_variant(self, name: Any) -> bool:
        try:
            return name in self.variants
        except TypeError:  # an unhashable override value names no variant
            return False

    def _check_overrides(self, inputs: Mapping[str, Any]) -> Any:
        """The variant the first matching override names, or None."""
        for param, mapping in self.overrides.items():
            if param not in inputs:
                continue
            sensitive = param in self._case_sensitive_overrides
            for value in _as_list(inputs[param]):
                override = mapping.get(_fold(value, sensitive))
                if override is not None:
                    return override
        return None

    def _is_enabled(self, inputs: Mapping[str, Any]) -> bool:
        """Whether the targeting parameters in the inputs let this experiment apply."""
        for param, allowed, sensitive in self._targeting_checks:
            if param not in inputs:
                continue
            for value in _as_list(inputs[param]):
                if _fold(value, sensitive) not in allowed:
                    continue
                if param != "logged_in" or not self.newer_than:
                    return True
                user_created = inputs.get("user_created")
                if user_created and user_created > self.newer_than:
                    return True
        return False

    def _choose_variant(self, bucket: int) -> str | None:
        """Deterministically choose a percentage-based variant.

        The algorithm satisfies two conditions:

        1. It's deterministic (every call with the same bucket and variants
           gives the same answer).
        2. Increasing any variant's percentage keeps the buckets that were in
           each variant in it; the increase is made of buckets that were in
           no variant.

        Say we have two new things we're trying out for 2% of users (A and
        B), a control group with 5% (C), and a pool of excluded users (x).
        The buckets are assigned like so::

            A B C A B C x x C x x C x x C x x x x x x x x x...

        which lets A and B later grow to 7% while every user outside the
        excluded pool keeps their group::

            A B C A B C A B C A B C A B C A B x A B x x x x...

        Rather than building this entire structure out in memory, the
        bucket's place in it is worked out: the variant the bucket would
        have if the variants took every bucket, kept if the bucket is below
        that variant's limit.
        """
        if not self._variant_names:
            return None
        candidate = self._variant_names[bucket % len(self._variant_names)]
        if bucket < self._bucket_limits[candidate]:
            return candidate
        return None
