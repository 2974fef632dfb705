"""Tests for baseplate.random."""

from __future__ import annotations

import collections
import random

import pytest

from baseplate.random import WeightedLottery

DRAWS = 20_000


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(20240611)


def test_module_uses_the_standard_random_module() -> None:
    random.seed(7)
    first = WeightedLottery(range(10), weight_key=lambda i: i + 1)
    picks = [first.pick() for _ in range(50)]
    samples = [first.sample(5) for _ in range(10)]
    random.seed(7)
    assert [first.pick() for _ in range(50)] == picks
    assert [first.sample(5) for _ in range(10)] == samples


def test_pick_is_proportional_to_weight() -> None:
    weights = {"a": 1, "b": 2, "c": 3, "d": 4}
    lottery = WeightedLottery(weights, weight_key=weights.__getitem__)
    counts = collections.Counter(lottery.pick() for _ in range(DRAWS))
    for item, weight in weights.items():
        assert counts[item] / DRAWS == pytest.approx(weight / 10, abs=0.015)


def test_zero_weight_items_are_never_picked() -> None:
    weights = {"first": 0, "a": 1, "middle": 0, "b": 1, "last": 0}
    lottery = WeightedLottery(weights, weight_key=weights.__getitem__)
    assert {lottery.pick() for _ in range(2000)} == {"a", "b"}


def test_pick_follows_random_random(monkeypatch: pytest.MonkeyPatch) -> None:
    # As in the original: the ticket is random.random() times the total
    # weight, and the item whose span of tickets holds it wins.
    lottery = WeightedLottery((n for n in range(10)), weight_key=lambda n: n)  # one-shot
    for ticket, expected in [
        (0.0, 1),  # item 0 has weight zero
        (1 / 45 - 1e-12, 1),
        (1 / 45, 2),
        (0.5, 7),  # ticket 22.5: item 7 owns the tickets from 21 up to 28
        (1 - 2**-53, 9),
    ]:
        monkeypatch.setattr(random, "random", lambda t=ticket: t)
        assert lottery.pick() == expected, ticket


def test_pick_never_lands_on_trailing_zero_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    weights = {"a": 1, "b": 3, "z1": 0, "z2": 0}
    lottery = WeightedLottery(weights, weight_key=weights.__getitem__)
    monkeypatch.setattr(random, "random", lambda: 1.0)  # outside random()'s range
    assert lottery.pick() == "b"


def test_single_item() -> None:
    lottery = WeightedLottery(["only"], weight_key=lambda _: 1)
    assert lottery.pick() == "only"
    assert lottery.sample(1) == ["only"]


def test_items_may_be_any_iterable() -> None:
    lottery = WeightedLottery((word for word in ["x", "yy"]), weight_key=len)
    assert sorted(lottery.sample(2)) == ["x", "yy"]


def test_reference_example() -> None:
    words = ["apple", "banana", "cantelope"]
    lottery = WeightedLottery(words, weight_key=len)
    counts = collections.Counter(lottery.pick() for _ in range(DRAWS))
    assert counts["apple"] / DRAWS == pytest.approx(5 / 20, abs=0.015)
    assert counts["banana"] / DRAWS == pytest.approx(6 / 20, abs=0.015)
    assert counts["cantelope"] / DRAWS == pytest.approx(9 / 20, abs=0.015)
    sample = lottery.sample(2)
    assert len(sample) == 2
    assert len(set(sample)) == 2
    assert set(sample) <= set(words)


def test_sample_is_without_replacement() -> None:
    lottery = WeightedLottery(range(20), weight_key=lambda i: i + 1)
    for _ in range(200):
        sample = lottery.sample(10)
        assert len(sample) == 10
        assert len(set(sample)) == 10


def test_sample_of_zero_items() -> None:
    lottery = WeightedLottery(["a", "b"], weight_key=lambda _: 1)
    assert lottery.sample(0) == []


def test_sample_of_every_item() -> None:
    weights = {"a": 5, "b": 0, "c": 1, "d": 0}
    lottery = WeightedLottery(weights, weight_key=weights.__getitem__)
    for _ in range(100):
        assert sorted(lottery.sample(4)) == ["a", "b", "c", "d"]


def test_sample_is_weighted() -> None:
    # With one draw, a sample is a pick.
    weights = {"a": 1, "b": 3}
    lottery = WeightedLottery(weights, weight_key=weights.__getitem__)
    counts = collections.Counter(lottery.sample(1)[0] for _ in range(DRAWS))
    assert counts["b"] / DRAWS == pytest.approx(0.75, abs=0.015)

    # The second item is picked from what is left: P(a, c) = 1/6 * 3/5.
    weights = {"a": 1, "b": 2, "c": 3}
    lottery = WeightedLottery(weights, weight_key=weights.__getitem__)
    counts = collections.Counter(tuple(lottery.sample(2)) for _ in range(DRAWS))
    assert counts["a", "c"] / DRAWS == pytest.approx(1 / 6 * 3 / 5, abs=0.015)
    assert counts["c", "b"] / DRAWS == pytest.approx(3 / 6 * 2 / 3, abs=0.015)


def test_sample_takes_zero_weight_items_last_and_uniformly() -> None:
    weights = {"a": 1, "b": 1000, "z1": 0, "z2": 0}
    lottery = WeightedLottery(weights, weight_key=weights.__getitem__)
    thirds = collections.Counter()
    for _ in range(DRAWS):
        sample = lottery.sample(3)
        assert set(sample[:2]) == {"a", "b"}
        thirds[sample[2]] += 1
    assert thirds["z1"] / DRAWS == pytest.approx(0.5, abs=0.015)


def test_no_items() -> None:
    with pytest.raises(ValueError, match="no items"):
        WeightedLottery([], weight_key=len)


def test_negative_weight() -> None:
    with pytest.raises(ValueError, match=r"item 'b' has a negative weight \(-1\)"):
        WeightedLottery(["a", "b"], weight_key={"a": 1, "b": -1}.__getitem__)


def test_total_weight_zero() -> None:
    with pytest.raises(ValueError, match=r"total weight .* is zero"):
        WeightedLottery(["a", "b"], weight_key=lambda _: 0)


def test_weights_must_be_integers() -> None:
    with pytest.raises(TypeError):
        WeightedLottery(["a"], weight_key=lambda _: 1.5)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("sample_size", [-1, 4])
def test_sample_size_out_of_range(sample_size: int) -> None:
    lottery = WeightedLottery(["a", "b", "c"], weight_key=lambda _: 1)
    with pytest.raises(ValueError, match="sample size must be between 0 and 3"):
        lottery.sample(sample_size)
