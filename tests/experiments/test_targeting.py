"""Targeting trees: building them from config, and what they match."""

from __future__ import annotations

import enum

import pytest

from baseplate.experiments.targeting.base import Targeting
from baseplate.experiments.targeting.tree_targeting import (
    AllNode,
    AnyNode,
    ComparisonNode,
    EqualNode,
    NotNode,
    OverrideNode,
    TargetingNodeError,
    UnknownTargetingOperatorError,
    create_targeting_tree,
)

TREE = {
    "ALL": [
        {
            "ANY": [
                {"EQ": {"field": "is_mod", "value": True}},
                {"EQ": {"field": "user_id", "values": ["t2_1", "t2_2"]}},
            ]
        },
        {"NOT": {"EQ": {"field": "country", "values": ["DE", "FR"]}}},
        {"GE": {"field": "karma", "value": 10}},
    ]
}


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"user_id": "t2_1", "karma": 10}, True),
        ({"user_id": "t2_3", "karma": 10}, False),
        ({"user_id": "t2_3", "karma": 10, "is_mod": True}, True),
        ({"user_id": "t2_1", "karma": 9}, False),
        ({"user_id": "t2_1", "karma": 50, "country": "DE"}, False),
        ({"user_id": "t2_1", "karma": 50, "country": "de"}, True),
        # Inputs are looked up under the name they are given: the field is
        # lower-cased, the inputs are not.
        ({"USER_ID": "t2_1", "karma": 50}, False),
    ],
)
def test_tree(inputs, expected):
    assert create_targeting_tree(TREE).evaluate(**inputs) is expected


def test_operators_and_fields_in_any_case():
    tree = create_targeting_tree({"any": [{"Eq": {"field": "Logged_In", "value": True}}]})
    assert tree.evaluate(logged_in=True)
    assert not tree.evaluate(Logged_In=True)


def test_node_types():
    assert isinstance(create_targeting_tree({"ALL": []}), AllNode)
    assert isinstance(create_targeting_tree({"ANY": []}), AnyNode)
    assert isinstance(create_targeting_tree({"NOT": {"OVERRIDE": True}}), NotNode)
    assert isinstance(create_targeting_tree({"OVERRIDE": True}), OverrideNode)
    assert isinstance(create_targeting_tree({"EQ": {"field": "a", "value": 1}}), EqualNode)
    for operator in ("GT", "GE", "LT", "LE", "NE"):
        node = create_targeting_tree({operator: {"field": "a", "value": 1}})
        assert isinstance(node, ComparisonNode)
        assert isinstance(node, Targeting)


def test_empty_all_matches_and_empty_any_does_not():
    assert create_targeting_tree({"ALL": []}).evaluate()
    assert not create_targeting_tree({"ANY": []}).evaluate()


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), ("true", False)])
def test_override_is_true_only_for_true(value, expected):
    assert create_targeting_tree({"OVERRIDE": value}).evaluate(anything=1) is expected


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"EQ": {"field": "a", "value": 1}, "NE": {"field": "a", "value": 1}},
        [{"EQ": {"field": "a", "value": 1}}],
        {"EQ": {}},
        {"EQ": {"field": "a"}},
        {"EQ": {"field": "a", "value": 1, "values": [1]}},
        {"EQ": {"fields": "a", "value": 1}},
        {"EQ": {"field": "a", "valu": 1}},
        {"EQ": {"field": 5, "value": 1}},
        {"EQ": {"field": "a", "values": "abc"}},
        {"EQ": ["field", "value"]},
        {"GE": {}},
        {"GE": {"field": "a", "values": [1]}},
        {"NOT": {}},
        {"NOT": {"OVERRIDE": True, "EQ": {"field": "a", "value": 1}}},
        {"NOT": [{"OVERRIDE": True}]},
        {"ANY": {"field": "a", "value": 1}},
        {"ALL": {"field": "a", "value": 1}},
        {"ALL": [{"EQ": {}}]},
    ],
)
def test_malformed_trees(config):
    with pytest.raises(TargetingNodeError):
        create_targeting_tree(config)


