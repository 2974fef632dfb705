"""Three or more treatments, laid out one after the other."""

from __future__ import annotations

from typing import Any

from baseplate.experiments.variant_sets._ranged import (
    BELOW_ALL,
    RangedVariantSet,
    bound,
    sized_variants,
    variant_dicts,
)


class MultiVariantSet(RangedVariantSet):
    """Variant Set designed to handle more than two total treatments.

    The variants take consecutive runs of buckets in the order they are
    listed. MultiVariantSets are not designed to support changes in variant
    sizes without rebucketing.

    :param variants: Three or more objects with ``name`` and ``size``, the
        size being the fraction (0 to 1) of buckets given to the variant.
    :param num_buckets: The number of buckets; 1000 gives a granularity of
        0.1%.
    :raises ValueError: if there are fewer than three variants, a size is
        missing, or the sizes cover more buckets than there are.
    """

    def __init__(self, variants: Any, num_buckets: int = 1000) -> None:
        self.num_buckets = num_buckets
        self.variants = variants
        ranges = []
        end = 0
        for name, size in self._validate_variants():
            end += bound(size, num_buckets)
            # A bucket belongs to the first variant whose running total
            # exceeds it.
            ranges.append((BELOW_ALL, end, name))
        self.ranges = tuple(ranges)

    def _validate_variants(self) -> list[tuple[Any, float]]:
        variants = variant_dicts(self.variants, "MultiVariantSet")
        if len(variants) < 3:
            raise ValueError("MultiVariant experiments expect three or more variants.")
        sized = sized_variants(variants)
        if sum(bound(size, self.num_buckets) for _, size in sized) > self.num_buckets:
            raise ValueError("Sum of all variants is greater than 100%")
        return sized
