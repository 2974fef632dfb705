"""Extensions to the standard library random module.

Randomness comes from the functions of the standard :mod:`random` module, so
:func:`random.seed` makes results reproducible.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import operator
import random  # the standard library module: imports are absolute
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class WeightedLottery(Generic[T]):
    """A lottery where items can have different chances of selection.

    Items will be picked with chance proportional to their weight relative to
    the sum of all weights, so the higher the weight, the higher the chance of
    being picked. Items of weight zero are never picked.

    :param items: The items to choose from.
    :param weight_key: A function that takes an item in ``items`` and returns
        a non-negative integer weight for that item.
    :raises ValueError: if any weight is negative, there are no items, or the
        weights add up to zero.
    :raises TypeError: if a weight is not an integer.

    An example of usage::

        >>> words = ["apple", "banana", "cantelope"]
        >>> lottery = WeightedLottery(words, weight_key=len)
        >>> lottery.pick()
        'banana'
        >>> lottery.sample(2)
        ['apple', 'cantelope']
    """

    def __init__(self, items: Iterable[T], weight_key: Callable[[T], int]) -> None:
        self._items = tuple(items)
        if not self._items:
            raise ValueError("the lottery has no items")
        self._weights = tuple(operator.index(weight_key(item)) for item in self._items)
        for item, weight in zip(self._items, self._weights, strict=True):
            if weight < 0:
                raise ValueError(f"item {item!r} has a negative weight ({weight})")
        # Item i wins a pick when the ticket drawn is below cumulative[i] and
        # at or above cumulative[i - 1], so each item owns ``weight`` tickets.
        self._cumulative = tuple(itertools.accumulate(self._weights))
        self._total = self._cumulative[-1]
        if self._total == 0:
            raise ValueError("the total weight of the lottery's items is zero")
        # The last item that can win: the bound of every search, so that no
        # ticket, however it rounds, lands past it or on trailing zero weights.
        self._last_winner = max(i for i, weight in enumerate(self._weights) if weight)

    def pick(self) -> T:
        """Pick a random element from the lottery.

        The ticket is drawn with :func:`random.random`, as in the original, so
        tests that patch it steer the lottery the same way: ``0.0`` picks the
        first item of positive weight.
        """
        # A real ticket in [0, total) falls in the span of exactly one item of
        # positive weight; items of weight zero have empty spans.
        ticket = random.random() * self._total
        return self._items[bisect.bisect_right(self._cumulative, ticket, 0, self._last_winner)]

    def sample(self, sample_size: int) -> list[T]:
        """Sample elements from the lottery without replacement.

        The result is distributed as if :meth:`pick` were called repeatedly,
        each time leaving out the items already chosen, and is in that order.
        Once every item of positive weight is chosen, the rest are chosen
        uniformly among the items of weight zero.

        :param sample_size: The number of items to sample from the lottery.
        :raises ValueError: if ``sample_size`` is negative or larger than the
            number of items.
        """
        if not 0 <= sample_size <= len(self._items):
            raise ValueError(
                f"sample size must be between 0 and {len(self._items)}, not {sample_size!r}"
            )
        # Efraimidis and Spirakis: every item draws an exponential arrival time
        # with rate equal to its weight, and the earliest arrivals win. Items of
        # weight zero never arrive, so they rank after all others, at random.
        keys = [
            (0, random.expovariate(weight)) if weight else (1, random.random())
            for weight in self._weights
        ]
        chosen = heapq.nsmallest(sample_size, range(len(keys)), key=keys.__getitem__)
        return [self._items[index] for index in chosen]
