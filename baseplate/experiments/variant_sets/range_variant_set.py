"""Treatments given fixed bucket ranges."""

from __future__ import annotations

from typing import Any

from baseplate.experiments.variant_sets._ranged import (
    RangedVariantSet,
    bound,
    number,
    variant_dicts,
    variant_name,
)


class RangeVariantSet(RangedVariantSet):
    """Variant Set designed to take fixed bucket ranges.

    Each variant names the range of buckets it takes, which allows
    user-defined bucketing layouts and adjusting range sizes in special
    circumstances. A bucket in no range gets no variant; where ranges
    overlap, the first listed wins.

    :param variants: Objects with ``name``, ``range_start`` (inclusive) and
        ``range_end`` (exclusive), the bounds being fractions (0 to 1) of
        the buckets; each is multiplied by ``num_buckets`` and truncated.
    :param num_buckets: The number of buckets; 1000 gives a granularity of
        0.1%.
    :raises ValueError: if there are no variants, a range is incomplete, or
        the ranges cover more buckets than there are.
    """

    def __init__(self, variants: Any, num_buckets: int = 1000) -> None:
        self.num_buckets = num_buckets
        self.variants = variants
        self.ranges = tuple(
            (bound(start, num_buckets), bound(end, num_buckets), name)
            for name, start, end in self._validate_variants()
        )

    def _validate_variants(self) -> list[tuple[Any, float, float]]:
        if not self.variants:
            raise ValueError("No variants provided")
        variants = variant_dicts(self.variants, "RangeVariantSet")
        ranged = []
        total = 0
        for variant in variants:
            try:
                start = number(variant["range_start"], "range_start")
                end = number(variant["range_end"], "range_end")
            except KeyError:
                raise ValueError(f"Variant range invalid: {variants!r}") from None
            total += bound(end - start, self.num_buckets)
            ranged.append((variant_name(variant), start, end))
        if total > self.num_buckets:
            raise ValueError("Sum of all variants is greater than 100%")
        return ranged
