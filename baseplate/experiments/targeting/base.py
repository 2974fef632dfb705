"""The targeting interface: does a set of inputs fall inside an experiment?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Targeting:
    """Base targeting interface for experiment targeting.

    Implementations answer :meth:`evaluate` from the inputs given to
    ``variant()`` alone: the same inputs always give the same answer, and
    evaluating never raises for inputs that are merely missing or of an
    unexpected type (the answer is then "not targeted").
    """

    def evaluate(self, **kwargs: Any) -> bool:
        """Evaluate whether the provided kwargs match the expected values for targeting."""
        raise NotImplementedError

    def _matches(self, inputs: Mapping[str, Any]) -> bool:
        """:meth:`evaluate` on a mapping of inputs.

        The nodes of a targeting tree override this, so that evaluating a
        tree passes one mapping down instead of repacking keyword arguments
        at every node.
        """
        return self.evaluate(**inputs)
