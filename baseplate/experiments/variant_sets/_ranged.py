"""What the concrete variant sets share: bucket ranges worked out up front."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from baseplate.experiments.variant_sets.base import VariantSet

# The open ends of a bucket range.
BELOW_ALL: Final = -math.inf
ABOVE_ALL: Final = math.inf


class RangedVariantSet(VariantSet):
    """A variant set that resolves each bucket by a list of ranges.

    Subclasses validate their config and set :attr:`ranges`: ``(low, high,
    name)`` triples in priority order; a bucket belongs to the first range
    with ``low <= bucket < high``. Computing the bounds once, when the
    experiment is parsed, leaves a few comparisons per ``variant()`` call.
    """

    ranges: tuple[tuple[float, float, Any], ...] = ()

    def __contains__(self, item: object) -> bool:
        return any(name == item for _, _, name in self.ranges)

    def choose_variant(self, bucket: int) -> str | None:
        """Deterministically choose a variant.

        Every call with the same bucket on one instance gives the same
        answer.

        :param bucket: The bucket of the input, ``0 <= bucket < num_buckets``.
        :return: The variant name, or None if the bucket falls into no variant.
        """
        for low, high, name in self.ranges:
            if low <= bucket < high:
                return name  # type: ignore[no-any-return]
        return None


def variant_dicts(variants: Any, kind: str) -> Sequence[dict[str, Any]]:
    """Check that a set's ``variants`` config is a list of objects."""
    if variants is None:
        raise ValueError("No variants provided")
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ValueError(f"{kind} expects a list of variant objects: {variants!r}")
    return variants


def variant_name(variant: dict[str, Any]) -> Any:
    """The ``name`` of a variant, which every set but the rollout set requires."""
    try:
        return variant["name"]
    except KeyError:
        raise ValueError(f"Variant name not provided: {variant!r}") from None


def sized_variants(variants: Sequence[dict[str, Any]]) -> list[tuple[Any, float]]:
    """The ``(name, size)`` of each variant of a set whose variants all need both.

    Every size is checked before any name, as the original did, so a config
    missing both is told about the sizes first.
    """
    if any(variant.get("size") is None for variant in variants):
        raise ValueError(f"Variant size not provided: {variants!r}")
    return [(variant_name(v), number(v["size"], "Variant size")) for v in variants]


def number(value: Any, what: str) -> float:
    """A size or range bound of the config, which must be a number."""
    if not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, not {value!r}")
    return value


def bound(fraction: float, num_buckets: float) -> int:
    """How many buckets a fraction of ``num_buckets`` covers, truncated as the original does."""
    return int(fraction * num_buckets)
