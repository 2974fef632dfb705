"""Membership tests against the value lists of an experiment config.

Targeting and override lists can be long (a feature flag opened to a few
thousand user ids), and they are tested on every ``variant()`` call. A scan
of a list costs one comparison per entry; a hash lookup costs one. The
answer must stay the list's answer, though, and a hash lookup only gives it
when equality and hashing agree. They agree for the plain JSON scalar types
that inputs almost always are (``str``, ``int``, ``float``, ``bool``,
``None``), so those take the hash lookup, and anything else (a ``str``
subclass such as a ``str``-valued :class:`~enum.Enum`, a list, an object with
its own ``__eq__``) is compared entry by entry, as a list would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

# Types whose equality agrees with their hash against every JSON value.
_HASH_SAFE: Final = frozenset({str, int, float, bool, type(None)})


class Values:
    """The values of a config list, with list semantics for ``in`` and a fast path.

    :param values: The entries, in config order.
    """

    __slots__ = ("_entries", "_hashed")

    def __init__(self, values: Iterable[Any]) -> None:
        self._entries = tuple(values)
        try:
            hashed: frozenset[Any] | None = frozenset(self._entries)
        except TypeError:  # an entry is a list or an object: scan instead
            hashed = None
        self._hashed = hashed

    def __contains__(self, item: object) -> bool:
        if self._hashed is not None and type(item) in _HASH_SAFE:
            return item in self._hashed
        return item in self._entries

    def __repr__(self) -> str:
        return f"Values({list(self._entries)!r})"
