"""Variant sets: validation when made, and which buckets each variant gets."""

from __future__ import annotations

from collections import Counter

import pytest

from baseplate.experiments.variant_sets.multi_variant_set import MultiVariantSet
from baseplate.experiments.variant_sets.range_variant_set import RangeVariantSet
from baseplate.experiments.variant_sets.rollout_variant_set import RolloutVariantSet
from baseplate.experiments.variant_sets.single_variant_set import SingleVariantSet


def shares(variant_set, num_buckets=1000):
    return Counter(variant_set.choose_variant(bucket) for bucket in range(num_buckets))


def test_single_variant_set_takes_both_ends():
    variant_set = SingleVariantSet([{"name": "a", "size": 0.25}, {"name": "b", "size": 0.1}])
    assert variant_set.choose_variant(0) == "a"
    assert variant_set.choose_variant(249) == "a"
    assert variant_set.choose_variant(250) is None
    assert variant_set.choose_variant(899) is None
    assert variant_set.choose_variant(900) == "b"
    assert variant_set.choose_variant(999) == "b"
    assert shares(variant_set) == {"a": 250, "b": 100, None: 650}
    assert "a" in variant_set
    assert "c" not in variant_set


def test_single_variant_set_sizes_change_with_few_users_moving():
    before = SingleVariantSet([{"name": "a", "size": 0.4}, {"name": "b", "size": 0.6}])
    after = SingleVariantSet([{"name": "a", "size": 0.6}, {"name": "b", "size": 0.4}])
    moved = sum(before.choose_variant(b) != after.choose_variant(b) for b in range(1000))
    assert moved == 200


@pytest.mark.parametrize(
    "variants",
    [
        None,
        [],
        [{"name": "a", "size": 0.5}],
        [{"name": "a", "size": 0.2}, {"name": "b", "size": 0.2}, {"name": "c", "size": 0.2}],
        [{"name": "a", "size": 0.6}, {"name": "b", "size": 0.6}],
        [{"name": "a", "size": -0.6}, {"name": "b", "size": 0.1}],
        [{"name": "a"}, {"name": "b", "size": 0.1}],
        [{"name": "a", "size": "0.1"}, {"name": "b", "size": 0.1}],
        [{"size": 0.1}, {"name": "b", "size": 0.1}],
        {"a": 0.1, "b": 0.1},
        ["a", "b"],
    ],
)
def test_invalid_single_variant_sets(variants):
    with pytest.raises(ValueError):
        SingleVariantSet(variants)


def test_multi_variant_set_lays_variants_out_in_order():
    variant_set = MultiVariantSet(
        [{"name": "a", "size": 0.1}, {"name": "b", "size": 0.2}, {"name": "c", "size": 0.3}]
    )
    assert [variant_set.choose_variant(b) for b in (0, 99, 100, 299, 300, 599, 600)] == [
        "a",
        "a",
        "b",
        "b",
        "c",
        "c",
        None,
    ]
    assert shares(variant_set) == {"a": 100, "b": 200, "c": 300, None: 400}
    assert "b" in variant_set


@pytest.mark.parametrize(
    "variants",
    [
        None,
        [{"name": "a", "size": 0.1}, {"name": "b", "size": 0.1}],
        [{"name": "a", "size": 0.5}, {"name": "b", "size": 0.5}, {"name": "c", "size": 0.01}],
        [{"name": "a", "size": 0.1}, {"name": "b"}, {"name": "c", "size": 0.1}],
        [{"name": "a", "size": 0.1}, {"size": 0.1}, {"name": "c", "size": 0.1}],
    ],
)
def test_invalid_multi_variant_sets(variants):
    with pytest.raises(ValueError):
        MultiVariantSet(variants)


def test_multi_variant_set_with_fewer_buckets():
    variant_set = MultiVariantSet(
        [{"name": n, "size": 0.333} for n in "xyz"],
        num_buckets=100,
    )
    assert shares(variant_set, 100) == {"x": 33, "y": 33, "z": 33, None: 1}


def test_rollout_variant_set():
    variant_set = RolloutVariantSet([{"name": "on", "size": 0.45}])
    assert shares(variant_set) == {"on": 450, None: 550}
    assert "on" in variant_set
    assert "off" not in variant_set
    # Without a name the rollout names no variant, as in the original.
    assert shares(RolloutVariantSet([{"size": 1.0}])) == {None: 1000}


@pytest.mark.parametrize(
    "variants",
    [
        None,
        [],
        [{"name": "a", "size": 0.1}, {"name": "b", "size": 0.1}],
        [{"name": "a"}],
        [{"name": "a", "size": 1.5}],
        [{"name": "a", "size": -0.1}],
    ],
)
def test_invalid_rollout_variant_sets(variants):
    with pytest.raises(ValueError):
        RolloutVariantSet(variants)


def test_range_variant_set_first_range_wins():
    variant_set = RangeVariantSet(
        [
            {"name": "low", "range_start": 0.0, "range_end": 0.2},
            {"name": "overlap", "range_start": 0.1, "range_end": 0.3},
            {"name": "top", "range_start": 0.9, "range_end": 1.0},
        ]
    )
    assert shares(variant_set) == {"low": 200, "overlap": 100, "top": 100, None: 600}
    assert "overlap" in variant_set


@pytest.mark.parametrize(
    "variants",
    [
        None,
        [],
        [{"name": "a", "range_start": 0.0}],
        [{"name": "a", "range_end": 0.5}],
        [
            {"name": "a", "range_start": 0.0, "range_end": 0.7},
            {"name": "b", "range_start": 0.0, "range_end": 0.7},
        ],
        [{"range_start": 0.0, "range_end": 0.5}],
    ],
)
def test_invalid_range_variant_sets(variants):
    with pytest.raises(ValueError):
        RangeVariantSet(variants)
