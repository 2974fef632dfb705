"""One treatment rolled out to a growing (or shrinking) share of buckets."""

from __future__ import annotations

from typing import Any

from baseplate.experiments.variant_sets._ranged import (
    BELOW_ALL,
    RangedVariantSet,
    bound,
    number,
    variant_dicts,
)


class RolloutVariantSet(RangedVariantSet):
    """VariantSet designed for feature rollouts. Takes a single variant.

    Changing the size of the variant changes the treatment of as few
    bucketed users as possible: going from 45% to 55% moves only the new 10%
    of users into the treatment, and going back moves only them out.

    :param variants: One object with ``name`` and ``size``, the size being
        the fraction (0 to 1) of buckets given to the variant.
    :param num_buckets: The number of buckets; 1000 gives a granularity of
        0.1%.
    :raises ValueError: if there is not exactly one variant, or its size is
        missing or outside 0 to 1.
    """

    def __init__(self, variants: Any, num_buckets: int = 1000) -> None:
        # Validate before assigning anything: exactly one variant is expected.
        self._validate_variants(variants)
        self.variant: dict[str, Any] = variants[0]
        self.num_buckets = num_buckets
        limit = bound(self.variant["size"], num_buckets)
        self.ranges = ((BELOW_ALL, limit, self.variant.get("name")),)

    def _validate_variants(self, variants: Any) -> None:
        variants = variant_dicts(variants, "RolloutVariantSet")
        if len(variants) != 1:
            raise ValueError("Rollout variant only supports one variant.")
        size = variants[0].get("size")
        if size is None or not 0.0 <= number(size, "Variant size") <= 1.0:
            raise ValueError("Variant size must be between 0 and 1")
