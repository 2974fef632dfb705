"""The variant set interface."""

from __future__ import annotations


class VariantSet:
    """Base interface for variant sets.

    A VariantSet contains a set of experimental variants, as well as their
    distributions. It is used by experiments to track which bucket a variant
    is assigned to. A set validates its variants when it is made (raising
    :exc:`ValueError` for a set that cannot be used), so that choosing a
    variant on a request never fails.
    """

    def __contains__(self, item: object) -> bool:
        """Return true if the variant name provided exists in this variant set."""
        raise NotImplementedError

    def choose_variant(self, bucket: int) -> str | None:
        """Return the variant that ``bucket`` belongs to, or None if it belongs to none."""
        raise NotImplementedError
