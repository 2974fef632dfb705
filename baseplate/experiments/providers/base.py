"""The experiment interface that every provider implements."""

from __future__ import annotations

from typing import Any


class Experiment:
    """Base interface for experiment objects.

    An experiment is parsed once from its config and then asked for
    variants many times, so implementations do their validation and
    precomputation when they are made, and :meth:`variant` only looks at
    its inputs. :meth:`variant`, :meth:`get_unique_id` and
    :meth:`should_log_bucketing` must not change the experiment: one
    instance is shared by every request that sees the same config.
    """

    def get_unique_id(self, **kwargs: Any) -> str | None:
        """Generate a unique ID for this experiment with the given inputs.

        Used to determine if a bucketing event has already been fired for a
        given experiment and bucketing value pair. Returns None by default.
        If None is returned, we will not mark that a bucketing event has been
        logged even if we do log a bucketing event. The kwargs should be the
        same values passed to the call to :meth:`variant`. If your
        experiment does log bucketing events, you must implement this
        method.
        """
        if self.should_log_bucketing():
            raise NotImplementedError
        return None

    def variant(self, **kwargs: Any) -> str | None:
        """Determine which variant, if any, of this experiment is active.

        All arguments needed for bucketing, targeting, and variant overrides
        should be passed in as kwargs. The parameter names are determined by
        the specific implementation of the Experiment interface.

        :return: The name of the enabled variant as a string if any variant
            is enabled. If no variant is enabled, return None.
        """
        raise NotImplementedError

    def should_log_bucketing(self) -> bool:
        """Return whether this experiment should log bucketing events to the event pipeline."""
        raise NotImplementedError
