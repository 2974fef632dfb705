"""Two treatments whose sizes can change with as little rebucketing as possible."""

from __future__ import annotations

from typing import Any

from baseplate.experiments.variant_sets._ranged import (
    ABOVE_ALL,
    BELOW_ALL,
    RangedVariantSet,
    bound,
    sized_variants,
    variant_dicts,
)


class SingleVariantSet(RangedVariantSet):
    """Variant Set designed to handle two total treatments.

    The first variant takes the lowest buckets and the second the highest,
    so the sizes of the variants can be adjusted without changing
    treatments where possible. When not possible (e.g. switching from a
    60/40 distribution to a 40/60 distribution), only the buckets between
    the 40th and 60th percentile see a change in treatment.

    :param variants: Two objects with ``name`` and ``size``, the size being
        the fraction (0 to 1) of buckets given to the variant; the two sizes
        add up to at most 1.
    :param num_buckets: The number of buckets; 1000 gives a granularity of
        0.1%.
    :raises ValueError: if the variants are not two, or their sizes are
        missing or add up to more than 1 or less than 0.
    """

    def __init__(self, variants: Any, num_buckets: int = 1000) -> None:
        self.variants = variants
        self.num_buckets = num_buckets
        first, second = self._validate_variants()
        self.ranges = (
            (BELOW_ALL, bound(first[1], num_buckets), first[0]),
            (num_buckets - bound(second[1], num_buckets), ABOVE_ALL, second[0]),
        )

    def _validate_variants(self) -> tuple[tuple[Any, float], tuple[Any, float]]:
        variants = variant_dicts(self.variants, "SingleVariantSet")
        if len(variants) != 2:
            raise ValueError("Single Variant experiments expect only one variant and one control.")
        first, second = sized_variants(variants)
        if not 0.0 <= first[1] + second[1] <= 1.0:
            raise ValueError("Sum of all variants must be between 0 and 1.")
        return first, second