def test_unknown_operator():
    with pytest.raises(UnknownTargetingOperatorError, match="equal"):
        create_targeting_tree({"EQUAL": {"field": "a", "value": 1}})
    with pytest.raises(UnknownTargetingOperatorError):
        create_targeting_tree({"ANY": [{"OVERRIDE": True}, {"XOR": []}]})
    assert issubclass(UnknownTargetingOperatorError, TargetingNodeError)


def test_equal_single_value_and_list():
    assert create_targeting_tree({"EQ": {"field": "n", "value": 5}}).evaluate(n=5)
    assert not create_targeting_tree({"EQ": {"field": "n", "value": 5}}).evaluate(n=6)
    tree = create_targeting_tree({"EQ": {"field": "n", "values": [1, "two", None, True]}})
    assert tree.evaluate(n="two")
    assert tree.evaluate(n=None)
    assert tree.evaluate()  # missing counts as None
    assert tree.evaluate(n=1.0)  # list membership: 1.0 == 1
    assert not tree.evaluate(n="TWO")


def test_equal_with_empty_values_falls_back_to_value():
    # The original's quirk: an empty list means [value], which may be missing.
    tree = create_targeting_tree({"EQ": {"field": "n", "values": []}})
    assert tree.evaluate()
    assert not tree.evaluate(n=1)


def test_equal_keeps_list_semantics_for_any_input():
    class Country(str, enum.Enum):
        GERMANY = "DE"

    tree = create_targeting_tree({"EQ": {"field": "country", "values": ["DE", "FR"]}})
    # Equal to "DE" but hashed by its name: a set lookup would miss it.
    assert tree.evaluate(country=Country.GERMANY)
    nested = create_targeting_tree({"EQ": {"field": "ids", "values": [[1, 2], "x"]}})
    assert nested.evaluate(ids=[1, 2])
    assert nested.evaluate(ids="x")
    assert not nested.evaluate(ids=[2, 1])


def test_equal_over_a_long_list():
    users = [f"t2_{i}" for i in range(5000)]
    tree = create_targeting_tree({"EQ": {"field": "user_id", "values": users}})
    assert tree.evaluate(user_id="t2_4999")
    assert not tree.evaluate(user_id="t2_5000")


def test_equal_refusing_comparison_is_false():
    class Refuses:
        def __eq__(self, other):
            raise TypeError("no")

        __hash__ = None

    tree = create_targeting_tree({"EQ": {"field": "x", "values": ["a"]}})
    assert not tree.evaluate(x=Refuses())


@pytest.mark.parametrize(
    ("operator", "results"),
    # input 4, 5, 6 against 5
    [
        ("GT", (False, False, True)),
        ("GE", (False, True, True)),
        ("LT", (True, False, False)),
        ("LE", (True, True, False)),
        ("NE", (True, False, True)),
    ],
)
def test_comparisons(operator, results):
    tree = create_targeting_tree({operator: {"field": "n", "value": 5}})
    assert tuple(tree.evaluate(n=n) for n in (4, 5, 6)) == results


@pytest.mark.parametrize("operator", ["GT", "GE", "LT", "LE", "NE"])
def test_comparisons_with_none_are_false(operator):
    tree = create_targeting_tree({operator: {"field": "n", "value": None}})
    assert not tree.evaluate(n=None)
    assert not tree.evaluate()


@pytest.mark.parametrize("operator", ["GT", "GE", "LT", "LE"])
def test_values_that_cannot_be_compared_are_not_targeted(operator):
    tree = create_targeting_tree({operator: {"field": "karma", "value": 10}})
    assert not tree.evaluate()
    assert not tree.evaluate(karma="lots")
    # So their negation is targeted.
    assert create_targeting_tree({"NOT": {operator: {"field": "karma", "value": 10}}}).evaluate()


def test_not():
    tree = create_targeting_tree({"NOT": {"EQ": {"field": "s", "value": "v"}}})
    assert not tree.evaluate(s="v")
    assert tree.evaluate(s="w")
