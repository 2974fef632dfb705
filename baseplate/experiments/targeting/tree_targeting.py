"""Targeting trees: boolean expressions over the inputs of a ``variant()`` call.

A tree is written in the experiment config as nested single-key objects, the
key naming the operator (in any case) and the value its operands::

    {"ALL": [
        {"ANY": [
            {"EQ": {"field": "is_mod", "value": true}},
            {"EQ": {"field": "user_id", "values": ["t2_1", "t2_2"]}}
        ]},
        {"NOT": {"EQ": {"field": "country", "values": ["DE", "FR"]}}},
        {"GE": {"field": "karma", "value": 10}}
    ]}

``EQ`` tests membership (``values`` when given and non-empty, else
``[value]``), ``GT``/``GE``/``LT``/``LE``/``NE`` compare the input with
``value``, ``ALL``/``ANY`` combine a list of nodes, ``NOT`` negates one, and
``OVERRIDE`` is a constant (only ``true`` is true). Field names are
lower-cased; the inputs are looked up with the keys they were given with.

The tree is built once, when the experiment is parsed; evaluating it walks
the nodes with the one mapping of inputs.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from baseplate.experiments._membership import Values
from baseplate.experiments.targeting.base import Targeting

logger = logging.getLogger(__name__)


class TargetingNodeError(Exception):
    """A targeting tree config that cannot be built into a tree."""


class UnknownTargetingOperatorError(TargetingNodeError):
    """A targeting tree node names an operator that does not exist.

    .. versionchanged:: 0.31
       A subclass of :class:`TargetingNodeError`, so one ``except`` catches
       every malformed tree.
    """


class _Node(Targeting):
    """A node of a tree built here: evaluation passes the inputs mapping down."""

    def evaluate(self, **kwargs: Any) -> bool:
        return self._matches(kwargs)

    def _matches(self, inputs: Mapping[str, Any]) -> bool:
        raise NotImplementedError


def _field_node(input_node: Any, kind: str) -> str:
    """Check the common shape of EQ and comparison nodes; return the lower-cased field."""
    if not isinstance(input_node, Mapping):
        raise TypeError(f"{kind} expects an object, not {input_node!r}")
    if len(input_node) != 2:
        raise ValueError(f"{kind} expects exactly two fields.")
    if "field" not in input_node:
        raise ValueError(f"{kind} expects input key 'field'.")
    field = input_node["field"]
    if not isinstance(field, str):
        raise TypeError(f"{kind} expects a string 'field', not {field!r}")
    return field.lower()


class EqualNode(_Node):
    """True if an input equals a single value or one of a list of values.

    :param input_node: The operand object: ``field`` and either ``value``
        (one accepted value) or ``values`` (a list of them)::

            {"EQ": {"field": "user_id", "values": ["t2_1", "t2_2"]}}
    """

    def __init__(self, input_node: Any) -> None:
        self._accepted_key = _field_node(input_node, "EqualNode")
        if "value" not in input_node and "values" not in input_node:
            raise ValueError("EqualNode expects input key 'value' or 'values'.")
        values = input_node.get("values")
        if not values:
            # An empty or null list falls back to ``value``, which may be
            # missing: the node then accepts a missing (or null) input.
            values = [input_node.get("value")]
        elif not isinstance(values, list):
            raise TypeError(f"EqualNode expects a list of 'values', not {values!r}")
        self._accepted_values = Values(values)

    def _matches(self, inputs: Mapping[str, Any]) -> bool:
        candidate = inputs.get(self._accepted_key)
        try:
            return candidate in self._accepted_values
        except TypeError as exc:  # an input whose __eq__ refuses the comparison
            logger.warning("targeting %r: %s", self._accepted_key, exc)
            return False


class _ListNode(_Node):
    """ALL and ANY: a list of child nodes, whose answers :attr:`_combine` joins.

    The two differ only in how the answers are joined; each names itself
    in the error for an operand that is not a list.
    """

    _combine: staticmethod[[Iterable[bool]], bool]

    def __init__(self, input_node: Any) -> None:
        if not isinstance(input_node, list):
            raise TypeError(f"Input to {type(self).__name__} expects a list.")
        self._children = tuple(create_targeting_tree(node) for node in input_node)

    def _matches(self, inputs: Mapping[str, Any]) -> bool:
        return self._combine(child._matches(inputs) for child in self._children)


class AllNode(_ListNode):
    """True if every child node is (and so if there are none).

    :param input_node: A list of nodes.
    """

    _combine = staticmethod(all)


class AnyNode(_ListNode):
    """True if at least one child node is.

    :param input_node: A list of nodes.
    """

    _combine = staticmethod(any)


class NotNode(_Node):
    """Boolean 'not' of one node.

    :param input_node: A node.
    """

    def __init__(self, input_node: Any) -> None:
        if not isinstance(input_node, Mapping):
            raise TypeError("Input to NotNode expects a dictionary")
        if len(input_node) != 1:
            raise ValueError("NotNode expects exactly one field.")
        self._child = create_targeting_tree(input_node)

    def _matches(self, inputs: Mapping[str, Any]) -> bool:
        return not self._child._matches(inputs)


class OverrideNode(_Node):
    """A constant: true only if the operand is ``true`` itself.

    :param input_node: The constant.
    """

    def __init__(self, input_node: Any) -> None:
        self._return_value = input_node is True

    def _matches(self, inputs: Mapping[str, Any]) -> bool:
        return self._return_value


class ComparisonNode(_Node):
    """Compare an input with a value: ``GT``, ``GE``, ``LT``, ``LE`` or ``NE``.

    A missing input counts as ``None``. Two ``None`` never compare true, and
    neither do values that cannot be compared (``None`` with a number, a
    string with a number): such an input is not targeted.

    .. versionchanged:: 0.31
       Values that cannot be compared make the node false; the original let
       the :exc:`TypeError` out of ``variant()``.

    :param input_node: The operand object: ``field`` and ``value``.
    :param comparator: The comparison, a two-argument function from
        :mod:`operator`.
    """

    def __init__(self, input_node: Any, comparator: Callable[[Any, Any], Any]) -> None:
        self._accepted_key = _field_node(input_node, "ComparisonNode")
        if "value" not in input_node:
            raise ValueError("ComparisonNode expects input key 'value'.")
        self._accepted_value = input_node["value"]
        self.comparator = comparator

    def _matches(self, inputs: Mapping[str, Any]) -> bool:
        candidate = inputs.get(self._accepted_key)
        if candidate is None and self._accepted_value is None:
            return False
        try:
            return bool(self.comparator(candidate, self._accepted_value))
        except TypeError:
            return False


_COMPARATORS: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "ne": operator.ne,
}

_NODE_TYPES: Final[Mapping[str, Callable[[Any], Targeting]]] = {
    "any": AnyNode,
    "all": AllNode,
    "eq": EqualNode,
    "not": NotNode,
    "override": OverrideNode,
}


def create_targeting_tree(input_node: Any) -> Targeting:
    """Build the targeting tree that a targeting config describes.

    Each node is an object with exactly one key, the operator; its value is
    the operands: another node, a list of nodes, or the ``field`` and
    ``value``/``values`` a leaf compares. See the module documentation for
    the operators.

    :param input_node: The decoded JSON of the tree's root node.
    :raises TargetingNodeError: if a node is malformed.
    :raises UnknownTargetingOperatorError: if a node names an unknown operator.
    """
    if not isinstance(input_node, Mapping) or len(input_node) != 1:
        raise TargetingNodeError("Call to create_targeting_tree expects a single input key.")
    ((operator_name, operands),) = input_node.items()
    if not isinstance(operator_name, str):
        raise TargetingNodeError(f"Targeting operator must be a string, not {operator_name!r}")
    operator_name = operator_name.lower()
    try:
        if operator_name in _COMPARATORS:
            return ComparisonNode(operands, _COMPARATORS[operator_name])
        if operator_name in _NODE_TYPES:
            return _NODE_TYPES[operator_name](operands)
    except (TypeError, ValueError) as exc:
        raise TargetingNodeError(f"Error while constructing targeting tree: {exc}") from exc
    raise UnknownTargetingOperatorError(
        f"Unrecognized operator while constructing targeting tree: {operator_name}"
    )
