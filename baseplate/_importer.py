"""The one dotted-name importer: configuration text such as ``package.module:name`` to an object.

``baseplate-serve``'s ``factory`` options, ``baseplate-script``'s entry point,
the ``[tshell] setup`` option, the WSGI server's ``handler`` and Sentry's
``processors`` all name objects this way; they share this function so that
they accept the same forms and fail with the same one-line messages.
"""

from __future__ import annotations

import importlib
from typing import Any


class ImportNameError(ValueError):
    """A name that does not lead to an importable object.

    Its text is one line naming the part that is wrong (the module, the
    attribute, or the whole text when it is malformed).

    :param text: The name as given.
    :param problem: What is wrong with it.
    """

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(problem)
        self.text = text
        self.problem = problem


def import_object(
    text: str, default_name: str | None = None, *, must_be_callable: bool = False
) -> Any:
    """Import the module ``text`` names and return the object it names in it.

    ``text`` is ``package.module:name``. Without a colon it is read one of two
    ways. With no ``default_name``, as ``package.module.name``: the last
    dotted part is the name. With a ``default_name``, as the original's
    ``baseplate-serve`` read its ``factory`` options: the whole text is the
    module, and ``default_name`` (which also fills in an empty name after a
    colon) is the name; an empty ``default_name`` therefore makes the colon
    form required.

    Errors raised while the module itself runs, its own failed imports
    included, propagate unchanged: they are the module's, not the name's.

    :param must_be_callable: Refuse an object that cannot be called.
    :raises ImportNameError: ``text`` is malformed, or its module cannot be
        found, or the module has no such attribute, or (with
        ``must_be_callable``) the object is not callable.
    """
    module_name, colon, name = text.strip().partition(":")
    if not colon and default_name is None:
        module_name, _, name = module_name.rpartition(".")
    name = name or default_name or ""
    if not name.isidentifier() or not all(part.isidentifier() for part in module_name.split(".")):
        expected = "module:callable" if must_be_callable else "module:name"
        raise ImportNameError(text, f"expected '{expected}', not {text!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name != missing and not module_name.startswith(missing + "."):
            raise  # the module exists but one of its own imports failed
        raise ImportNameError(text, f"no module named {missing!r}") from None
    try:
        value = getattr(module, name)
    except AttributeError:
        raise ImportNameError(text, f"module {module_name!r} has no attribute {name!r}") from None
    if must_be_callable and not callable(value):
        raise ImportNameError(text, f"{module_name}:{name} is not callable")
    return value
